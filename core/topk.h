/*
 * topk.h - the best k hits of a scan, shared by index.c and query.c: a
 * bounded min-heap whose root is the worst hit kept, so a candidate only
 * has to beat the root. "Better" means a higher score, or the same score
 * and a lower row: a strict order, so the hits kept and their order do not
 * depend on the order rows are offered in. Not part of the public API.
 *
 * Inline because it sits in the innermost loops of the scans.
 */
#ifndef SEMD_TOPK_H
#define SEMD_TOPK_H

#include "semd.h"

#include <stdint.h>

/* Whether a ranks below b. */
static inline int
topk_worse(const struct semd_hit *a, const struct semd_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->row > b->row);
}

/* Offers (row, score) to the heap h of *n hits, which keeps the best k. */
static inline void
topk_heap_push(struct semd_hit *h, uint32_t *n, uint32_t k, uint64_t row,
               float score)
{
    struct semd_hit x = {row, score};
    uint32_t i;
    if (*n < k) {
        /* sift up: move worse-than-x parents down into the hole */
        i = (*n)++;
        while (i > 0 && topk_worse(&x, &h[(i - 1) / 2])) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = x;
        return;
    }
    if (k == 0 || !topk_worse(&h[0], &x))
        return;
    /* x replaces the root: sift down, moving the worst child up */
    i = 0;
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        const struct semd_hit *cw = &x;
        if (l < *n && topk_worse(&h[l], cw)) {
            w = l;
            cw = &h[l];
        }
        if (r < *n && topk_worse(&h[r], cw))
            w = r;
        if (w == i)
            break;
        h[i] = h[w];
        i = w;
    }
    h[i] = x;
}

/* qsort comparison: best first. */
static inline int
topk_best_first(const void *a, const void *b)
{
    const struct semd_hit *x = a, *y = b;
    return topk_worse(y, x) ? -1 : topk_worse(x, y);
}

#endif
