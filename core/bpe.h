/*
 * bpe.h - the tokenizer's serialised form, shared by bpe.c (which builds and
 * reads it), model.c (which finds it in a model file's tokenizer section)
 * and writer.c (which stores it). The layout is described atop bpe.c.
 */
#ifndef SEMD_BPE_H
#define SEMD_BPE_H

#include "semd.h"

#include <stddef.h>
#include <stdint.h>

#define BPE_MAGIC "SEMDBPE1"

/* Makes *out a view of size bytes at data (4-byte aligned), which must
 * outlive it; nothing is copied. Checks the header and that the parts fit:
 * O(1) in the vocabulary size. Freed with semd_tokenizer_free, which leaves
 * data alone. */
int bpe_view(struct semd_tokenizer **out, const void *data, size_t size,
             struct semd_err *err);

/* The serialised form of t, borrowed: what a model file's tokenizer section
 * holds. */
void bpe_blob(const struct semd_tokenizer *t, const void **data,
              size_t *size);

/* The checks bpe_view leaves to access time, all at once: every offset,
 * every merge-table entry. O(size). */
int bpe_check(const struct semd_tokenizer *t, struct semd_err *err);

#endif
