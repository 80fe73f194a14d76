/*
 * unicode.h - the character classes the BPE pre-tokeniser needs, from the
 * generated table in unicode_tables.c (see core/gen_unicode.py).
 */
#ifndef SEMD_UNICODE_H
#define SEMD_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum uc_class {
    UC_OTHER = 0, /* anything else, unassigned code points included */
    UC_LETTER = 1, /* general category L* */
    UC_NUMBER = 2, /* general category N* */
    UC_SPACE = 3   /* White_Space */
};

/* The Unicode version the table was generated from, e.g. "15.0.0". */
extern const char uc_version[];

/* Sorted disjoint ranges: {first | class << 24, last}. */
extern const uint32_t uc_ranges[][2];
extern const size_t uc_n_ranges;

/* The class of code point cp (any value; out of range is UC_OTHER). */
static inline int
uc_class(uint32_t cp)
{
    size_t lo = 0, hi = uc_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t first = uc_ranges[mid][0] & 0xFFFFFFu;
        if (cp < first)
            hi = mid;
        else if (cp > uc_ranges[mid][1])
            lo = mid + 1;
        else
            return (int)(uc_ranges[mid][0] >> 24);
    }
    return UC_OTHER;
}

#endif
