/*
 * cache.c - a bounded LRU cache of read-query results, per snapshot.
 *
 * What a client would otherwise put in front of the server: the result
 * of GET /v1/neighbors, serialised, keyed by the snapshot version and the
 * request normalised from its parsed parameters (so k=10 and k=010 are
 * one entry). A snapshot never changes, so an entry is exactly the
 * answer the index would give again; a new version (reload, training,
 * the background index) makes older entries unreachable, and they age
 * out of the LRU list. --cache-size 0 turns it off.
 *
 * Invariants: at most cap entries, together at most cap_bytes (entry_bytes
 * each); every entry is in the hash chain of its key and in the LRU list,
 * newest first.
 * Threads: any request or batcher thread may get or put; one mutex,
 * held for a hash lookup and a few pointer moves, never while a result
 * is built or serialised (the copy made under it is a memcpy).
 */
#include "serve.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *hnext;           /* hash chain */
    struct entry *prev, *next;     /* LRU list, newest at head */
    uint64_t hash, version;
    char *key, *val;
    size_t klen, vlen;
};

struct cache {
    pthread_mutex_t mu;
    struct entry **tab;
    size_t nb;           /* buckets, a power of two */
    size_t n, cap;
    size_t bytes, cap_bytes;
    struct entry *head, *tail;
    atomic_ullong hits, misses;
};

static uint64_t
fnv(uint64_t version, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ version;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* what an entry holds in memory, malloc's own overhead estimated */
static size_t
entry_bytes(size_t klen, size_t vlen)
{
    return sizeof(struct entry) + klen + vlen + 1 + 3 * 16;
}

int
cache_new(struct cache **out, size_t cap, size_t cap_bytes,
          struct semd_err *err)
{
    *out = NULL;
    if (cap == 0)
        return 0;
    struct cache *c = calloc(1, sizeof *c);
    /* a bucket per entry that can fit, the smallest answer being a few
     * hundred bytes */
    size_t fit = cap_bytes / 256 < cap ? cap_bytes / 256 : cap, nb = 16;
    while (nb < fit)
        nb *= 2;
    if (c)
        c->tab = calloc(nb, sizeof *c->tab);
    if (!c || !c->tab) {
        free(c);
        return semd_err_set(err, SEMD_ENOMEM,
                            "no memory for a cache of %zu entries", cap);
    }
    pthread_mutex_init(&c->mu, NULL);
    c->nb = nb;
    c->cap = cap;
    c->cap_bytes = cap_bytes;
    *out = c;
    return 0;
}

static void
unlink_lru(struct cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void
push_head(struct cache *c, struct entry *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head)
        c->head->prev = e;
    c->head = e;
    if (!c->tail)
        c->tail = e;
}

static struct entry **
slot(struct cache *c, uint64_t h, uint64_t version, const char *key,
     size_t klen)
{
    struct entry **p = &c->tab[h & (c->nb - 1)];
    for (; *p; p = &(*p)->hnext) {
        struct entry *e = *p;
        if (e->hash == h && e->version == version && e->klen == klen &&
            !memcmp(e->key, key, klen))
            break;
    }
    return p;
}

char *
cache_get(struct cache *c, uint64_t version, const char *key, size_t klen,
          size_t *len)
{
    if (!c)
        return NULL;
    uint64_t h = fnv(version, key, klen);
    char *out = NULL;
    pthread_mutex_lock(&c->mu);
    struct entry *e = *slot(c, h, version, key, klen);
    if (e) {
        unlink_lru(c, e);
        push_head(c, e);
        out = malloc(e->vlen + 1);
        if (out) {
            memcpy(out, e->val, e->vlen + 1);
            *len = e->vlen;
        }
    }
    pthread_mutex_unlock(&c->mu);
    atomic_fetch_add(out ? &c->hits : &c->misses, 1);
    return out;
}

static void
drop(struct cache *c, struct entry *e)
{
    struct entry **p = slot(c, e->hash, e->version, e->key, e->klen);
    if (*p == e)
        *p = e->hnext;
    unlink_lru(c, e);
    c->n--;
    c->bytes -= entry_bytes(e->klen, e->vlen);
    free(e->key);
    free(e->val);
    free(e);
}

void
cache_put(struct cache *c, uint64_t version, const char *key, size_t klen,
          const char *val, size_t vlen)
{
    if (!c || entry_bytes(klen, vlen) > c->cap_bytes / 4)
        return; /* one answer may not push out a quarter of the cache */
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->key = malloc(klen);
    e->val = malloc(vlen + 1);
    if (!e->key || !e->val) {
        free(e->key);
        free(e->val);
        free(e);
        return; /* a cache that cannot grow just misses */
    }
    memcpy(e->key, key, klen);
    memcpy(e->val, val, vlen);
    e->val[vlen] = 0;
    e->klen = klen;
    e->vlen = vlen;
    e->version = version;
    e->hash = fnv(version, key, klen);
    pthread_mutex_lock(&c->mu);
    struct entry **p = slot(c, e->hash, version, key, klen);
    if (*p) {
        /* two misses raced; the first answer stays */
        pthread_mutex_unlock(&c->mu);
        free(e->key);
        free(e->val);
        free(e);
        return;
    }
    *p = e;
    push_head(c, e);
    c->n++;
    c->bytes += entry_bytes(klen, vlen);
    while (c->n > c->cap || c->bytes > c->cap_bytes)
        drop(c, c->tail);
    pthread_mutex_unlock(&c->mu);
}

void
cache_stats(struct cache *c, struct cache_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!c)
        return;
    st->hits = atomic_load(&c->hits);
    st->misses = atomic_load(&c->misses);
    pthread_mutex_lock(&c->mu);
    st->entries = c->n;
    st->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
    st->cap = c->cap;
    st->cap_bytes = c->cap_bytes;
}

void
cache_free(struct cache *c)
{
    if (!c)
        return;
    while (c->head)
        drop(c, c->head);
    free(c->tab);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
