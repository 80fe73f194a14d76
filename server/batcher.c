/*
 * batcher.c - micro-batching of exact neighbour queries. Request threads
 * queue jobs and park their connection; scoring threads take every job
 * waiting (up to max_batch, all on the same index) and score them with one
 * semd_neighbors_batch call: one matrix product instead of one pass over
 * the matrix per query. A lone request is taken at once (no waiting
 * window), so it is not slower than scoring it in place; under load the
 * queue fills while the threads are busy and batches grow by themselves.
 *
 * Threads: submit from request threads; `threads` scoring threads; stop
 * from the main thread. One mutex guards the queue, never held while
 * scoring. A job's done and wake callbacks run on a scoring thread; after
 * wake the job belongs to its request again and is not touched.
 */
#include "serve.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct scorer;

struct batcher {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct batch_job *head, *tail;
    int stopping;
    size_t max_batch;
    int n_threads;
    struct scorer *scorers;
};

/* Takes up to max jobs sharing the first job's index, keeping the order
 * of the rest. Called with the lock held. */
static size_t
take(struct batcher *b, struct batch_job **out, size_t max)
{
    const struct semd_index *ix = b->head->index;
    struct batch_job **pp = &b->head;
    size_t n = 0;
    while (*pp && n < max) {
        struct batch_job *j = *pp;
        if (j->index == ix) {
            *pp = j->next;
            j->next = NULL;
            out[n++] = j;
        } else {
            pp = &j->next;
        }
    }
    /* the queue is short (one job per open connection at most) */
    b->tail = b->head;
    while (b->tail && b->tail->next)
        b->tail = b->tail->next;
    return n;
}

struct scorer {
    struct batcher *b;
    pthread_t thread;
    struct batch_job **jobs;
    struct semd_nquery *qs;
};

static void *
worker(void *arg)
{
    struct scorer *sc = arg;
    struct batcher *b = sc->b;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->head && !b->stopping)
            pthread_cond_wait(&b->cond, &b->lock);
        if (!b->head)
            break;
        size_t n = take(b, sc->jobs, b->max_batch);
        pthread_mutex_unlock(&b->lock);

        struct semd_err err = {0};
        for (size_t i = 0; i < n; i++)
            sc->qs[i] = sc->jobs[i]->q;
        int rc = semd_neighbors_batch(sc->jobs[0]->index, sc->qs, n, &err);
        for (size_t i = 0; i < n; i++) {
            struct semd_nquery *q = &sc->jobs[i]->q;
            if (rc == 0) {
                q->n_hits = sc->qs[i].n_hits;
                q->rc = sc->qs[i].rc;
                if (q->rc)
                    q->err = sc->qs[i].err;
            } else {
                q->rc = rc;
                q->err = err;
            }
        }
        metrics_batch(n);
        for (size_t i = 0; i < n; i++) {
            struct batch_job *j = sc->jobs[i];
            j->done(j);
            j->wake(j->wake_arg); /* j is the request's again */
        }
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

int
batcher_start(struct batcher **out, int threads, size_t max_batch,
              struct semd_err *err)
{
    struct batcher *b = calloc(1, sizeof *b);
    if (!b)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory for a batcher");
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->max_batch = max_batch ? max_batch : 1;
    b->scorers = calloc((size_t)threads, sizeof *b->scorers);
    if (!b->scorers) {
        free(b);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory for a batcher");
    }
    for (int i = 0; i < threads; i++) {
        struct scorer *sc = &b->scorers[i];
        sc->b = b;
        sc->jobs = malloc(b->max_batch * sizeof *sc->jobs);
        sc->qs = malloc(b->max_batch * sizeof *sc->qs);
        if (!sc->jobs || !sc->qs ||
            pthread_create(&sc->thread, NULL, worker, sc) != 0) {
            free(sc->jobs);
            free(sc->qs);
            batcher_stop(b);
            return semd_err_set(err, SEMD_ENOMEM,
                                "cannot start scoring thread %d", i);
        }
        b->n_threads++;
    }
    *out = b;
    return SEMD_OK;
}

int
batcher_submit(struct batcher *b, struct batch_job *j)
{
    pthread_mutex_lock(&b->lock);
    if (b->stopping) {
        pthread_mutex_unlock(&b->lock);
        return SEMD_ESHUTDOWN;
    }
    j->next = NULL;
    if (b->tail)
        b->tail->next = j;
    else
        b->head = j;
    b->tail = j;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return SEMD_OK;
}

void
batcher_stop(struct batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < b->n_threads; i++) {
        pthread_join(b->scorers[i].thread, NULL);
        free(b->scorers[i].jobs);
        free(b->scorers[i].qs);
    }
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b->scorers);
    free(b);
}
