/*
 * test_http.c - end-to-end tests of `semd serve`: the built binary runs as
 * a child process on the 20k-word fixture, listening on 127.0.0.1 port 0;
 * the tests talk plain HTTP/1.1 to it over loopback through the harness in
 * daemon.c.
 *
 * Cases are data where they can be: tests/http/cases/<name>/request holds
 * a raw HTTP request and .../expect the expected status and JSON fields
 * (see tests/http/README.md). Every response received is appended to a
 * JSONL file that the contract test (tests/contract/validate.mjs) checks
 * against openapi.yaml at the end.
 */
#define _GNU_SOURCE /* strcasestr */
#include "daemon.h"

#include <dirent.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITE_TOKEN "w-0123456789abcdef"
#define READ_TOKEN "r-fedcba9876543210"
#define AUTH(token) "Authorization: Bearer " token "\r\n"

static struct t_daemon main_d; /* write token set, reads open */

#define at t_json_at
#define str_at t_json_str

static void
get(const char *target, struct t_resp *r)
{
    if (t_get(main_d.port, target, r) != 0)
        fail_msg("GET %s: no response", target);
}

static void
post(const char *target, const char *body, struct t_resp *r)
{
    if (t_request(main_d.port, "POST", target, "application/json", body,
                  strlen(body), NULL, r) != 0)
        fail_msg("POST %s: no response", target);
}

/* Whether the list at path holds an object whose "word" is word. */
static int
has_word(json_t *v, const char *path, const char *word)
{
    size_t i;
    json_t *e;
    json_array_foreach(at(v, path), i, e)
        if (!strcmp(str_at(e, "word"), word))
            return 1;
    return 0;
}

static int
healthy(int port)
{
    struct t_resp r;
    if (t_get(port, "/v1/health", &r) != 0)
        return 0;
    int ok = r.status == 200 && !strcmp(str_at(r.json, "result.status"),
                                        "ok");
    t_resp_free(&r);
    return ok;
}

static int
setup(void **state)
{
    (void)state;
    if (t_record_responses(t_path("contract.jsonl")) != 0)
        return -1;
    const char *flags[] = {t_fixture(), "--threads", "2", "--timeout", "2",
                           "--token-file",
                           t_token_file("write.token", WRITE_TOKEN "\n",
                                        0600),
                           "--max-body", "65536", "--max-k", "500",
                           "--max-batch", "64", NULL};
    return t_daemon_start(&main_d, "main.log", flags);
}

static int
teardown(void **state)
{
    (void)state;
    if (main_d.pid)
        t_daemon_stop(&main_d, SIGKILL);
    t_record_responses(NULL);
    return 0;
}

/* ------------------------------------------------------------ data cases */

static char *
subst(const char *s)
{
    const char *keys[] = {"{{WRITE_TOKEN}}", "{{READ_TOKEN}}"};
    const char *vals[] = {WRITE_TOKEN, READ_TOKEN};
    char *out = strdup(s);
    for (int k = 0; k < 2; k++) {
        char *p;
        while ((p = strstr(out, keys[k]))) {
            size_t kl = strlen(keys[k]), vl = strlen(vals[k]);
            char *n = malloc(strlen(out) - kl + vl + 1);
            memcpy(n, out, (size_t)(p - out));
            memcpy(n + (p - out), vals[k], vl);
            strcpy(n + (p - out) + vl, p + kl);
            free(out);
            out = n;
        }
    }
    return out;
}

/* Turns a request file (headers, a blank line, the body) into the bytes
 * to send: CRLF line ends, Host and Content-Length added if missing. */
