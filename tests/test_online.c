/*
 * test_online.c - online training end to end: `semd serve --train` runs as
 * a child process on the 20k-word fixture with a temporary data directory
 * and token file; the tests post text over loopback HTTP and watch new
 * versions appear, a new word become queryable, the backlog bound answer
 * 429, and the data directory survive SIGKILL at random moments (every
 * acknowledged record persisted or replayed, every snapshot file
 * verifying).
 */
#define _GNU_SOURCE /* strcasestr */
#include "test.h"

#include "daemon.h"

#include <dirent.h>
#include <math.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "t-online-0123456789"
#define AUTH "Authorization: Bearer "

/* One request with an optional bearer token (tests/daemon.h does the
 * rest): 0 with *r filled, -1 when no whole response came back. */
static int
request(int port, const char *method, const char *target, const char *ctype,
        const char *body, const char *token, struct t_resp *r)
{
    char auth[256] = "";
    if (token)
        snprintf(auth, sizeof auth, AUTH "%s\r\n", token);
    return t_request(port, method, target, ctype, body,
                     body ? strlen(body) : 0, token ? auth : NULL, r);
}

static uint64_t
u64_at(json_t *v, const char *path)
{
    return (uint64_t)json_integer_value(t_json_at(v, path));
}

/* ---------------------------------------------------------------- daemon */

/* t_path's buffers rotate: a path kept across calls is copied here. */
static const char *
keep_path(const char *name)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s", t_path(name));
    return b;
}

static const char *
token_file(void)
{
    return t_token_file("token", TOKEN "\n", 0600);
}

/* Starts semd serve on the fixture with extra flags and waits until it is
 * ready. */
static void
start(struct t_daemon *d, const char *name, const char *const *flags)
{
    const char *args[48];
    int n = 0;
    args[n++] = t_fixture();
    args[n++] = "--threads";
    args[n++] = "2";
    for (int i = 0; flags && flags[i]; i++)
        args[n++] = flags[i];
    args[n] = NULL;
    int rc = t_daemon_start(d, name, args);
    if (rc != 0)
        fail_msg("semd serve did not start (%d); log in %s", rc, d->log);
}

static json_t *
train_status(struct t_daemon *d)
{
    struct t_resp r;
    if (request(d->port, "GET", "/v1/train", NULL, NULL, NULL, &r) != 0)
        fail_msg("GET /v1/train: no response");
    assert_int_equal(r.status, 200);
    json_t *res = json_incref(t_json_at(r.json, "result"));
    t_resp_free(&r);
    return res;
}

/* Waits until everything posted so far is trained and published. */
static json_t *
wait_trained(struct t_daemon *d, double timeout)
{
    /* the sanitizer builds run several times slower (Makefile) */
    timeout *= t_scale();
    for (double t0 = t_now();;) {
        json_t *s = train_status(d);
        uint64_t last = u64_at(s, "journal.last_seq");
        if (u64_at(s, "journal.trained_seq") == last &&
            u64_at(s, "journal.published_seq") == last)
            return s;
        json_decref(s);
        if (t_now() - t0 > timeout)
            fail_msg("training did not catch up in %.0f s; log in %s",
                     timeout, d->log);
        usleep(50 * 1000);
    }
}

/* ----------------------------------------------------------- the texts */

/* Sentences where "zorblat" stands where royalty does. */
static char *
royal_text(int lines)
{
    static const char *const s[] = {
        "the king and the zorblat ruled the kingdom together .",
        "the queen spoke to the zorblat about the throne .",
        "the zorblat was crowned by the king and queen .",
        "a prince and a zorblat sat on the royal throne .",
        "the kingdom loved its queen , its king and its zorblat .",
    };
    size_t cap = (size_t)lines * 80 + 1, n = 0;
    char *t = malloc(cap);
    for (int i = 0; i < lines; i++)
        n += (size_t)snprintf(t + n, cap - n, "%s\n", s[i % 5]);
    return t;
}

