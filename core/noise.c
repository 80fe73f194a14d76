/*
 * noise.c - Vose's construction of the alias table (see noise.h), O(rows).
 */
#include "noise.h"

#include <math.h>
#include <stdlib.h>

int
noise_build(const uint64_t *counts, uint32_t rows, double power,
            struct noise_col **out)
{
    struct noise_col *nc = malloc((size_t)rows * sizeof *nc);
    double *p = malloc((size_t)rows * sizeof *p);
    uint32_t *stack = malloc((size_t)rows * sizeof *stack);
    if (!nc || !p || !stack) {
        free(nc);
        free(p);
        free(stack);
        return -1;
    }
    double sum = 0;
    for (uint32_t i = 0; i < rows; i++)
        sum += p[i] = pow((double)counts[i], power);
    /* each column holds rows x probability of its row; those under 1 fill
     * the stack from the bottom, the others from the top, and each short
     * column takes the rest of its room from a tall one */
    uint32_t small = 0, large = rows;
    for (uint32_t i = 0; i < rows; i++) {
        p[i] = sum > 0 ? p[i] / sum * rows : 1.0;
        nc[i] = (struct noise_col){UINT32_MAX, i};
        if (p[i] < 1.0)
            stack[small++] = i;
        else
            stack[--large] = i;
    }
    while (small > 0 && large < rows) {
        uint32_t s = stack[--small], l = stack[large];
        nc[s].keep = (uint32_t)(p[s] * 4294967296.0);
        nc[s].alias = l;
        p[l] -= 1.0 - p[s];
        if (p[l] < 1.0) {
            large++;
            stack[small++] = l;
        }
    }
    /* the columns left are full up to rounding and keep their own row */
    free(p);
    free(stack);
    *out = nc;
    return 0;
}
