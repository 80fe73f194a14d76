/*
 * batcher.c - micro-batching of exact neighbour queries. Request threads
 * queue jobs and park their connection; scoring threads take every job
 * waiting (up to max_batch, all on the same index) and score them with one
 * semd_neighbors_batch call: one matrix product instead of one pass over
 * the matrix per query. A lone request is taken at once, so it is not
 * slower than scoring it in place. When another scoring thread is busy
 * (the cores are working anyway), a thread that finds few jobs waits a
 * short window (WINDOW_US, or until max_batch are queued) for more: the
 * index scores a small batch with one shared scan of the 8-bit rows and
 * a large one (16 or more) as one matrix product, so under load it pays
 * to gather. With 8 connections on 2 threads a scan (milliseconds on a
 * large model) lasts far longer than the window, so the window only
 * collects requests that are already arriving (a mean batch of about 6
 * measured by the HTTP bench).
 *
 * Threads: submit from request threads; `threads` scoring threads; stop
 * from the main thread. One mutex guards the queue, never held while
 * scoring. A job's done and wake callbacks run on a scoring thread; after
 * wake the job belongs to its request again and is not touched.
 */
#include "serve.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest wait for more jobs while another thread scores; a few hundred
 * microseconds, small against one exact pass over a large matrix. */
#define WINDOW_US 300

struct scorer;

struct batcher {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct batch_job *head, *tail;
    size_t queued;
    int busy; /* threads scoring now */
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
    b->queued -= n;
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
        if (b->busy > 0 && b->queued < b->max_batch) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += WINDOW_US * 1000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            while (b->queued < b->max_batch && !b->stopping &&
                   pthread_cond_timedwait(&b->cond, &b->lock, &until) !=
                       ETIMEDOUT)
                ;
            if (!b->head)
                continue; /* another thread took them meanwhile */
        }
        size_t n = take(b, sc->jobs, b->max_batch);
        b->busy++;
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
        b->busy--;
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
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
    b->queued++;
    /* wakes an idle thread, and a gathering one to count again */
    pthread_cond_broadcast(&b->cond);
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