static char *
json_doc(const char *text)
{
    json_t *o = json_pack("{s:s}", "text", text);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ------------------------------------------------------------ queries */

struct querier {
    int port;
    atomic_int stop;
    int errors, done;
    uint64_t first_version, last_version;
    int went_back;
    char first_error[256];
};

static void *
query_loop(void *arg)
{
    struct querier *q = arg;
    while (!atomic_load(&q->stop)) {
        struct t_resp r;
        int rc = request(q->port, "GET", "/v1/neighbors?word=king&k=10",
                         NULL, NULL, NULL, &r);
        if (rc != 0 || r.status != 200) {
            if (!q->errors++)
                snprintf(q->first_error, sizeof q->first_error,
                         "status %d: %s", rc ? -1 : r.status,
                         rc ? "no response" : r.body);
        } else {
            uint64_t v = u64_at(r.json, "version");
            if (!q->first_version)
                q->first_version = v;
            if (v < q->last_version)
                q->went_back = 1;
            q->last_version = v;
        }
        t_resp_free(&r);
        q->done++;
    }
    return NULL;
}

/* ---------------------------------------------------------------- tests */

static void
test_train_off(void **state)
{
    (void)state;
    struct t_daemon d;
    const char *flags[] = {"--token-file", token_file(), NULL};
    start(&d, "off.log", flags);
    struct t_resp r;
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", TOKEN, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(json_string_value(t_json_at(r.json, "error.code")),
                        "forbidden");
    assert_non_null(strstr(t_json_str(r.json, "error.message"),
                           "--train"));
    t_resp_free(&r);
    assert_int_equal(request(d.port, "GET", "/v1/train", NULL, NULL, NULL,
                             &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(t_json_at(r.json, "result.enabled")));
    t_resp_free(&r);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

static void
test_usage(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s serve %s --train --listen 127.0.0.1:0 "
             "2>&1", t_semd(), t_fixture());
    char *out = NULL;
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--data-dir"));
    free(out);
}

static void
test_new_word(void **state)
{
    (void)state;
    struct t_daemon d;
    const char *flags[] = {"--train", "--data-dir", keep_path("new-word"),
                           "--token-file", token_file(),
                           "--publish-interval", "0.2", "--min-count", "5",
                           "--train-threads", "2", NULL};
    start(&d, "new-word.log", flags);
    struct t_resp r;
    /* the word is unknown before any text mentions it */
    assert_int_equal(request(d.port, "GET", "/v1/neighbors?word=zorblat",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    t_resp_free(&r);
    /* no token, wrong token */
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", NULL, &r), 0);
    assert_int_equal(r.status, 401);
    t_resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", "wrong-token-xyz", &r), 0);
    assert_int_equal(r.status, 401);
    t_resp_free(&r);
    /* bad bodies */
    assert_int_equal(request(d.port, "POST", "/v1/train", "application/json",
                             "{\"text\": 3}", TOKEN, &r), 0);
    assert_int_equal(r.status, 400);
    t_resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "  \n ", TOKEN, &r), 0);
    assert_int_equal(r.status, 400);
    t_resp_free(&r);

    /* static: a failed assertion leaves the function while it runs */
    static struct querier q;
    memset(&q, 0, sizeof q);
    q.port = d.port;
    pthread_t th;
    pthread_create(&th, NULL, query_loop, &q);

    /* four posts: plain text, JSON text, JSON documents */
    char *text = royal_text(100);
    uint64_t last_seq = 0;
    for (int i = 0; i < 4; i++) {
        char *body = NULL;
        const char *ctype = "text/plain";
        if (i == 1) {
            body = json_doc(text);
            ctype = "application/json";
        } else if (i == 2) {
            json_t *o = json_pack("{s:[s,s]}", "documents", text,
                                  "the zorblat and the queen");
            body = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            ctype = "application/json";
        }
        assert_int_equal(request(d.port, "POST", "/v1/train", ctype,
                                 body ? body : text, TOKEN, &r), 0);
        free(body);
        assert_int_equal(r.status, 202);
        uint64_t seq = u64_at(r.json, "result.seq");
        assert_true(seq > last_seq);
        last_seq = seq;
        t_resp_free(&r);
    }
    free(text);
    json_t *st = wait_trained(&d, 20);
    assert_true(u64_at(st, "version") >= 2);
    assert_true(u64_at(st, "new_words") >= 1);
    assert_true(u64_at(st, "words_trained") > 4000);
    json_decref(st);

    assert_int_equal(request(d.port, "GET",
                             "/v1/neighbors?word=zorblat&k=10", NULL, NULL,
                             NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(u64_at(r.json, "version") >= 2);
    int royal = 0;
    size_t i;
    json_t *e;
    json_array_foreach(t_json_at(r.json, "result.neighbors"), i, e) {
        const char *w = json_string_value(json_object_get(e, "word"));
        royal += !strcmp(w, "king") || !strcmp(w, "queen") ||
                 !strcmp(w, "prince") || !strcmp(w, "throne") ||
                 !strcmp(w, "kingdom") || !strcmp(w, "crowned");
    }
    if (royal < 2)
        fail_msg("zorblat's neighbours are not royal: %s", r.body);
    t_resp_free(&r);

    /* drift of king from the first version to the current one */
    assert_int_equal(request(d.port, "GET", "/v1/words/king/drift?from=1",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    double cos = json_real_value(t_json_at(r.json, "result.cosine"));
    assert_true(cos > 0.3 && cos < 0.99999);
    assert_int_equal(json_array_size(t_json_at(r.json,
                                               "result.neighbors_from")),
                     10);
    assert_int_equal(json_array_size(t_json_at(r.json, "result.entered")),
                     json_array_size(t_json_at(r.json, "result.left")));
    t_resp_free(&r);
    assert_int_equal(request(d.port, "GET",
                             "/v1/words/zorblat/drift?from=1", NULL, NULL,
                             NULL, &r), 0);
    assert_int_equal(r.status, 404);
    t_resp_free(&r);
    assert_int_equal(request(d.port, "GET", "/v1/words/king/drift?from=999",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    t_resp_free(&r);
    assert_int_equal(request(d.port, "GET", "/v1/words/king/drift?from=x",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 400);
    t_resp_free(&r);

    /* the figures in /metrics */
    assert_int_equal(request(d.port, "GET", "/metrics", NULL, NULL, NULL,
                             &r), 0);
    assert_non_null(strstr(r.body, "semd_train_words_total "));
    assert_non_null(strstr(r.body, "semd_train_queued_records 0"));
    t_resp_free(&r);

    atomic_store(&q.stop, 1);
    pthread_join(th, NULL);
    if (q.errors)
        fail_msg("%d of %d queries failed during training, first: %s",
                 q.errors, q.done, q.first_error);
    assert_false(q.went_back);
    assert_true(q.done > 10);
    assert_true(q.last_version > q.first_version);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);

    /* a restart serves the persisted version, the new word included */
    start(&d, "new-word.log", flags);
    assert_int_equal(request(d.port, "GET", "/v1/neighbors?word=zorblat",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(u64_at(r.json, "version") >= 2);
    t_resp_free(&r);
    st = train_status(&d);
    assert_int_equal(u64_at(st, "start.included_seq"), last_seq);
    assert_int_equal(u64_at(st, "start.replay_from"), 0);
    json_decref(st);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

static void
test_backlog(void **state)
{
    (void)state;
    struct t_daemon d;
    const char *flags[] = {"--train", "--data-dir", keep_path("backlog"),
                           "--token-file", token_file(),
                           "--max-backlog-records", "1", "--max-body",
                           "4M", "--min-count", "1000000", NULL};
    start(&d, "backlog.log", flags);
    /* a post big enough to keep one trainer thread busy for a while */
    char *text = royal_text(40000);
    struct t_resp r;
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain", text,
                             TOKEN, &r), 0);
    free(text);
    assert_int_equal(r.status, 202);
    t_resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", TOKEN, &r), 0);
    assert_int_equal(r.status, 429);
    assert_string_equal(json_string_value(t_json_at(r.json, "error.code")),
                        "overloaded");
    assert_non_null(strcasestr(r.head, "\r\nRetry-After: "));
    t_resp_free(&r);
    /* once trained, posts are taken again; the refused one was never
     * journaled */
    json_t *st = wait_trained(&d, 30);
    assert_int_equal(u64_at(st, "journal.last_seq"), 1);
    json_decref(st);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", TOKEN, &r), 0);
    assert_int_equal(r.status, 202);
    assert_int_equal(u64_at(r.json, "result.seq"), 2);
    t_resp_free(&r);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

/* A word seen min_count - 1 times before a restart and once after joins
 * the vocabulary: the counts below min_count persist with the snapshot,
 * and so do the context vectors (start.trainer_state). */
static void
test_counts_persist(void **state)
{
    (void)state;
    struct t_daemon d;
    const char *flags[] = {"--train", "--data-dir", keep_path("counts"),
                           "--token-file", token_file(),
                           "--publish-interval", "0.2", "--min-count", "3",
                           NULL};
    start(&d, "counts.log", flags);
    json_t *st = train_status(&d);
    assert_string_equal(t_json_str(st, "start.trainer_state"), "none");
    json_decref(st);
    struct t_resp r;
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king met the quixling .\n"
                             "the queen and the quixling .", TOKEN, &r), 0);
    assert_int_equal(r.status, 202);
    t_resp_free(&r);
    json_decref(wait_trained(&d, 20));
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);

    start(&d, "counts.log", flags);
    st = train_status(&d);
    assert_string_equal(t_json_str(st, "start.trainer_state"), "restored");
    json_decref(st);
    assert_int_equal(t_get(d.port, "/v1/neighbors?word=quixling", &r), 0);
    assert_int_equal(r.status, 404);
    t_resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "a quixling spoke .", TOKEN, &r), 0);
    assert_int_equal(r.status, 202);
    t_resp_free(&r);
    json_decref(wait_trained(&d, 20));
    assert_int_equal(t_get(d.port, "/v1/neighbors?word=quixling&k=3", &r),
                     0);
    if (r.status != 200)
        fail_msg("quixling did not join after a restart: %d %s", r.status,
                 r.body);
    t_resp_free(&r);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

/* ------------------------------------------------- the approximate index */

/* The fixture's first rows as a model of their own: an HNSW index of it
 * builds in a fraction of a second. */
static const char *
small_model(uint64_t rows)
{
    const char *path = keep_path("small.semd");
    struct semd_model *m;
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts o = {"test", "small", SEMD_MODEL_COUNTS_ARE_RANKS};
    if (semd_model_open(&m, t_fixture(), &err) != 0 ||
        semd_writer_open(&w, path, semd_model_dims(m), &o, &err) != 0)
        fail_msg("small model: %s", err.msg);
    for (uint64_t i = 0; i < rows; i++) {
        size_t len;
        const char *word = semd_model_word(m, i, &len);
        if (semd_writer_add(w, word, len, semd_model_row(m, i), 0, &err) != 0)
            fail_msg("small model: %s", err.msg);
    }
    if (semd_writer_finish(w, &err) != 0)
        fail_msg("small model: %s", err.msg);
    semd_model_close(m);
    return path;
}

/* Polls GET /v1/train until index.serving is want and index.built_version
 * is the current version; fails after timeout seconds (scaled). */
static void
wait_index(struct t_daemon *d, const char *want, double timeout)
{
    timeout *= t_scale();
    for (double t0 = t_now();;) {
        json_t *s = train_status(d);
        int ok = !strcmp(t_json_str(s, "index.serving"), want) &&
                 u64_at(s, "index.built_version") == u64_at(s, "version");
        char serving[128];
        snprintf(serving, sizeof serving, "%s", t_json_str(s,
                                                        "index.serving"));
        json_decref(s);
        if (ok)
            return;
        if (t_now() - t0 > timeout)
            fail_msg("index %s not swapped in after %.0f s (serving %s); "
                     "log in %s", want, timeout, serving, d->log);
        usleep(50 * 1000);
    }
}

/* Checks GET /v1/neighbors of word on version v against an exact search
 * of that version's file: every hit scored with its exact cosine, every
 * changed or new row of the exact top k present, 9 of 10 found. */
static void
check_exact(struct t_daemon *d, const char *dir, const char *base,
            const char *word, const char *want_index)
{
    char target[128];
    snprintf(target, sizeof target, "/v1/neighbors?word=%s&k=10", word);
    struct t_resp r;
    assert_int_equal(t_get(d->port, target, &r), 0);
    if (r.status != 200)
        fail_msg("%s: %d %s", target, r.status, r.body);
    assert_string_equal(t_json_str(r.json, "result.index"), want_index);
    char path[1024];
    snprintf(path, sizeof path, "%s/snapshots/v%llu.semd", dir,
             (unsigned long long)u64_at(r.json, "version"));
    struct semd_model *m, *bm;
    struct semd_index *ix;
    struct semd_err err = {0};
    assert_int_equal(semd_model_open(&m, path, &err), 0);
    assert_int_equal(semd_model_open(&bm, base, &err), 0);
    assert_int_equal(semd_index_open(&ix, m, NULL, &err), 0);
    uint64_t row;
    assert_int_equal(semd_model_lookup(m, word, strlen(word), &row), 0);
    struct semd_search s = {0};
    s.k = 10;
    s.exclude = &row;
    s.n_exclude = 1;
    struct semd_hit h[10];
    uint32_t nh = 0;
    assert_int_equal(semd_index_search(ix, semd_model_row(m, row), &s, h, &nh,
                                       &err), 0);
    json_t *nb = t_json_at(r.json, "result.neighbors");
    assert_int_equal(json_array_size(nb), 10);
    const uint32_t dims = semd_model_dims(m);
    const float *q = semd_model_row(m, row);
    size_t i;
    json_t *e;
    json_array_foreach(nb, i, e) {
        uint64_t nr = (uint64_t)json_integer_value(json_object_get(e, "row"));
        const float *v = semd_model_row(m, nr);
        double dot = 0, a = 0, b = 0;
        for (uint32_t j = 0; j < dims; j++) {
            dot += (double)q[j] * v[j];
            a += (double)q[j] * q[j];
            b += (double)v[j] * v[j];
        }
        double sim = json_real_value(json_object_get(e, "similarity"));
        if (fabs(sim - dot / sqrt(a * b)) > 1e-4)
            fail_msg("%s: %s scored %f, its cosine is %f", word,
                     json_string_value(json_object_get(e, "word")), sim,
                     dot / sqrt(a * b));
    }
    int found = 0;
    for (uint32_t k = 0; k < nh; k++) {
        int in = 0;
        json_array_foreach(nb, i, e)
            in |= (uint64_t)json_integer_value(json_object_get(e, "row")) ==
                  h[k].row;
        found += in;
        size_t len;
        const char *w = semd_model_word(m, h[k].row, &len);
        uint64_t br;
        int changed = semd_model_lookup(bm, w, len, &br) != 0 ||
                      memcmp(semd_model_row(bm, br),
                             semd_model_row(m, h[k].row),
                             dims * sizeof(float)) != 0;
        if (changed && !in)
            fail_msg("%s: changed row \"%s\" of the exact top 10 missing: "
                     "%s", word, w, r.body);
    }
    if (found < 9)
        fail_msg("%s: %d of the exact top 10 found: %s", word, found, r.body);
    semd_index_close(ix);
    semd_model_close(m);
    semd_model_close(bm);
    t_resp_free(&r);
}

/* With --index HNSW16, a trained version is answered through the previous
 * version's HNSW index plus an exact scan of its changed and new rows
 * until its own index is built (no sooner than --index-rebuild-interval
 * after the last build), then by that index alone. */
static void
test_approx_index(void **state)
{
    (void)state;
    const char *model = small_model(3000);
    const char *dir = keep_path("approx");
    double interval = 3 + 2 * t_scale();
    char iv[32];
    snprintf(iv, sizeof iv, "%.1f", interval);
    struct t_daemon d;
    const char *args[] = {model, "--threads", "2", "--train", "--data-dir",
                          dir, "--token-file", token_file(),
                          "--publish-interval", "0.2", "--min-count", "5",
                          "--index", "HNSW16", "--index-rebuild-interval",
                          iv, "--cache-size", "0", NULL};
    if (t_daemon_start(&d, "approx.log", args) != 0)
        fail_msg("semd serve did not start; log in %s", d.log);
    /* the first version's own index, built in the background */
    wait_index(&d, "HNSW16", 30);
    double built = t_now();
    char *text = royal_text(100);
    struct t_resp r;
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain", text,
                             TOKEN, &r), 0);
    free(text);
    assert_int_equal(r.status, 202);
    t_resp_free(&r);
    json_t *st = wait_trained(&d, 20);
    json_decref(st);
    st = train_status(&d);
    double elapsed = t_now() - built;
    if (elapsed < interval - 1) {
        /* no rebuild yet: the delta index answers */
        assert_string_equal(t_json_str(st, "index.serving"),
                            "HNSW16+exact-delta");
        assert_true(u64_at(st, "index.delta_rows") > 0);
        assert_int_equal(u64_at(st, "index.built_version"), 1);
        check_exact(&d, dir, model, "zorblat", "HNSW16+exact-delta");
        check_exact(&d, dir, model, "king", "HNSW16+exact-delta");
        check_exact(&d, dir, model, "queen", "HNSW16+exact-delta");
    } else {
        print_message("the delta state went unobserved: training took "
                      "%.1f s of the %.1f s between builds\n", elapsed,
                      interval);
    }
    json_decref(st);
    /* then the trained version's own index */
    wait_index(&d, "HNSW16", interval + 30);
    check_exact(&d, dir, model, "zorblat", "HNSW16");
    st = train_status(&d);
    assert_int_equal(u64_at(st, "index.delta_rows"), 0);
    assert_true(u64_at(st, "index.builds") >= 2);
    json_decref(st);
    assert_int_equal(t_get(d.port, "/v1/model", &r), 0);
    assert_string_equal(t_json_str(r.json, "result.index.factory"),
                        "HNSW16");
    assert_string_equal(t_json_str(r.json, "result.index.state"), "ready");
    t_resp_free(&r);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

/* An index that cannot be built is reported; the exact index answers. */
static void
test_index_fails(void **state)
{
    (void)state;
    struct t_daemon d;
    const char *flags[] = {"--train", "--data-dir", keep_path("badindex"),
                           "--token-file", token_file(), "--index",
                           "NoSuchIndex7", NULL};
    start(&d, "badindex.log", flags);
    json_t *st = NULL;
    for (double t0 = t_now();; usleep(50 * 1000)) {
        json_decref(st);
        st = train_status(&d);
        if (u64_at(st, "index.build_failures") >= 1)
            break;
        if (t_now() - t0 > 20 * t_scale())
            fail_msg("no build failure reported; log in %s", d.log);
    }
    if (!strstr(t_json_str(st, "index.build_error"), "NoSuchIndex7"))
        fail_msg("build_error: %s", t_json_str(st, "index.build_error"));
    assert_string_equal(t_json_str(st, "index.serving"), "Flat");
    json_decref(st);
    struct t_resp r;
    assert_int_equal(t_get(d.port, "/v1/model", &r), 0);
    assert_string_equal(t_json_str(r.json, "result.index.state"), "failed");
    t_resp_free(&r);
    assert_int_equal(t_get(d.port, "/v1/neighbors?word=king&k=3", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(t_json_str(r.json, "result.index"), "Flat");
    t_resp_free(&r);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

/* ----------------------------------------------------------- crash test */

struct poster {
    int port;
    atomic_int stop;
    uint64_t max_acked;
    int acked;
    uint64_t seqs[1 << 14]; /* the acknowledged sequence numbers */
};

static void *
post_loop(void *arg)
{
    struct poster *p = arg;
    char *text = royal_text(20);
    while (!atomic_load(&p->stop)) {
        struct t_resp r;
        if (request(p->port, "POST", "/v1/train", "text/plain", text, TOKEN,
                    &r) != 0)
            break; /* killed */
        if (r.status == 202) {
            uint64_t s = u64_at(r.json, "result.seq");
            if (s > p->max_acked)
                p->max_acked = s;
            if ((size_t)p->acked < sizeof p->seqs / sizeof p->seqs[0])
                p->seqs[p->acked++] = s;
            else
                atomic_store(&p->stop, 1); /* enough for one iteration */
        }
        t_resp_free(&r);
    }
    free(text);
    return NULL;
}

/* The acknowledged records of every iteration so far. */
static struct {
    uint64_t *seqs;
    size_t n;
} acked;

static void
acked_add(const struct poster *p)
{
    uint64_t *s = realloc(acked.seqs,
                          (acked.n + (size_t)p->acked) * sizeof *s);
    assert_non_null(s);
    memcpy(s + acked.n, p->seqs, (size_t)p->acked * sizeof *s);
    acked.seqs = s;
    acked.n += (size_t)p->acked;
}

/* How many acknowledged records a restart that covers the journal up to
 * covered holds. */
static size_t
acked_recovered(uint64_t covered)
{
    size_t n = 0;
    for (size_t i = 0; i < acked.n; i++)
        n += acked.seqs[i] <= covered;
    return n;
}

/* Every model file in the snapshot directory verifies. */
static void
verify_snapshots(const char *dir, int need_one)
{
    char sd[1024];
    snprintf(sd, sizeof sd, "%s/snapshots", dir);
    DIR *d = opendir(sd);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".semd"))
            continue;
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s verify %s/%s 2>&1", t_semd(), sd,
                 e->d_name);
        char *out = NULL;
        int rc = t_run(cmd, &out);
        if (rc != 0)
            fail_msg("%s/%s does not verify: %s", sd, e->d_name, out);
        free(out);
        n++;
    }
    closedir(d);
    if (need_one)
        assert_true(n >= 1);
}

/* SIGKILL at random moments while text is posted and trained: after each
 * restart every acknowledged record is in the snapshot CURRENT names or
 * replayed from the journal, and every model file verifies. */
static void
test_crash(void **state)
{
    (void)state;
    const char *dir = keep_path("crash");
    const char *flags[] = {"--train", "--data-dir", dir, "--token-file",
                           token_file(), "--publish-interval", "0.2",
                           "--persist-interval", "0.2", "--min-count", "3",
                           NULL};
    int iterations = getenv("SEMD_CRASH_ITERATIONS")
                         ? atoi(getenv("SEMD_CRASH_ITERATIONS")) : 4;
    uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
    print_message("crash test: %d iterations, seed %llu\n", iterations,
                  (unsigned long long)seed);
    uint64_t max_acked = 0, last_version = 0;
    int restarts = 0;
    free(acked.seqs);
    memset(&acked, 0, sizeof acked);
    for (int it = 0; it < iterations; it++) {
        struct t_daemon d;
        start(&d, "crash.log", flags);
        json_t *st = train_status(&d);
        uint64_t included = u64_at(st, "start.included_seq");
        uint64_t from = u64_at(st, "start.replay_from");
        uint64_t to = u64_at(st, "start.replay_to");
        uint64_t version = u64_at(st, "start.version");
        json_decref(st);
        /* nothing acknowledged is lost; nothing is trained twice */
        uint64_t covered = to > included ? to : included;
        if (covered < max_acked)
            fail_msg("iteration %d: acknowledged record %llu neither "
                     "persisted (%llu) nor replayed (%llu..%llu)", it,
                     (unsigned long long)max_acked,
                     (unsigned long long)included,
                     (unsigned long long)from, (unsigned long long)to);
        if (from)
            assert_int_equal(from, included + 1);
        assert_true(version >= last_version);
        last_version = version;
        if (it > 0) {
            /* the count the soak script reports; covered >= max_acked
             * above already implies all of them */
            size_t got = acked_recovered(covered);
            assert_int_equal(got, acked.n);
            restarts++;
            print_message("crash test: restart %d after SIGKILL: %zu "
                          "records acknowledged, %zu recovered (persisted "
                          "to %llu, replayed %llu..%llu)\n", restarts,
                          acked.n, got, (unsigned long long)included,
                          (unsigned long long)from,
                          (unsigned long long)to);
        }

        static struct poster p;
        memset(&p, 0, sizeof p);
        p.port = d.port;
        pthread_t th;
        pthread_create(&th, NULL, post_loop, &p);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        useconds_t wait = 300000 + (useconds_t)((seed >> 33) % 1200000);
        usleep(wait);
        if (it == iterations - 1) {
            /* the last one stops cleanly: everything trained persists */
            atomic_store(&p.stop, 1);
            pthread_join(th, NULL);
            json_decref(wait_trained(&d, 30));
            assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
        } else {
            assert_int_equal(t_daemon_stop(&d, SIGKILL), 128 + SIGKILL);
            atomic_store(&p.stop, 1);
            pthread_join(th, NULL);
        }
        if (p.max_acked > max_acked)
            max_acked = p.max_acked;
        acked_add(&p);
        /* a kill before the first publish leaves none: fine until the
         * clean stop, which persists one */
        verify_snapshots(dir, it == iterations - 1);
    }
    /* after the clean stop, CURRENT includes every acknowledged record */
    char path[1024];
    snprintf(path, sizeof path, "%s/CURRENT", dir);
    char *cur = t_read_file(path, NULL);
    unsigned long long v, s;
    char name[256];
    assert_int_equal(sscanf(cur, "%255s %llu %llu", name, &v, &s), 3);
    free(cur);
    assert_true(s >= max_acked);
    assert_true(max_acked > 0);
    size_t got = acked_recovered(s);
    assert_int_equal(got, acked.n);
    print_message("crash test: %d of %d restarts after SIGKILL passed; "
                  "%zu records acknowledged, %zu recovered after the last "
                  "clean stop; every snapshot verifies\n", restarts,
                  iterations - 1, acked.n, got);
    free(acked.seqs);
    memset(&acked, 0, sizeof acked);
}

/* ------------------------------------------------------------ contract */

/* Every response above against openapi.yaml: the training routes' bodies
 * (GET /v1/train with the index and the start state, 202, 429, drift)
 * are checked only here. The checker also wants every route reached,
 * which test_http's full run does: of its failures, only unreached routes
 * other than the training ones are accepted. */
static void
test_contract(void **state)
{
    (void)state;
    static const char *const mine[] = {"POST /v1/train", "GET /v1/train",
                                       "GET /v1/words/{word}/drift", NULL};
    assert_true(t_contract_partial(mine) >= 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_train_off),
        cmocka_unit_test(test_new_word),
        cmocka_unit_test(test_backlog),
        cmocka_unit_test(test_counts_persist),
        cmocka_unit_test(test_approx_index),
        cmocka_unit_test(test_index_fails),
        cmocka_unit_test(test_crash),
        cmocka_unit_test(test_contract),
    };
    /* tests/soak/crash.sh runs only the crash test, longer */
    if (getenv("SEMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SEMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, t_group_record,
                                  t_group_stop_recording);
}
