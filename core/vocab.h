/*
 * vocab.h - a growable vocabulary: words, counts and a hash table from word
 * to index, used by the trainer for its rows and for words still below
 * min-count. Adding a word costs O(1) amortised, whatever the size.
 */
#ifndef SEMD_VOCAB_H
#define SEMD_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#define VOCAB_NONE UINT32_MAX

struct vocab {
    char **words;     /* NUL-terminated, owned */
    uint32_t *lens;
    uint64_t *counts;
    uint64_t *hashes; /* of each word, for rehashing without rereading */
    uint32_t n, cap;
    uint32_t *slots;  /* index or VOCAB_NONE; capacity a power of two */
    uint64_t mask;
};

void vocab_init(struct vocab *v);
void vocab_release(struct vocab *v);

/* Index of word or VOCAB_NONE. */
uint32_t vocab_find(const struct vocab *v, const char *word, size_t len);
/* Same with the hash already computed (model_hash). */
uint32_t vocab_find_h(const struct vocab *v, const char *word, size_t len,
                      uint64_t h);

/* Appends a word that is not present; returns its index, or VOCAB_NONE
 * when memory runs out or the vocabulary is full. */
uint32_t vocab_add(struct vocab *v, const char *word, size_t len,
                   uint64_t count);
uint32_t vocab_add_h(struct vocab *v, const char *word, size_t len,
                     uint64_t count, uint64_t h);

#endif
