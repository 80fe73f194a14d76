/*
 * metrics.c - counters for GET /metrics in the Prometheus text format:
 * requests by route, method and status, latency histograms by route,
 * requests in flight, scoring batches, and the model's rows, dims and
 * snapshot version.
 *
 * Every counter is a relaxed atomic updated by request and batcher
 * threads; rendering reads them without a lock (a scrape may see one
 * request counted in the total but not yet in its histogram, which
 * Prometheus tolerates).
 */
#include "serve.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 32
#define SLOT_NONE MAX_ROUTES /* requests that matched no route */

static const int statuses[] = {200, 202, 400, 401, 403, 404, 405,
                               413, 415, 429, 500, 503, 0};
#define N_STATUS (sizeof statuses / sizeof statuses[0])

static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5, 1, 2.5, 5};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

static struct {
    atomic_ullong count[MAX_ROUTES + 1][N_STATUS];
    atomic_ullong hist[MAX_ROUTES + 1][N_BUCKETS + 1];
    atomic_ullong sum_us[MAX_ROUTES + 1];
    atomic_llong inflight;
    atomic_ullong batches, batched;
} m;

void
metrics_init(void)
{
    /* the table must fit; a programmer error, caught at start */
    if (n_routes > MAX_ROUTES)
        abort();
}

static size_t
slot(const struct route *r)
{
    return r ? (size_t)(r - routes) : SLOT_NONE;
}

