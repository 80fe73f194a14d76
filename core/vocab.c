/*
 * vocab.c - the trainer's vocabulary: words, counts and an open-addressing
 * hash table (linear probing, load at most one half) from word to index.
 *
 * Invariants: every word appears once; slots hold indexes below n; the
 * table doubles (rehashing from the stored hashes, no string reads) when
 * half full, so adding a word costs O(1) amortised and growing an online
 * vocabulary by k words costs O(k), not O(size).
 *
 * Threads: a vocabulary belongs to one thread; concurrent look-ups without
 * a concurrent add are safe.
 */
#include "vocab.h"

#include "model.h"

#include <stdlib.h>
#include <string.h>

void
vocab_init(struct vocab *v)
{
    memset(v, 0, sizeof *v);
}

void
vocab_release(struct vocab *v)
{
    if (!v)
        return;
    for (uint32_t i = 0; i < v->n; i++)
        free(v->words[i]);
    free(v->words);
    free(v->lens);
    free(v->counts);
    free(v->hashes);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

uint32_t
vocab_find_h(const struct vocab *v, const char *word, size_t len, uint64_t h)
{
    if (!v->slots)
        return VOCAB_NONE;
    for (uint64_t s = h & v->mask;; s = (s + 1) & v->mask) {
        uint32_t i = v->slots[s];
        if (i == VOCAB_NONE)
            return VOCAB_NONE;
        if (v->hashes[i] == h && v->lens[i] == len &&
            !memcmp(v->words[i], word, len))
            return i;
    }
}

uint32_t
vocab_find(const struct vocab *v, const char *word, size_t len)
{
    return vocab_find_h(v, word, len, model_hash(word, len));
}

static int
rehash(struct vocab *v, uint64_t cap)
{
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xFF, cap * sizeof *slots);
    for (uint32_t i = 0; i < v->n; i++) {
        uint64_t s = v->hashes[i] & (cap - 1);
        while (slots[s] != VOCAB_NONE)
            s = (s + 1) & (cap - 1);
        slots[s] = i;
    }
    free(v->slots);
    v->slots = slots;
    v->mask = cap - 1;
    return 0;
}

static int
grow(struct vocab *v)
{
    uint32_t cap = v->cap ? v->cap * 2 : 1024;
    if (cap <= v->cap)
        return -1;
    char **w = realloc(v->words, cap * sizeof *w);
    if (!w)
        return -1;
    v->words = w;
    uint32_t *l = realloc(v->lens, cap * sizeof *l);
    if (!l)
        return -1;
    v->lens = l;
    uint64_t *c = realloc(v->counts, cap * sizeof *c);
    if (!c)
        return -1;
    v->counts = c;
    uint64_t *h = realloc(v->hashes, cap * sizeof *h);
    if (!h)
        return -1;
    v->hashes = h;
    v->cap = cap;
    return 0;
}

uint32_t
vocab_add_h(struct vocab *v, const char *word, size_t len, uint64_t count,
            uint64_t h)
{
    if (v->n >= VOCAB_NONE - 1)
        return VOCAB_NONE;
    if (v->n == v->cap && grow(v) != 0)
        return VOCAB_NONE;
    if (((uint64_t)v->n + 1) * 2 > (v->slots ? v->mask + 1 : 0) &&
        rehash(v, v->slots ? (v->mask + 1) * 2 : 2048) != 0)
        return VOCAB_NONE;
    char *copy = malloc(len + 1);
    if (!copy)
        return VOCAB_NONE;
    memcpy(copy, word, len);
    copy[len] = '\0';
    uint32_t i = v->n++;
    v->words[i] = copy;
    v->lens[i] = (uint32_t)len;
    v->counts[i] = count;
    v->hashes[i] = h;
    uint64_t s = h & v->mask;
    while (v->slots[s] != VOCAB_NONE)
        s = (s + 1) & v->mask;
    v->slots[s] = i;
    return i;
}

uint32_t
vocab_add(struct vocab *v, const char *word, size_t len, uint64_t count)
{
    return vocab_add_h(v, word, len, count, model_hash(word, len));
}