static char *
build_request(const char *file, size_t flen, size_t *n)
{
    const char *sep = strstr(file, "\n\n");
    size_t hl = sep ? (size_t)(sep - file) : flen;
    const char *body = sep ? sep + 2 : "";
    size_t bl = sep ? flen - hl - 2 : 0;
    char *head = malloc(hl + 1);
    memcpy(head, file, hl);
    head[hl] = 0;
    char *h = subst(head);
    free(head);
    char *out = malloc(strlen(h) * 2 + bl + 256);
    size_t o = 0;
    for (char *line = strtok(h, "\n"); line; line = strtok(NULL, "\n"))
        o += (size_t)sprintf(out + o, "%s\r\n", line);
    if (!strcasestr(out, "\r\nHost:"))
        o += (size_t)sprintf(out + o, "Host: 127.0.0.1\r\n");
    if (!strcasestr(out, "\r\nContent-Length:") &&
        !strcasestr(out, "\r\nTransfer-Encoding:"))
        o += (size_t)sprintf(out + o, "Content-Length: %zu\r\n", bl);
    o += (size_t)sprintf(out + o, "Connection: close\r\n\r\n");
    memcpy(out + o, body, bl);
    *n = o + bl;
    free(h);
    return out;
}

static int
check_expect(const char *name, const char *expect, const struct t_resp *r)
{
    int ok = 1;
    char *e = strdup(expect);
    for (char *line = strtok(e, "\n"); line; line = strtok(NULL, "\n")) {
        char op[16] = "", path[256] = "";
        int off = 0;
        sscanf(line, "%15s %255s %n", op, path, &off);
        const char *arg = off ? line + off : "";
        int good;
        if (!strcmp(op, "status")) {
            good = r->status == atoi(path);
        } else if (!strcmp(op, "header")) {
            char want[512];
            snprintf(want, sizeof want, "%s %s", path, arg);
            good = strcasestr(r->head, want) != NULL;
        } else if (!strcmp(op, "exists")) {
            good = at(r->json, path) != NULL;
        } else if (!strcmp(op, "word")) {
            good = has_word(r->json, path, arg);
        } else if (!strcmp(op, "type")) {
            json_t *v = at(r->json, path);
            good = v && ((!strcmp(arg, "array") && json_is_array(v)) ||
                         (!strcmp(arg, "object") && json_is_object(v)) ||
                         (!strcmp(arg, "string") && json_is_string(v)) ||
                         (!strcmp(arg, "number") && json_is_number(v)));
        } else if (!strcmp(op, "equal")) {
            json_t *want = json_loads(arg, JSON_DECODE_ANY, NULL);
            json_t *v = at(r->json, path);
            good = want && v && (json_equal(want, v) ||
                                 (json_is_number(want) && json_is_number(v)
                                  && json_number_value(want) ==
                                         json_number_value(v)));
            json_decref(want);
        } else {
            print_error("%s: unknown expectation '%s'\n", name, op);
            good = 0;
        }
        if (!good) {
            print_error("%s: failed '%s'\n  status %d, body %.600s\n", name,
                        line, r->status, r->body ? r->body : "");
            ok = 0;
        }
    }
    free(e);
    return ok;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_cases(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/../http/cases", t_datadir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512)
        if (de->d_name[0] != '.')
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);
    size_t failed = 0, errors = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        size_t rl, el;
        snprintf(path, sizeof path, "%s/%s/request", dir, names[i]);
        char *file = t_read_file(path, &rl);
        snprintf(path, sizeof path, "%s/%s/expect", dir, names[i]);
        char *expect = t_read_file(path, &el);
        size_t len;
        char *req = build_request(file, rl, &len);
        struct t_resp r;
        if (t_raw(main_d.port, req, len, &r) != 0) {
            print_error("%s: no response\n", names[i]);
            failed++;
        } else {
            if (!check_expect(names[i], expect, &r))
                failed++;
            if (r.status >= 400) {
                errors++;
                /* every error is the documented JSON shape */
                if (!r.json || !json_is_string(at(r.json, "error.code")) ||
                    !json_is_string(at(r.json, "error.message"))) {
                    print_error("%s: error body is not the JSON error "
                                "shape: %.300s\n", names[i], r.body);
                    failed++;
                }
            }
            t_resp_free(&r);
        }
        if (!healthy(main_d.port)) {
            print_error("%s: the daemon stopped serving\n", names[i]);
            failed++;
        }
        free(req);
        free(file);
        free(expect);
        free(names[i]);
    }
    print_message("%zu cases, %zu of them errors, %zu failed\n", n, errors,
                  failed);
    assert_true(errors >= 30);
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------ protocol details */