void
metrics_request(const struct route *r, int status, double seconds)
{
    size_t s = slot(r), i;
    for (i = 0; i < N_STATUS - 1 && statuses[i] != status; i++)
        ;
    atomic_fetch_add_explicit(&m.count[s][i], 1, memory_order_relaxed);
    size_t b;
    for (b = 0; b < N_BUCKETS && seconds > buckets[b]; b++)
        ;
    atomic_fetch_add_explicit(&m.hist[s][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m.sum_us[s],
                              (unsigned long long)(seconds * 1e6),
                              memory_order_relaxed);
}

void
metrics_inflight(int delta)
{
    atomic_fetch_add_explicit(&m.inflight, delta, memory_order_relaxed);
}

void
metrics_batch(size_t n)
{
    atomic_fetch_add_explicit(&m.batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m.batched, n, memory_order_relaxed);
}

struct buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void __attribute__((format(printf, 2, 3)))
put(struct buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

const char *
index_state_name(int state)
{
    switch (state) {
    case INDEX_LOADING:
        return "loading";
    case INDEX_FAILED:
        return "failed";
    default:
        return "ready";
    }
}

/* A label value: backslash, quote and newline escaped, cut to fit. */
static void
label_value(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < n; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n') {
            out[o++] = '\\';
            out[o++] = *s == '\n' ? 'n' : *s;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = 0;
}

static void
labels(char *out, size_t n, size_t s)
{
    if (s == SLOT_NONE)
        snprintf(out, n, "method=\"\",route=\"none\"");
    else
        snprintf(out, n, "method=\"%s\",route=\"%s\"", routes[s].method,
                 routes[s].name);
}

char *
metrics_render(struct server *srv, size_t *len)
{
    struct buf b = {malloc(16384), 0, 16384, 0};
    if (!b.p)
        return NULL;
    char lab[160];
    put(&b, "# HELP semd_requests_total HTTP requests answered, by route "
            "and status.\n# TYPE semd_requests_total counter\n");
    for (size_t s = 0; s <= SLOT_NONE; s++) {
        if (s < SLOT_NONE && s >= n_routes)
            continue;
        labels(lab, sizeof lab, s);
        for (size_t i = 0; i < N_STATUS; i++) {
            unsigned long long v = atomic_load(&m.count[s][i]);
            char code[16];
            if (statuses[i])
                snprintf(code, sizeof code, "%d", statuses[i]);
            else
                snprintf(code, sizeof code, "other");
            if (v)
                put(&b, "semd_requests_total{%s,code=\"%s\"} %llu\n", lab,
                    code, v);
        }
    }
    put(&b, "# HELP semd_request_duration_seconds Time from the first byte "
            "of a request to the end of its reply.\n"
            "# TYPE semd_request_duration_seconds histogram\n");
    for (size_t s = 0; s <= SLOT_NONE; s++) {
        if (s < SLOT_NONE && s >= n_routes)
            continue;
        unsigned long long cum = 0;
        labels(lab, sizeof lab, s);
        for (size_t i = 0; i <= N_BUCKETS; i++) {
            cum += atomic_load(&m.hist[s][i]);
            if (i < N_BUCKETS)
                put(&b, "semd_request_duration_seconds_bucket{%s,le=\"%g\"}"
                        " %llu\n", lab, buckets[i], cum);
            else
                put(&b, "semd_request_duration_seconds_bucket{%s,le=\"+Inf\"}"
                        " %llu\n", lab, cum);
        }
        put(&b, "semd_request_duration_seconds_sum{%s} %.6f\n", lab,
            (double)atomic_load(&m.sum_us[s]) / 1e6);
        put(&b, "semd_request_duration_seconds_count{%s} %llu\n", lab, cum);
    }
    put(&b, "# HELP semd_requests_in_flight Requests being handled.\n"
            "# TYPE semd_requests_in_flight gauge\nsemd_requests_in_flight "
            "%lld\n", (long long)atomic_load(&m.inflight));
    put(&b, "# HELP semd_batches_total Scoring batches of exact neighbour "
            "queries.\n# TYPE semd_batches_total counter\n"
            "semd_batches_total %llu\n", atomic_load(&m.batches));
    put(&b, "# HELP semd_batched_queries_total Queries scored in batches.\n"
            "# TYPE semd_batched_queries_total counter\n"
            "semd_batched_queries_total %llu\n", atomic_load(&m.batched));
    put(&b, "# HELP semd_start_time_seconds When the server started.\n"
            "# TYPE semd_start_time_seconds gauge\n"
            "semd_start_time_seconds %.3f\n", srv->started);
    struct semd_snapshot *snap = semd_holder_acquire(srv->holder);
    put(&b, "# HELP semd_ready Whether a model is loaded and served.\n"
            "# TYPE semd_ready gauge\nsemd_ready %d\n", snap != NULL);
    if (snap) {
        const struct semd_model *mod = semd_snapshot_model(snap);
        put(&b, "# HELP semd_model_rows Words in the served model.\n"
                "# TYPE semd_model_rows gauge\nsemd_model_rows %llu\n",
            (unsigned long long)semd_model_rows(mod));
        put(&b, "# HELP semd_model_dims Dimensions of the served model.\n"
                "# TYPE semd_model_dims gauge\nsemd_model_dims %u\n",
            (unsigned)semd_model_dims(mod));
        put(&b, "# HELP semd_snapshot_version Version of the served "
                "snapshot.\n# TYPE semd_snapshot_version gauge\n"
                "semd_snapshot_version %llu\n",
            (unsigned long long)semd_snapshot_version(snap));
        put(&b, "# HELP semd_snapshot_loaded_time_seconds When the served "
                "snapshot was made.\n"
                "# TYPE semd_snapshot_loaded_time_seconds gauge\n"
                "semd_snapshot_loaded_time_seconds %.3f\n",
            semd_snapshot_loaded_at(snap));
        int st = atomic_load(&srv->index_state);
        char ixl[256];
        label_value(ixl, sizeof ixl, srv->cfg && srv->cfg->index
                                     ? srv->cfg->index : "Flat");
        put(&b, "# HELP semd_index_ready Whether the index asked for "
                "answers (0 while it loads and the exact index answers).\n"
                "# TYPE semd_index_ready gauge\n"
                "semd_index_ready{index=\"%s\",state=\"%s\"} %d\n",
            ixl, index_state_name(st), st == INDEX_NONE || st == INDEX_READY);
        semd_snapshot_release(snap);
    }
    char *train = online_metrics(srv->online); /* --train only */
    if (train) {
        put(&b, "%s", train);
        free(train);
    }
    struct cache_stats cs;
    cache_stats(srv->cache, &cs);
    put(&b, "# HELP semd_cache_hits_total Read queries answered from the "
            "result cache.\n# TYPE semd_cache_hits_total counter\n"
            "semd_cache_hits_total %llu\n"
            "# HELP semd_cache_misses_total Cacheable read queries computed."
            "\n# TYPE semd_cache_misses_total counter\n"
            "semd_cache_misses_total %llu\n"
            "# HELP semd_cache_entries Results held (--cache-size bounds "
            "them; 0: off).\n# TYPE semd_cache_entries gauge\n"
            "semd_cache_entries %zu\n"
            "# HELP semd_cache_capacity The --cache-size.\n"
            "# TYPE semd_cache_capacity gauge\nsemd_cache_capacity %zu\n"
            "# HELP semd_cache_bytes Memory the results held take "
            "(--cache-bytes bounds it).\n# TYPE semd_cache_bytes gauge\n"
            "semd_cache_bytes %zu\n"
            "# HELP semd_cache_capacity_bytes The --cache-bytes.\n"
            "# TYPE semd_cache_capacity_bytes gauge\n"
            "semd_cache_capacity_bytes %zu\n",
        cs.hits, cs.misses, cs.entries, cs.cap, cs.bytes, cs.cap_bytes);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
