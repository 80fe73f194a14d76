/*
 * noise.h - the noise distribution of negative sampling, counts^power, as
 * Walker's alias table: a column per row, drawn uniformly; the column's row
 * is kept when a fraction drawn with it is below `keep`, else its alias is
 * taken. One entry of 8 bytes per row (800 KB for 100,000 rows) stays in
 * cache, where word2vec's table of 10^8 entries, or even 64 per row, costs
 * a cache miss at every draw. Not part of the public API.
 */
#ifndef SEMD_NOISE_H
#define SEMD_NOISE_H

#include <stdint.h>

struct noise_col {
    uint32_t keep; /* 2^32 x the probability of keeping the column's row */
    uint32_t alias;
};

/*
 * Builds the table of rows > 0 columns for the weights counts[i]^power
 * (uniform when they are all 0). On success *out is the caller's, to free()
 * (0); -1 when out of memory.
 */
int noise_build(const uint64_t *counts, uint32_t rows, double power,
                struct noise_col **out);

/* The row for random bits r, of which the high 48 are used (word2vec's
 * generator is weak in its low bits). */
static inline uint32_t
noise_draw(const struct noise_col *t, uint32_t rows, uint64_t r)
{
    /* the 48 bits times rows: a column above bit 48, the fraction to
     * compare with its keep below */
    unsigned __int128 x = (unsigned __int128)(r >> 16) * rows;
    uint32_t col = (uint32_t)(x >> 48);
    uint32_t frac = (uint32_t)((uint64_t)x >> 16);
    return frac < t[col].keep ? col : t[col].alias;
}

#endif
