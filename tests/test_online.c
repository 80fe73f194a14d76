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

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "t-online-0123456789"

struct daemon {
    pid_t pid;
    int port;
    char log[512];
};

struct resp {
    int status;
    char headers[4096];
    char *body;
    size_t len;
    json_t *json;
};

static void
resp_free(struct resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int
dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One request on a new connection. 0 with *r filled, -1 when no whole
 * response came back (the daemon died, for instance). */
static int
request(int port, const char *method, const char *target, const char *ctype,
        const char *body, const char *token, struct resp *r)
{
    memset(r, 0, sizeof *r);
    size_t bl = body ? strlen(body) : 0;
    size_t cap = 1024 + bl + strlen(target);
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n", method, target);
    if (ctype)
        n += snprintf(req + n, cap - (size_t)n, "Content-Type: %s\r\n",
                      ctype);
    if (token)
        n += snprintf(req + n, cap - (size_t)n,
                      "Authorization: Bearer %s\r\n", token);
    if (body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n",
                      bl);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body)
        memcpy(req + n, body, bl);
    size_t total = (size_t)n + bl;
    int fd = dial(port);
    if (fd < 0) {
        free(req);
        return -1;
    }
    for (size_t off = 0; off < total;) {
        ssize_t k = send(fd, req + off, total - off, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    free(req);
    size_t bcap = 8192, len = 0;
    char *buf = malloc(bcap);
    for (;;) {
        if (bcap - len < 4096)
            buf = realloc(buf, bcap *= 2);
        ssize_t k = recv(fd, buf + len, bcap - len - 1, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || strncmp(buf, "HTTP/1.1 ", 9)) {
        free(buf);
        return -1;
    }
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    long clen = cl && cl < end ? strtol(cl + 17, NULL, 10) : -1;
    size_t hl = (size_t)(end - buf);
    if (clen < 0 || len < hl + 4 + (size_t)clen) {
        free(buf);
        return -1;
    }
    r->status = atoi(buf + 9);
    snprintf(r->headers, sizeof r->headers, "%.*s", (int)hl, buf);
    r->len = (size_t)clen;
    r->body = malloc(r->len + 1);
    memcpy(r->body, end + 4, r->len);
    r->body[r->len] = 0;
    free(buf);
    r->json = json_loadb(r->body, r->len, 0, NULL);
    return 0;
}

static json_t *
at(json_t *v, const char *path)
{
    char key[128];
    const char *p = path;
    while (v && *p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *e;
            long i = strtol(p + 1, &e, 10);
            v = json_array_get(v, (size_t)i);
            p = e + 1;
            continue;
        }
        size_t n = strcspn(p, ".[");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        v = json_object_get(v, key);
        p += n;
    }
    return v;
}

static uint64_t
u64_at(json_t *v, const char *path)
{
    return (uint64_t)json_integer_value(at(v, path));
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
    const char *p = keep_path("token");
    t_write_file(p, TOKEN "\n", strlen(TOKEN) + 1);
    chmod(p, 0600);
    return p;
}

/* Starts semd serve on the fixture with extra flags and waits until it is
 * ready. */
static void
start(struct daemon *d, const char *name, const char *const *flags)
{
    int out[2];
    if (pipe(out) != 0)
        fail_msg("pipe: %s", strerror(errno));
    snprintf(d->log, sizeof d->log, "%s", t_path(name));
    const char *argv[48];
    int n = 0;
    argv[n++] = t_semd();
    argv[n++] = "serve";
    argv[n++] = t_fixture();
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--threads";
    argv[n++] = "2";
    for (int i = 0; flags && flags[i]; i++)
        argv[n++] = flags[i];
    argv[n] = NULL;
    d->pid = fork();
    if (d->pid == 0) {
        dup2(out[1], 1);
        int e = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (e >= 0)
            dup2(e, 2);
        close(out[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    FILE *f = fdopen(out[0], "r");
    char line[256];
    d->port = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "semd: listening on http://127.0.0.1:%d",
                   &d->port) == 1)
            break;
    fclose(f);
    if (!d->port)
        fail_msg("semd serve did not start; log in %s", d->log);
    for (double t0 = now_s(); now_s() - t0 < 30;) {
        struct resp r;
        if (request(d->port, "GET", "/v1/ready", NULL, NULL, NULL, &r) ==
            0) {
            int st = r.status;
            resp_free(&r);
            if (st == 200)
                return;
        }
        usleep(20 * 1000);
    }
    fail_msg("semd serve did not become ready; log in %s", d->log);
}

static int
stop(struct daemon *d, int sig)
{
    if (!d->pid)
        return -1;
    kill(d->pid, sig);
    int st = 0;
    waitpid(d->pid, &st, 0);
    d->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static json_t *
train_status(struct daemon *d)
{
    struct resp r;
    if (request(d->port, "GET", "/v1/train", NULL, NULL, NULL, &r) != 0)
        fail_msg("GET /v1/train: no response");
    assert_int_equal(r.status, 200);
    json_t *res = json_incref(at(r.json, "result"));
    resp_free(&r);
    return res;
}

/* Waits until everything posted so far is trained and published. */
static json_t *
wait_trained(struct daemon *d, double timeout)
{
    /* the sanitizer builds run several times slower (Makefile) */
    const char *scale = getenv("SEMD_TEST_TIME_SCALE");
    if (scale && atof(scale) > 1)
        timeout *= atof(scale);
    for (double t0 = now_s();;) {
        json_t *s = train_status(d);
        uint64_t last = u64_at(s, "journal.last_seq");
        if (u64_at(s, "journal.trained_seq") == last &&
            u64_at(s, "journal.published_seq") == last)
            return s;
        json_decref(s);
        if (now_s() - t0 > timeout)
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
        struct resp r;
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
        resp_free(&r);
        q->done++;
    }
    return NULL;
}

/* ---------------------------------------------------------------- tests */

static void
test_train_off(void **state)
{
    (void)state;
    struct daemon d;
    const char *flags[] = {"--token-file", token_file(), NULL};
    start(&d, "off.log", flags);
    struct resp r;
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", TOKEN, &r), 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(json_string_value(at(r.json, "error.code")),
                        "forbidden");
    assert_non_null(strstr(json_string_value(at(r.json, "error.message")),
                           "--train"));
    resp_free(&r);
    assert_int_equal(request(d.port, "GET", "/v1/train", NULL, NULL, NULL,
                             &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(at(r.json, "result.enabled")));
    resp_free(&r);
    assert_int_equal(stop(&d, SIGTERM), 0);
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
    struct daemon d;
    const char *flags[] = {"--train", "--data-dir", keep_path("new-word"),
                           "--token-file", token_file(),
                           "--publish-interval", "0.2", "--min-count", "5",
                           "--train-threads", "2", NULL};
    start(&d, "new-word.log", flags);
    struct resp r;
    /* the word is unknown before any text mentions it */
    assert_int_equal(request(d.port, "GET", "/v1/neighbors?word=zorblat",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    /* no token, wrong token */
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", NULL, &r), 0);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", "wrong-token-xyz", &r), 0);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    /* bad bodies */
    assert_int_equal(request(d.port, "POST", "/v1/train", "application/json",
                             "{\"text\": 3}", TOKEN, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "  \n ", TOKEN, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);

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
        resp_free(&r);
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
    json_array_foreach(at(r.json, "result.neighbors"), i, e) {
        const char *w = json_string_value(json_object_get(e, "word"));
        royal += !strcmp(w, "king") || !strcmp(w, "queen") ||
                 !strcmp(w, "prince") || !strcmp(w, "throne") ||
                 !strcmp(w, "kingdom") || !strcmp(w, "crowned");
    }
    if (royal < 2)
        fail_msg("zorblat's neighbours are not royal: %s", r.body);
    resp_free(&r);

    /* drift of king from the first version to the current one */
    assert_int_equal(request(d.port, "GET", "/v1/words/king/drift?from=1",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    double cos = json_real_value(at(r.json, "result.cosine"));
    assert_true(cos > 0.3 && cos < 0.99999);
    assert_int_equal(json_array_size(at(r.json, "result.neighbors_from")),
                     10);
    assert_int_equal(json_array_size(at(r.json, "result.entered")),
                     json_array_size(at(r.json, "result.left")));
    resp_free(&r);
    assert_int_equal(request(d.port, "GET",
                             "/v1/words/zorblat/drift?from=1", NULL, NULL,
                             NULL, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    assert_int_equal(request(d.port, "GET", "/v1/words/king/drift?from=999",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    assert_int_equal(request(d.port, "GET", "/v1/words/king/drift?from=x",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 400);
    resp_free(&r);

    /* the figures in /metrics */
    assert_int_equal(request(d.port, "GET", "/metrics", NULL, NULL, NULL,
                             &r), 0);
    assert_non_null(strstr(r.body, "semd_train_words_total "));
    assert_non_null(strstr(r.body, "semd_train_queued_records 0"));
    resp_free(&r);

    atomic_store(&q.stop, 1);
    pthread_join(th, NULL);
    if (q.errors)
        fail_msg("%d of %d queries failed during training, first: %s",
                 q.errors, q.done, q.first_error);
    assert_false(q.went_back);
    assert_true(q.done > 10);
    assert_true(q.last_version > q.first_version);
    assert_int_equal(stop(&d, SIGTERM), 0);

    /* a restart serves the persisted version, the new word included */
    start(&d, "new-word.log", flags);
    assert_int_equal(request(d.port, "GET", "/v1/neighbors?word=zorblat",
                             NULL, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(u64_at(r.json, "version") >= 2);
    resp_free(&r);
    st = train_status(&d);
    assert_int_equal(u64_at(st, "start.included_seq"), last_seq);
    assert_int_equal(u64_at(st, "start.replay_from"), 0);
    json_decref(st);
    assert_int_equal(stop(&d, SIGTERM), 0);
}

static void
test_backlog(void **state)
{
    (void)state;
    struct daemon d;
    const char *flags[] = {"--train", "--data-dir", keep_path("backlog"),
                           "--token-file", token_file(),
                           "--max-backlog-records", "1", "--max-body",
                           "4M", "--min-count", "1000000", NULL};
    start(&d, "backlog.log", flags);
    /* a post big enough to keep one trainer thread busy for a while */
    char *text = royal_text(40000);
    struct resp r;
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain", text,
                             TOKEN, &r), 0);
    free(text);
    assert_int_equal(r.status, 202);
    resp_free(&r);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", TOKEN, &r), 0);
    assert_int_equal(r.status, 429);
    assert_string_equal(json_string_value(at(r.json, "error.code")),
                        "overloaded");
    assert_non_null(strcasestr(r.headers, "\r\nRetry-After: "));
    resp_free(&r);
    /* once trained, posts are taken again; the refused one was never
     * journaled */
    json_t *st = wait_trained(&d, 30);
    assert_int_equal(u64_at(st, "journal.last_seq"), 1);
    json_decref(st);
    assert_int_equal(request(d.port, "POST", "/v1/train", "text/plain",
                             "the king", TOKEN, &r), 0);
    assert_int_equal(r.status, 202);
    assert_int_equal(u64_at(r.json, "result.seq"), 2);
    resp_free(&r);
    assert_int_equal(stop(&d, SIGTERM), 0);
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
        struct resp r;
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
        resp_free(&r);
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
verify_snapshots(const char *dir)
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
        struct daemon d;
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
            assert_int_equal(stop(&d, SIGTERM), 0);
        } else {
            assert_int_equal(stop(&d, SIGKILL), 128 + SIGKILL);
            atomic_store(&p.stop, 1);
            pthread_join(th, NULL);
        }
        if (p.max_acked > max_acked)
            max_acked = p.max_acked;
        acked_add(&p);
        verify_snapshots(dir);
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_train_off),
        cmocka_unit_test(test_new_word),
        cmocka_unit_test(test_backlog),
        cmocka_unit_test(test_crash),
    };
    /* tests/soak/crash.sh runs only the crash test, longer */
    if (getenv("SEMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SEMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