static void
test_keep_alive(void **state)
{
    (void)state;
    /* two requests on one connection: the server must not close after the
     * first reply */
    int fd = t_dial(main_d.port);
    assert_true(fd >= 0);
    const char *req = "GET /v1/neighbors?word=cat&k=3 HTTP/1.1\r\n"
                      "Host: 127.0.0.1\r\n\r\n";
    for (int i = 0; i < 3; i++) {
        struct t_resp r;
        assert_int_equal(t_send_all(fd, req, strlen(req)), 0);
        assert_int_equal(t_read_resp(fd, &r), 0);
        assert_int_equal(r.status, 200);
        assert_null(strcasestr(r.head, "Connection: close"));
        t_record("GET", "/v1/neighbors", &r);
        t_resp_free(&r);
    }
    close(fd);
}

static void
test_body_20mb_declared(void **state)
{
    (void)state;
    /* refused on the declared length, before the body is read */
    int fd = t_dial(main_d.port);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /v1/neighbors HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %d\r\n\r\n", 20 * 1024 * 1024);
    assert_int_equal(t_send_all(fd, head, (size_t)n), 0);
    char chunk[65536];
    memset(chunk, ' ', sizeof chunk);
    t_send_all(fd, chunk, sizeof chunk); /* may fail: the server closes */
    struct t_resp r;
    assert_int_equal(t_read_resp(fd, &r), 0);
    close(fd);
    t_record("POST", "/v1/neighbors", &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(str_at(r.json, "error.code"), "payload_too_large");
    t_resp_free(&r);
    assert_true(healthy(main_d.port));
}

static void
test_body_20mb_chunked(void **state)
{
    (void)state;
    /* no declared length: the limit is passed mid-body, the rest of the
     * 20 MB is read and discarded, then 413 */
    int fd = t_dial(main_d.port);
    const char *head = "POST /v1/neighbors HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Content-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(t_send_all(fd, head, strlen(head)), 0);
    static char chunk[65536 + 16];
    int hl = sprintf(chunk, "%x\r\n", 65536);
    memset(chunk + hl, ' ', 65536);
    memcpy(chunk + hl + 65536, "\r\n", 2);
    for (int i = 0; i < 320; i++)
        assert_int_equal(t_send_all(fd, chunk, (size_t)hl + 65536 + 2), 0);
    assert_int_equal(t_send_all(fd, "0\r\n\r\n", 5), 0);
    struct t_resp r;
    assert_int_equal(t_read_resp(fd, &r), 0);
    close(fd);
    t_record("POST", "/v1/neighbors", &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(str_at(r.json, "error.code"), "payload_too_large");
    t_resp_free(&r);
    assert_true(healthy(main_d.port));
}

static void
test_stalled_body(void **state)
{
    (void)state;
    /* half a body, then nothing: the connection timeout (2 s here) cuts
     * the client off without blocking anyone else */
    int fd = t_dial(main_d.port);
    const char *req = "POST /v1/analogy HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: 200\r\n\r\n{\"a\":\"man\",";
    assert_int_equal(t_send_all(fd, req, strlen(req)), 0);
    double t0 = t_now();
    assert_true(healthy(main_d.port));
    struct pollfd p = {fd, POLLIN, 0};
    char buf[256];
    ssize_t k = 1;
    while (t_now() - t0 < 8 && k > 0) {
        if (poll(&p, 1, 200) > 0)
            k = recv(fd, buf, sizeof buf, 0);
    }
    double waited = t_now() - t0;
    close(fd);
    assert_true(k <= 0);      /* closed, nothing answered */
    assert_true(waited < 8);  /* by the timeout, not by us */
    assert_true(waited > 1);
    assert_true(healthy(main_d.port));
}

static void
test_too_many_queries(void **state)
{
    (void)state;
    /* --max-batch 64: 65 queries are refused */
    char body[4096] = "{\"queries\":[";
    for (int i = 0; i < 65; i++)
        strcat(body, i ? ",{\"word\":\"cat\"}" : "{\"word\":\"cat\"}");
    strcat(body, "]}");
    struct t_resp r;
    post("/v1/neighbors", body, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(str_at(r.json, "error.code"), "bad_request");
    t_resp_free(&r);
}

/* ---------------------------------------------------------- semantics */

static void
test_king_queen(void **state)
{
    (void)state;
    struct t_resp r;
    get("/v1/analogy?q=king-man+woman", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_at(r.json, "result.answer"), "queen");
    assert_true(json_integer_value(at(r.json, "version")) >= 1);
    /* the query words are excluded from the answers */
    assert_false(has_word(r.json, "result.results[0].answers", "king"));
    t_resp_free(&r);
    post("/v1/analogy", "{\"positive\":[\"king\",\"woman\"],"
                        "\"negative\":[\"man\"],\"method\":\"3cosmul\"}", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(str_at(r.json, "result.answer"), "queen");
    t_resp_free(&r);
}

static void
test_cat_dog(void **state)
{
    (void)state;
    struct t_resp r;
    get("/v1/neighbors?word=cat&k=10", &r);
    assert_int_equal(r.status, 200);
    assert_true(has_word(r.json, "result.neighbors", "dog"));
    assert_false(has_word(r.json, "result.neighbors", "cat"));
    double s0 = json_number_value(at(r.json, "result.neighbors.0.similarity"));
    double s9 = json_number_value(at(r.json, "result.neighbors.9.similarity"));
    assert_true(s0 >= s9 && s0 <= 1.0001 && s9 > 0);
    t_resp_free(&r);
}

/* A client asking for the neighbours of these words in turn, each time
 * with another k so that the result cache never answers and every
 * request is scored (and batched with the other clients'). */
static const char *const loop_words[] = {"cat", "king", "paris", "music",
                                         "water"};
static char loop_first[5][64]; /* each word's nearest, asked alone */

struct loop {
    int id;          /* makes this client's k values its own */
    int min;         /* requests to make at least, whatever stop says */
    atomic_int stop; /* written by the test thread, read by the client */
    int ok, failed;
    char first_fail[256];
};

/* Asks each loop word alone, before any client runs. */
static void
loop_reference(void)
{
    for (int w = 0; w < 5; w++) {
        char target[64];
        struct t_resp r;
        snprintf(target, sizeof target, "/v1/neighbors?word=%s&k=1",
                 loop_words[w]);
        get(target, &r);
        assert_int_equal(r.status, 200);
        snprintf(loop_first[w], sizeof loop_first[w], "%s",
                 str_at(r.json, "result.neighbors.0.word"));
        t_resp_free(&r);
    }
}

static void *
client_loop(void *arg)
{
    struct loop *l = arg;
    for (int i = 0; !atomic_load(&l->stop) || i < l->min; i++) {
        int w = i % 5, k = 2 + l->id * 40 + i % 40;
        char target[64];
        snprintf(target, sizeof target, "/v1/neighbors?word=%s&k=%d",
                 loop_words[w], k);
        struct t_resp r;
        int rc = t_get(main_d.port, target, &r);
        const char *first = str_at(r.json, "result.neighbors.0.word");
        if (rc == 0 && r.status == 200 &&
            json_array_size(at(r.json, "result.neighbors")) == (size_t)k &&
            !strcmp(first, loop_first[w])) {
            l->ok++;
        } else {
            if (!l->failed)
                snprintf(l->first_fail, sizeof l->first_fail,
                         "%s: %d, nearest %s, %s alone", target,
                         rc ? -1 : r.status, first, loop_first[w]);
            l->failed++;
        }
        t_resp_free(&r);
    }
    return NULL;
}

static json_int_t
version(void)
{
    struct t_resp r;
    get("/v1/model", &r);
    json_int_t v = json_integer_value(at(r.json, "result.version"));
    t_resp_free(&r);
    return v;
}

static void
test_reload_under_load(void **state)
{
    (void)state;
    /* the clients run from before the first SIGHUP until the second
     * reload is served, so requests overlap both swaps whatever the load;
     * each makes at least 10, and every one must succeed */
    struct loop l[2] = {{.id = 0, .min = 10}, {.id = 1, .min = 10}};
    pthread_t th[2];
    loop_reference();
    json_int_t v0 = version();
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, client_loop, &l[i]);
    usleep(200 * 1000);
    for (int n = 1; n <= 2; n++) {
        kill(main_d.pid, SIGHUP);
        double t0 = t_now();
        while (version() < v0 + n && t_now() - t0 < 20 * t_scale())
            usleep(20 * 1000);
        usleep(200 * 1000);
    }
    for (int i = 0; i < 2; i++) {
        atomic_store(&l[i].stop, 1);
        pthread_join(th[i], NULL);
    }
    print_message("during two reloads: %d answered, %d failed %s%s\n",
                  l[0].ok + l[1].ok, l[0].failed + l[1].failed,
                  l[0].first_fail, l[1].first_fail);
    assert_int_equal(l[0].failed + l[1].failed, 0);
    assert_true(l[0].ok >= l[0].min && l[1].ok >= l[1].min);
    assert_true(version() >= v0 + 2);
}

/* --index HNSW32: ready at once with the exact index answering, then the
 * built index swapped in as the next version while queries keep working */
static void
test_index_in_background(void **state)
{
    (void)state;
    struct t_daemon b = {0};
    const char *flags[] = {t_random_model("bg.semd", 8000, 32, 77),
                           "--threads", "2", "--index", "HNSW32", NULL};
    assert_int_equal(t_daemon_start(&b, "bg.log", flags), 0);
    int saw_loading = 0, ready = 0, answered = 0;
    json_int_t v0 = 0;
    for (double t0 = t_now(); !ready && t_now() - t0 < 60 * t_scale();) {
        struct t_resp r;
        assert_int_equal(t_get(b.port, "/v1/model", &r), 0);
        assert_int_equal(r.status, 200);
        const char *st = str_at(r.json, "result.index.state");
        const char *f = str_at(r.json, "result.index.factory");
        json_int_t v = json_integer_value(at(r.json, "result.version"));
        assert_string_equal(str_at(r.json, "result.index.requested"),
                            "HNSW32");
        if (!strcmp(st, "loading")) {
            /* the exact index answers meanwhile */
            assert_string_equal(f, "Flat");
            saw_loading = 1;
            v0 = v;
        } else {
            assert_string_equal(st, "ready");
            assert_string_equal(f, "HNSW32");
            assert_true(v > v0);
            ready = 1;
        }
        t_resp_free(&r);
        assert_int_equal(t_get(b.port, "/v1/neighbors?word=w17&k=5", &r),
                         0);
        assert_int_equal(r.status, 200);
        assert_int_equal(json_array_size(at(r.json, "result.neighbors")), 5);
        answered++;
        t_resp_free(&r);
    }
    assert_true(saw_loading);
    assert_true(ready);
    /* per-request search parameters reach the approximate index: with
     * rerank the scores are exact cosines, best first */
    struct t_resp r;
    assert_int_equal(t_get(b.port, "/v1/neighbors?word=w17&k=5&"
                           "ef_search=400&rerank=1", &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(json_is_true(at(r.json, "result.exact")));
    assert_int_equal(json_array_size(at(r.json, "result.neighbors")), 5);
    double s0 = json_real_value(at(r.json, "result.neighbors.0.similarity"));
    double s4 = json_real_value(at(r.json, "result.neighbors.4.similarity"));
    assert_true(s0 >= s4 && s0 > 0);
    t_resp_free(&r);
    assert_int_equal(t_get(b.port, "/v1/neighbors?word=w17&"
                           "ef_search=5000", &r), 0);
    assert_int_equal(r.status, 400);
    t_resp_free(&r);
    /* /v1/model says ready once the snapshot holds the built index; the
     * loader marks its own state just after */
    const char *want = "semd_index_ready{index=\"HNSW32\",state=\"ready\"} 1";
    int marked = 0;
    for (double t0 = t_now(); !marked && t_now() - t0 < 10 * t_scale();) {
        assert_int_equal(t_get(b.port, "/metrics", &r), 0);
        marked = strstr(r.body, want) != NULL;
        t_resp_free(&r);
        if (!marked)
            usleep(20 * 1000);
    }
    if (!marked)
        fail_msg("/metrics never said %s", want);
    print_message("answered %d queries while the index was built\n",
                  answered);
    assert_int_equal(t_daemon_stop(&b, SIGTERM), 0);
}

static unsigned long long
metric(int port, const char *name)
{
    struct t_resp r;
    if (t_get(port, "/metrics", &r) != 0)
        fail_msg("GET /metrics: no response");
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(r.body, pat);
    unsigned long long v = p ? strtoull(p + strlen(pat), NULL, 10) : ~0ull;
    t_resp_free(&r);
    if (v == ~0ull)
        fail_msg("no metric %s", name);
    return v;
}

/* The result cache: a repeated read (however spelled) is a hit with the
 * same result; --cache-size 0 turns it off; --cache-bytes bounds it. */
static void
test_result_cache(void **state)
{
    (void)state;
    unsigned long long h0 = metric(main_d.port, "semd_cache_hits_total");
    struct t_resp a, b, c;
    get("/v1/neighbors?word=paris&k=7&restrict=15000", &a);
    get("/v1/neighbors?word=paris&k=7&restrict=15000", &b);
    get("/v1/neighbors?restrict=015000&k=007&word=paris", &c);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    assert_int_equal(c.status, 200);
    assert_true(json_equal(at(a.json, "result"), at(b.json, "result")));
    assert_true(json_equal(at(a.json, "result"), at(c.json, "result")));
    assert_int_equal(json_integer_value(at(a.json, "version")),
                     json_integer_value(at(c.json, "version")));
    assert_non_null(at(c.json, "time_ms"));
    assert_int_equal(json_array_size(at(c.json, "result.neighbors")), 7);
    t_resp_free(&a);
    t_resp_free(&b);
    t_resp_free(&c);
    assert_true(metric(main_d.port, "semd_cache_hits_total") >= h0 + 2);
    /* another k is another answer */
    get("/v1/neighbors?word=paris&k=3&restrict=15000", &a);
    assert_int_equal(json_array_size(at(a.json, "result.neighbors")), 3);
    t_resp_free(&a);

    struct t_daemon d = {0};
    const char *flags[] = {t_fixture(), "--threads", "1", "--cache-size",
                           "0", NULL};
    assert_int_equal(t_daemon_start(&d, "nocache.log", flags), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t_get(d.port, "/v1/neighbors?word=paris", &a), 0);
        assert_int_equal(a.status, 200);
        t_resp_free(&a);
    }
    assert_int_equal(metric(d.port, "semd_cache_hits_total"), 0);
    assert_int_equal(metric(d.port, "semd_cache_capacity"), 0);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);

    /* --cache-bytes bounds the memory: a few answers fit, the oldest go */
    struct t_daemon s = {0};
    const char *small[] = {t_fixture(), "--threads", "1", "--cache-bytes",
                           "4096", NULL};
    assert_int_equal(t_daemon_start(&s, "smallcache.log", small), 0);
    assert_int_equal(metric(s.port, "semd_cache_capacity_bytes"), 4096);
    const char *words[] = {"paris", "london", "king", "queen", "france",
                           "man", "woman", "city", "river", "music"};
    char path[96];
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof path, "/v1/neighbors?word=%s", words[i]);
        assert_int_equal(t_get(s.port, path, &a), 0);
        assert_int_equal(a.status, 200);
        t_resp_free(&a);
        unsigned long long held = metric(s.port, "semd_cache_bytes");
        assert_true(held > 0 && held <= 4096);
    }
    unsigned long long n = metric(s.port, "semd_cache_entries");
    assert_true(n >= 2 && n < 10);
    unsigned long long h = metric(s.port, "semd_cache_hits_total");
    assert_int_equal(t_get(s.port, "/v1/neighbors?word=music", &a), 0);
    t_resp_free(&a);
    assert_int_equal(metric(s.port, "semd_cache_hits_total"), h + 1);
    assert_int_equal(t_get(s.port, "/v1/neighbors?word=paris", &a), 0);
    assert_int_equal(a.status, 200);
    t_resp_free(&a);
    assert_int_equal(metric(s.port, "semd_cache_hits_total"), h + 1);
    assert_int_equal(t_daemon_stop(&s, SIGTERM), 0);
}

static void
test_concurrent_batches(void **state)
{
    (void)state;
    /* many clients at once, each with its own k so that no answer comes
     * from the cache: batched scoring must give each its own answer. A
     * fixed number of requests, every one of which must succeed. */
    struct loop l[6];
    pthread_t th[6];
    memset(l, 0, sizeof l);
    loop_reference();
    for (int i = 0; i < 6; i++) {
        l[i].id = i;
        l[i].min = 15;
        atomic_store(&l[i].stop, 1);
        pthread_create(&th[i], NULL, client_loop, &l[i]);
    }
    int ok = 0, failed = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        ok += l[i].ok;
        failed += l[i].failed;
        if (l[i].failed)
            print_error("client %d: %s\n", i, l[i].first_fail);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(ok, 6 * 15);
    /* each word's neighbours are still its own */
    struct t_resp r;
    get("/v1/neighbors?word=paris&k=10", &r);
    assert_true(has_word(r.json, "result.neighbors", "france") ||
                has_word(r.json, "result.neighbors", "london"));
    t_resp_free(&r);
}

static void
test_metrics(void **state)
{
    (void)state;
    struct t_resp r;
    get("/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "Content-Type: text/plain"));
    assert_non_null(strstr(r.body, "semd_requests_total{method=\"GET\","
                                   "route=\"/v1/neighbors\",code=\"200\"}"));
    assert_non_null(strstr(r.body, "semd_request_duration_seconds_bucket"));
    assert_non_null(strstr(r.body, "semd_model_rows 20000"));
    assert_non_null(strstr(r.body, "semd_snapshot_version"));
    assert_non_null(strstr(r.body, "semd_requests_in_flight"));
    t_resp_free(&r);
}

/* ---------------------------------------------------------- auth */

static void
test_read_token(void **state)
{
    (void)state;
    struct t_daemon b = {0};
    const char *flags[] = {t_fixture(), "--threads", "1",
                           "--read-token-file",
                           t_token_file("read.token", READ_TOKEN, 0600),
                           NULL};
    assert_int_equal(t_daemon_start(&b, "read.log", flags), 0);
    struct t_resp r;
    const char *target = "/v1/neighbors?word=cat&k=3";
    assert_int_equal(t_get(b.port, target, &r), 0);
    assert_int_equal(r.status, 401);
    assert_string_equal(str_at(r.json, "error.code"), "unauthorized");
    t_resp_free(&r);
    assert_int_equal(t_request(b.port, "GET", target, NULL, NULL, 0,
                               AUTH("r-wrong"), &r), 0);
    assert_int_equal(r.status, 401);
    t_resp_free(&r);
    assert_int_equal(t_request(b.port, "GET", target, NULL, NULL, 0,
                               AUTH(READ_TOKEN), &r), 0);
    assert_int_equal(r.status, 200);
    t_resp_free(&r);
    /* probes stay open */
    assert_true(healthy(b.port));
    /* no write token configured: writes are forbidden, even with a token */
    assert_int_equal(t_request(b.port, "POST", "/v1/reload", NULL, NULL, 0,
                               AUTH(READ_TOKEN), &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(str_at(r.json, "error.code"), "forbidden");
    t_resp_free(&r);
    assert_int_equal(t_daemon_stop(&b, SIGINT), 0);
    /* tokens never reach the log */
    size_t n;
    char *log = t_read_file(b.log, &n);
    assert_null(strstr(log, READ_TOKEN));
    assert_non_null(strstr(log, "status=401"));
    free(log);
}

static void
test_token_file_world_readable(void **state)
{
    (void)state;
    struct t_daemon b = {0};
    const char *flags[] = {t_fixture(), "--token-file",
                           t_token_file("open.token", WRITE_TOKEN, 0644),
                           NULL};
    assert_int_equal(t_daemon_start(&b, "open.log", flags), 1);
    size_t n;
    char *log = t_read_file(b.log, &n);
    assert_non_null(strstr(log, "readable by other users"));
    free(log);
}

static void
test_flags_from_environment(void **state)
{
    (void)state;
    char *out = NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s serve --help", t_semd());
    assert_int_equal(t_run(cmd, &out), 0);
    const char *want[] = {"--listen", "--threads", "--index", "--max-body",
                          "--max-k", "--max-batch", "--max-connections",
                          "--timeout", "--token-file", "--read-token-file",
                          "SEMD_MAX_BODY", "127.0.0.1:8080"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(out, want[i]))
            fail_msg("--help does not mention %s", want[i]);
    free(out);
    /* a bad value from the environment is refused, naming the variable */
    snprintf(cmd, sizeof cmd, "SEMD_MAX_K=zero %s serve %s 2>&1", t_semd(),
             t_fixture());
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "SEMD_MAX_K"));
    free(out);
}

/* ------------------------------------------------------------ contract */

static void
test_contract(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = t_contract_check(&out);
    print_message("%s", out ? out : "no responses recorded\n");
    free(out);
    assert_int_equal(rc, 0);
}

static void
test_sigterm(void **state)
{
    (void)state;
    assert_true(healthy(main_d.port));
    assert_int_equal(t_daemon_stop(&main_d, SIGTERM), 0);
    size_t n;
    char *log = t_read_file(main_d.log, &n);
    assert_non_null(strstr(log, "msg=stopped"));
    assert_null(strstr(log, WRITE_TOKEN));
    free(log);
}

/* A stop that arrives while the main thread reloads (here: waiting for
 * the HNSW index still being built) must drain and exit 0: the kernel
 * hands such a signal to a thread that does not block it, and threads a
 * library started before main() have their own masks. */
static void
test_sigterm_during_reload(void **state)
{
    (void)state;
    struct t_daemon b = {0};
    const char *flags[] = {t_random_model("stop.semd", 20000, 64, 78),
                           "--index", "HNSW32", NULL};
    assert_int_equal(t_daemon_start(&b, "stop.log", flags), 0);
    kill(b.pid, SIGHUP);
    usleep(100 * 1000);
    assert_int_equal(t_daemon_stop(&b, SIGTERM), 0);
    size_t n;
    char *log = t_read_file(b.log, &n);
    assert_non_null(strstr(log, "msg=stopped"));
    free(log);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cat_dog),
        cmocka_unit_test(test_king_queen),
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_too_many_queries),
        cmocka_unit_test(test_body_20mb_declared),
        cmocka_unit_test(test_body_20mb_chunked),
        cmocka_unit_test(test_stalled_body),
        cmocka_unit_test(test_concurrent_batches),
        cmocka_unit_test(test_reload_under_load),
        cmocka_unit_test(test_index_in_background),
        cmocka_unit_test(test_sigterm_during_reload),
        cmocka_unit_test(test_result_cache),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_read_token),
        cmocka_unit_test(test_token_file_world_readable),
        cmocka_unit_test(test_flags_from_environment),
        cmocka_unit_test(test_contract),
        cmocka_unit_test(test_sigterm),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("http", tests, setup, teardown);
}
