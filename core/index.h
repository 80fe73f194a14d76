/*
 * index.h - cross-file helpers of the index module (core/index.c).
 */
#ifndef SEMD_INDEX_H
#define SEMD_INDEX_H

#include "semd.h"

/* Turns the AVX2 kernels off (on = 0) or back on where the CPU has them,
 * so tests can compare both paths. Not thread-safe: call before searching. */
void index_set_simd(struct semd_index *ix, int on);

#endif
