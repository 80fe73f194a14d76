/*
 * snapshot.c - immutable, reference-counted bundles of model + index +
 * version, and the holder that names the current one.
 *
 * Threading model:
 *  - A snapshot never changes once made. Any thread may read it while it
 *    holds a reference; the reference count is atomic and the last
 *    semd_snapshot_release frees the bundle (index first, then the model
 *    it searches).
 *  - A holder keeps one pointer, the current snapshot, and a mutex held
 *    only to read that pointer and take a reference, or to swap it. No
 *    search ever runs under the mutex, so a swap waits at most for a
 *    pointer copy.
 *  - Readers (request threads) acquire at dispatch and release when the
 *    request completes; publishers (the reloader, later the trainer) build
 *    a snapshot privately and publish it. The old snapshot lives on until
 *    its last reader releases it: no request ever sees half an update.
 *  - semd_holder_replace swaps in another bundle of the same version (the
 *    same content with a better index: the trainer's background index
 *    build); it refuses when a newer version was published meanwhile, so
 *    versions still only grow.
 */
#include "semd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct semd_snapshot {
    atomic_uint_fast64_t refs;
    struct semd_model *model;
    struct semd_index *index;
    uint64_t version;
    double loaded_at;
};

struct semd_holder {
    pthread_mutex_t lock;
    struct semd_snapshot *current;
    atomic_uint_fast64_t last_version;
};

int
semd_snapshot_new(struct semd_snapshot **out, struct semd_model *m,
                  struct semd_index *ix, uint64_t version,
                  struct semd_err *err)
{
    if (!m || !ix || semd_index_model(ix) != m)
        return semd_err_set(err, SEMD_EINVAL,
                            "a snapshot needs a model and an index of it");
    struct semd_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory for a snapshot");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_init(&s->refs, 1);
    s->model = m;
    s->index = ix;
    s->version = version;
    s->loaded_at = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    *out = s;
    return SEMD_OK;
}

struct semd_snapshot *
semd_snapshot_acquire(struct semd_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void
semd_snapshot_release(struct semd_snapshot *s)
{
    if (!s)
        return;
    /* acq_rel: the freeing thread must see every other holder's reads
     * finished before it unmaps */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    semd_index_close(s->index);
    semd_model_close(s->model);
    free(s);
}

const struct semd_model *
semd_snapshot_model(const struct semd_snapshot *s)
{
    return s->model;
}

const struct semd_index *
semd_snapshot_index(const struct semd_snapshot *s)
{
    return s->index;
}

uint64_t
semd_snapshot_version(const struct semd_snapshot *s)
{
    return s->version;
}

double
semd_snapshot_loaded_at(const struct semd_snapshot *s)
{
    return s->loaded_at;
}

int
semd_holder_new(struct semd_holder **out, struct semd_err *err)
{
    struct semd_holder *h = calloc(1, sizeof *h);
    if (!h)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory for a holder");
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h);
        return semd_err_set(err, SEMD_ENOMEM, "cannot create a mutex");
    }
    atomic_init(&h->last_version, 0);
    *out = h;
    return SEMD_OK;
}

void
semd_holder_free(struct semd_holder *h)
{
    if (!h)
        return;
    semd_snapshot_release(h->current);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

struct semd_snapshot *
semd_holder_acquire(struct semd_holder *h)
{
    /* reading the pointer and taking the reference must be one step under
     * the lock: otherwise a swap in between could free what we touch */
    pthread_mutex_lock(&h->lock);
    struct semd_snapshot *s = semd_snapshot_acquire(h->current);
    pthread_mutex_unlock(&h->lock);
    return s;
}

int
semd_holder_publish(struct semd_holder *h, struct semd_snapshot *s,
                    struct semd_err *err)
{
    if (!s)
        return semd_err_set(err, SEMD_EINVAL, "no snapshot to publish");
    pthread_mutex_lock(&h->lock);
    struct semd_snapshot *old = h->current;
    if (old && s->version <= old->version) {
        uint64_t cur = old->version, v = s->version;
        pthread_mutex_unlock(&h->lock);
        semd_snapshot_release(s);
        return semd_err_set(err, SEMD_EINVAL,
                            "snapshot version %llu is not newer than the "
                            "current %llu",
                            (unsigned long long)v, (unsigned long long)cur);
    }
    h->current = s;
    atomic_store(&h->last_version, s->version);
    pthread_mutex_unlock(&h->lock);
    /* outside the lock: freeing an old snapshot unmaps a file */
    semd_snapshot_release(old);
    return SEMD_OK;
}

int
semd_holder_replace(struct semd_holder *h, struct semd_snapshot *s,
                    struct semd_err *err)
{
    if (!s)
        return semd_err_set(err, SEMD_EINVAL, "no snapshot to publish");
    pthread_mutex_lock(&h->lock);
    struct semd_snapshot *old = h->current;
    if (!old || old->version != s->version) {
        uint64_t cur = old ? old->version : 0, v = s->version;
        pthread_mutex_unlock(&h->lock);
        semd_snapshot_release(s);
        return semd_err_set(err, SEMD_EBUSY,
                            "snapshot version %llu is no longer current "
                            "(%llu is)",
                            (unsigned long long)v, (unsigned long long)cur);
    }
    h->current = s;
    pthread_mutex_unlock(&h->lock);
    semd_snapshot_release(old);
    return SEMD_OK;
}

uint64_t
semd_holder_version(struct semd_holder *h)
{
    return atomic_load(&h->last_version);
}
