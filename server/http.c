/*
 * http.c - the HTTP front end over libmicrohttpd, the only file that
 * includes microhttpd.h, and http_dispatch, the same request path without
 * a socket. It turns requests into struct api_req, calls the route's
 * handler and turns struct api_reply into a response.
 *
 * One engine, two front ends. The steps of a request are functions of a
 * request context (struct rctx) that never see libmicrohttpd:
 *  - begin: the limits on the target (--max-url, 414) and the header lines
 *    (--max-headers, --max-header-bytes, 431), the route (404, 405), auth
 *    (401, 403), the content type (415) and the declared length against
 *    the route's body limit (413);
 *  - body: append a chunk; past the route's limit, record 413, free what
 *    was stored and drop the rest as it arrives;
 *  - run: query arguments, JSON, snapshot, handler; a handler may defer
 *    (exact neighbour queries go to the batcher), and submit hands the
 *    job over;
 *  - respond: the status, headers and body of the reply;
 *  - finish: metrics (and, for a connection, the access-log line).
 * MHD's callbacks call them as the request arrives; http_dispatch calls
 * them in a row on a request given whole. So the two cannot drift.
 *
 * With libmicrohttpd (which calls on_request several times a request):
 *  - the URI callback, as soon as the request line is in, allocates the
 *    context with a copy of the raw target (path and query string: both
 *    front ends decode them with the same code);
 *  - first call: begin. Errors found here are answered at once (the
 *    connection then closes, which is what an unread oversized body
 *    needs). Otherwise the call returns without answering: answering on
 *    the first call makes MHD 0.9.75 close keep-alive connections;
 *  - middle calls: body;
 *  - last call: run, then answer, or suspend the connection until the
 *    batcher's wake resumes it, which brings one more call that answers;
 *  - completion callback: finish, and the only place that frees the
 *    context (body, parsed JSON, snapshot reference, reply).
 *
 * Request time: MHD's --timeout counts idle time only, so a client that
 * sends one byte a second would hold a connection for ever. Each
 * connection (MHD's socket context) records when its current phase began:
 * accept, or the end of the previous reply, until the request is in; the
 * queueing of the reply until it is sent. While the server works on a
 * request nothing is counted. A sweeper thread shuts down (shutdown(2),
 * which MHD sees as the client leaving) every connection whose phase is
 * older than --request-timeout. Connections are listed under a mutex; a
 * connection leaves the list in MHD's close notification, before MHD
 * closes its socket, so the sweeper never touches a reused descriptor.
 *
 * Threads: MHD's internal thread pool (--threads), each with its own
 * epoll set, runs the callbacks; the batcher's threads call wake; the
 * sweeper reads the connection list. A context is touched by one thread
 * at a time: the hand-over to and from the batcher goes through MHD's
 * suspend/resume (locked), or, in http_dispatch, a condition variable.
 */
#include "serve.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One TCP connection: MHD's socket context. */
struct conn {
    struct conn *prev, *next; /* the list of struct http, under its lock */
    MHD_socket fd;
    atomic_llong since; /* ms, monotonic: start of the phase being timed;
                           0: the server is working, nothing counted */
    int cut;            /* shut down by the sweeper (under the lock) */
    int over;           /* opened past --max-connections: 503 */
};

struct http {
    struct MHD_Daemon *d;
    struct server *srv;
    atomic_int active; /* contexts alive: requests not yet completed */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct conn *conns;
    unsigned open;     /* connections in conns (under the lock) */
    int stop;          /* the sweeper ends (under the lock) */
    int sweeping;      /* the sweeper thread was started */
    pthread_t sweeper;
    char *cert, *key;  /* PEM given to MHD, which keeps the pointers */
    char start_msg[512]; /* MHD's first message while starting */
    atomic_int starting; /* MHD_start_daemon runs in thread starter */
    pthread_t starter;
};

enum state {
    ST_NEW,      /* the target is in, the headers not yet */
    ST_OPEN,     /* route found, reading the body */
    ST_WAITING,  /* the batcher scores */
    ST_RESUMED,  /* the batcher filled the reply */
    ST_ANSWERED, /* a response is made */
};

enum { R_ANSWER, R_DEFER };

struct rctx {
    struct server *srv;
    struct http *h;              /* NULL under http_dispatch */
    struct MHD_Connection *conn; /* NULL under http_dispatch */
    enum state state;
    struct timespec t0;
    char id[32];
    char method[16];
    char path[160];      /* decoded, for the log (may be cut short) */
    char allow[32];
    char *target;        /* the raw target; NULL when over --max-url */
    size_t target_len;   /* its length as sent */
    char *dpath;         /* the decoded path (rq.param points into it) */
    char *qbuf;          /* the query string, decoded in place */
    size_t qlen;
    struct http_header *hdrs;
    size_t n_hdrs, hdr_cap, hdr_lines, hdr_bytes;
    int oom;             /* a header could not be kept */
    size_t limit;
    unsigned long long declared; /* Content-Length, or the body's */
    int refused;  /* a reply was decided before the body ended: discard */
    int text;     /* ROUTE_TEXT route sent text/plain: body not parsed */
    char *body;
    size_t len, cap;
    struct api_req rq;
    struct api_reply rp;
    struct batch_job job;
    size_t bytes_out;
    /* http_dispatch: the wait for a deferred reply */
    pthread_mutex_t wl;
    pthread_cond_t wc;
    int woken;
};

static atomic_ullong next_id;
static unsigned boot_tag;

static double
since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static long long
now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    /* never 0, which means "not counted" */
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000 + 1;
}

const struct api_arg *
api_arg(const struct api_req *rq, const char *key)
{
    for (size_t i = 0; i < rq->n_args; i++)
        if (!strcmp(rq->args[i].key, key))
            return &rq->args[i];
    return NULL;
}

/* ------------------------------------------------------------- engine */

static struct rctx *
ctx_new(struct server *srv, struct http *h)
{
    struct rctx *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->srv = srv;
    x->h = h;
    clock_gettime(CLOCK_MONOTONIC, &x->t0);
    snprintf(x->id, sizeof x->id, "%08x-%06llx", boot_tag,
             (unsigned long long)atomic_fetch_add(&next_id, 1));
    x->rq.srv = srv;
    x->rq.id = x->id;
    x->state = ST_NEW;
    metrics_inflight(1);
    return x;
}

/* Keeps a copy of the target (path, '?', query) when it is within
 * --max-url; begin answers 414 otherwise. */
static int
ctx_target(struct rctx *x, const char *path, size_t plen, const char *query,
           size_t qlen)
{
    x->target_len = plen + (query ? 1 + qlen : 0);
    if (x->target_len > x->srv->cfg->max_url)
        return 0;
    x->target = malloc(x->target_len + 1);
    if (!x->target)
        return -1;
    memcpy(x->target, path, plen);
    if (query) {
        x->target[plen] = '?';
        memcpy(x->target + plen + 1, query, qlen);
    }
    x->target[x->target_len] = 0;
    return 0;
}

/* Counts a header line and keeps it when within --max-headers. */
static int
ctx_header(struct rctx *x, const char *name, size_t nl, const char *value,
           size_t vl)
{
    x->hdr_lines++;
    x->hdr_bytes += nl + vl + 4; /* ": " and CRLF */
    if (x->hdr_lines > x->srv->cfg->max_headers)
        return 0;
    if (x->n_hdrs == x->hdr_cap) {
        size_t cap = x->hdr_cap ? x->hdr_cap * 2 : 16;
        struct http_header *n = realloc(x->hdrs, cap * sizeof *n);
        if (!n) {
            x->oom = 1;
            return -1;
        }
        x->hdrs = n;
        x->hdr_cap = cap;
    }
    x->hdrs[x->n_hdrs++] = (struct http_header){name, value ? value : ""};
    return 0;
}

static const char *
header(const struct rctx *x, const char *name)
{
    for (size_t i = 0; i < x->n_hdrs; i++)
        if (!strcasecmp(x->hdrs[i].name, name))
            return x->hdrs[i].value;
    return NULL;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n bytes of s in place, as libmicrohttpd does: %XX (a bad escape
 * stays as it is) and, in query arguments, '+' as a space. Returns the
 * new length; a NUL follows it. The result may hold NULs. */
static size_t
unescape(char *s, size_t n, int plus)
{
    char *w = s;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
            (lo = hexval(s[i + 2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus && s[i] == '+') {
            *w++ = ' ';
        } else {
            *w++ = s[i];
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

/* Constant-time comparison of a presented token with the configured one:
 * the time taken depends on neither the position of the first difference
 * nor (beyond the presented length) the secret. */
static int
token_equal(const char *given, size_t glen, const char *secret)
{
    size_t slen = strlen(secret);
    unsigned char diff = (unsigned char)(glen != slen);
    for (size_t i = 0; i < glen; i++)
        diff |= (unsigned char)(given[i] ^ secret[i % (slen ? slen : 1)]);
    return diff == 0;
}

static int
bearer(const struct rctx *x, const char **tok, size_t *len)
{
    const char *a = header(x, "Authorization");
    if (!a || strncasecmp(a, "Bearer ", 7))
        return 0;
    a += 7;
    while (*a == ' ')
        a++;
    size_t n = strlen(a);
    while (n && a[n - 1] == ' ')
        n--;
    *tok = a;
    *len = n;
    return n > 0;
}

/* 0 when allowed, else the error to answer with. */
static int
check_auth(struct rctx *x, const struct route *r)
{
    const struct config *cfg = x->srv->cfg;
    const char *tok = NULL;
    size_t len = 0;
    int have = bearer(x, &tok, &len);
    if (r->flags & ROUTE_WRITE) {
        if (cfg->follow) {
            reply_error(&x->rp, ERR_FORBIDDEN, NULL,
                        "this server is a read-only replica following "
                        "'%s': send writes to the training server",
                        cfg->follow);
            return -1;
        }
        if (!cfg->write_token) {
            reply_error(&x->rp, ERR_FORBIDDEN, NULL,
                        "writes are disabled: the server was started "
                        "without --token-file");
            return -1;
        }
        if (!have || !token_equal(tok, len, cfg->write_token)) {
            reply_error(&x->rp, ERR_UNAUTHORIZED, NULL,
                        have ? "wrong bearer token"
                             : "this route needs 'Authorization: Bearer "
                               "<token>'");
            return -1;
        }
        return 0;
    }
    if (!cfg->read_token || (r->flags & ROUTE_PUBLIC))
        return 0;
    if (have && (token_equal(tok, len, cfg->read_token) ||
                 (cfg->write_token && token_equal(tok, len,
                                                  cfg->write_token))))
        return 0;
    reply_error(&x->rp, ERR_UNAUTHORIZED, NULL,
                have ? "wrong bearer token"
                     : "reads need 'Authorization: Bearer <token>'");
    return -1;
}

static int
content_type_is(const struct rctx *x, const char *want)
{
    const char *t = header(x, "Content-Type");
    size_t n = strlen(want);
    if (!t || strncasecmp(t, want, n))
        return 0;
    return t[n] == 0 || t[n] == ';' || t[n] == ' ';
}

/* The first step, once the target and the headers are in: 1 when the
 * reply is decided (x->rp), 0 to go on reading the body. */
static int
begin(struct rctx *x, const char *method)
{
    const struct config *cfg = x->srv->cfg;
    snprintf(x->method, sizeof x->method, "%s", method);
    x->state = ST_OPEN;
    if (!x->target) {
        snprintf(x->path, sizeof x->path, "(%zu bytes)", x->target_len);
        reply_error(&x->rp, ERR_URI_TOO_LONG, NULL,
                    "request target of %zu bytes is over the limit of %zu "
                    "(--max-url)", x->target_len, cfg->max_url);
        return 1;
    }
    if (x->hdr_lines > cfg->max_headers || x->hdr_bytes >
                                               cfg->max_header_bytes) {
        reply_error(&x->rp, ERR_HEADERS_TOO_LARGE, NULL,
                    "%zu header lines of %zu bytes: over the limit of %u "
                    "lines (--max-headers) or %zu bytes "
                    "(--max-header-bytes)", x->hdr_lines, x->hdr_bytes,
                    cfg->max_headers, cfg->max_header_bytes);
        return 1;
    }
    char *q = strchr(x->target, '?');
    size_t plen = q ? (size_t)(q - x->target) : x->target_len;
    x->dpath = malloc(plen + 1);
    x->qlen = q ? x->target_len - plen - 1 : 0;
    if (q && !(x->qbuf = malloc(x->qlen + 1)))
        goto oom;
    if (!x->dpath)
        goto oom;
    memcpy(x->dpath, x->target, plen);
    unescape(x->dpath, plen, 0); /* an encoded NUL ends the path */
    if (q)
        memcpy(x->qbuf, q + 1, x->qlen + 1);
    snprintf(x->path, sizeof x->path, "%s", x->dpath);

    const struct route *r = NULL;
    const char *param = NULL;
    int rc = route_find(method, x->dpath, &r, &param, x->allow,
                        sizeof x->allow);
    if (rc == 404) {
        reply_error(&x->rp, ERR_NOT_FOUND, NULL, "no route '%s'", x->path);
        return 1;
    }
    if (rc == 405) {
        reply_error(&x->rp, ERR_METHOD, NULL,
                    "method %s not allowed on '%s' (allowed: %s)",
                    x->method, x->path, x->allow);
        return 1;
    }
    x->rq.route = r;
    x->rq.param = param;
    if (check_auth(x, r) != 0)
        return 1;
    x->limit = r->body_limit == ROUTE_LIMIT_DEFAULT ? cfg->max_body
                                                    : r->body_limit;
    const char *te = header(x, "Transfer-Encoding");
    if ((r->flags & ROUTE_TEXT) && content_type_is(x, "text/plain"))
        x->text = 1;
    else if ((r->flags & ROUTE_BODY) && (x->declared > 0 || te) &&
             !content_type_is(x, "application/json")) {
        const char *t = header(x, "Content-Type");
        reply_error(&x->rp, ERR_MEDIA_TYPE, NULL,
                    "content type '%s' is not application/json%s",
                    t ? t : "(none)",
                    (r->flags & ROUTE_TEXT) ? " or text/plain" : "");
        return 1;
    }
    if (x->declared > x->limit) {
        reply_error(&x->rp, ERR_TOO_LARGE, NULL,
                    "body of %llu bytes is over the limit of %zu for %s %s",
                    x->declared, x->limit, x->method, r->name);
        return 1;
    }
    return 0;
oom:
    reply_error(&x->rp, ERR_INTERNAL, NULL,
                "out of memory for a target of %zu bytes", x->target_len);
    return 1;
}

/* A chunk of the body. Past the route's limit nothing more is stored: the
 * 413 is recorded and the rest dropped as it arrives. */
static void
body(struct rctx *x, const char *data, size_t n)
{
    if (x->refused)
        return;
    if (n > x->limit - x->len) {
        reply_error(&x->rp, ERR_TOO_LARGE, NULL,
                    "body over the limit of %zu bytes for %s %s", x->limit,
                    x->method, x->rq.route->name);
        x->refused = 1;
        free(x->body);
        x->body = NULL;
        x->len = x->cap = 0;
        return;
    }
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4096;
        while (cap < x->len + n)
            cap *= 2;
        if (cap > x->limit)
            cap = x->limit;
        char *b = realloc(x->body, cap);
        if (!b) {
            reply_error(&x->rp, ERR_INTERNAL, NULL,
                        "out of memory for a body of %zu bytes", cap);
            x->refused = 1;
            return;
        }
        x->body = b;
        x->cap = cap;
    }
    memcpy(x->body + x->len, data, n);
    x->len += n;
}

/* Splits the query string into arguments, decoding keys and values. */
static int
parse_args(struct rctx *x)
{
    if (!x->qbuf)
        return 0;
    char *p = x->qbuf, *end = x->qbuf + x->qlen;
    while (p < end) {
        char *amp = memchr(p, '&', (size_t)(end - p));
        char *seg_end = amp ? amp : end;
        *seg_end = 0;
        if (seg_end > p) {
            if (x->rq.n_args == API_MAX_ARGS)
                return -1;
            char *eq = memchr(p, '=', (size_t)(seg_end - p));
            struct api_arg *a = &x->rq.args[x->rq.n_args++];
            if (eq)
                *eq = 0;
            unescape(p, strlen(p), 1);
            a->key = p;
            a->val = eq ? eq + 1 : "";
            a->len = eq ? unescape(eq + 1, (size_t)(seg_end - eq - 1), 1)
                        : 0;
        }
        p = seg_end + 1;
    }
    return 0;
}

/* Everything is in: run the handler. R_DEFER when it queued a batch job
 * (submit hands it over), else the reply is in x->rp. */
static int
run(struct rctx *x)
{
    struct server *srv = x->srv;
    const struct route *r = x->rq.route;
    if (x->refused)
        return R_ANSWER;
    if (parse_args(x) != 0) {
        reply_error(&x->rp, ERR_BAD_REQUEST, NULL,
                    "more than %d query parameters", API_MAX_ARGS);
        return R_ANSWER;
    }
    if (!(r->flags & ROUTE_NOSNAP)) {
        x->rq.snap = semd_holder_acquire(srv->holder);
        if (!x->rq.snap) {
            reply_error(&x->rp, ERR_NOT_READY, NULL,
                        "the model is still loading");
            return R_ANSWER;
        }
    }
    if ((r->flags & ROUTE_TEXT) && x->text) {
        /* a text body keeps its bytes; the buffer has room for a NUL */
        if (!x->body) {
            if ((x->body = calloc(1, 1)))
                x->cap = 1; /* an empty body: was a 500 (fuzz_api) */
        } else if (x->len == x->cap) {
            char *b = realloc(x->body, x->cap + 1);
            if (b)
                x->body = b, x->cap++;
        }
        if (!x->body || x->len == x->cap) {
            reply_error(&x->rp, ERR_INTERNAL, NULL, "out of memory");
            return R_ANSWER;
        }
        x->body[x->len] = 0;
        x->rq.body = x->body;
        x->rq.body_len = x->len;
    } else if (r->flags & ROUTE_BODY) {
        json_error_t je;
        if (!x->len) {
            reply_error(&x->rp, ERR_INVALID_JSON, NULL,
                        "empty body: expected a JSON object");
            return R_ANSWER;
        }
        x->rq.json = json_loadb(x->body, x->len, JSON_REJECT_DUPLICATES, &je);
        if (!x->rq.json) {
            reply_error(&x->rp, ERR_INVALID_JSON, NULL,
                        "invalid JSON at line %d column %d: %s", je.line,
                        je.column, je.text);
            return R_ANSWER;
        }
        if (!json_is_object(x->rq.json)) {
            reply_error(&x->rp, ERR_BAD_REQUEST, NULL,
                        "the body must be a JSON object");
            return R_ANSWER;
        }
    }
    x->rq.if_none_match = header(x, "If-None-Match");
    x->rq.accept_encoding = header(x, "Accept-Encoding");
    x->rq.job = &x->job;
    r->fn(&x->rq, &x->rp);
    return x->rp.deferred ? R_DEFER : R_ANSWER;
}

/* Hands a deferred job to the batcher; job.wake must be set. When that
 * fails the reply is a 503 and wake runs at once. */
static void
submit(struct rctx *x)
{
    if (!x->srv->batcher || batcher_submit(x->srv->batcher, &x->job) != 0) {
        reply_error(&x->rp, ERR_SHUTTING_DOWN, NULL,
                    "the server is shutting down");
        x->job.wake(x->job.wake_arg);
    }
}

static void
add_header(struct http_response *out, size_t *n, const char *name,
           const char *value)
{
    if (*n + 2 < sizeof out->headers / sizeof out->headers[0]) {
        out->headers[(*n)++] = name;
        out->headers[(*n)++] = value;
        out->headers[*n] = NULL;
    }
}

/* The reply as status, headers and body. */
static void
respond(struct rctx *x, struct http_response *out)
{
    struct server *srv = x->srv;
    struct api_reply *rp = &x->rp;
    memset(out, 0, sizeof *out);
    if (rp->status == 500 && rp->error) {
        json_t *m = json_object_get(rp->error, "message");
        char path[200] = "";
        log_quote(path, sizeof path, x->path);
        log_error("msg=\"request failed\" id=%s path=%s status=%d "
                  "detail=\"%s\"", x->id, path, rp->status,
                  json_string_value(m) ? json_string_value(m) : "");
    }
    uint64_t version = x->rq.snap ? semd_snapshot_version(x->rq.snap)
                                  : semd_holder_version(srv->holder);
    size_t len = 0;
    const char *ctype = "application/json";
    char *b = reply_body(rp, x->id, since(&x->t0) * 1000.0, version, &len,
                         &ctype);
    out->status = rp->status ? rp->status : 500;
    if (b) {
        out->body = b;
        out->len = len;
    } else {
        static const char oom[] = "{\"error\":{\"code\":\"internal\","
                                  "\"message\":\"out of memory\"}}";
        out->status = 500;
        out->body = (char *)oom;
        out->len = sizeof oom - 1;
        out->body_static = 1;
        ctype = "application/json";
    }
    out->content_type = ctype;
    memcpy(out->id, x->id, sizeof out->id);
    memcpy(out->allow, x->allow, sizeof out->allow);
    size_t n = 0;
    add_header(out, &n, "X-Request-Id", out->id);
    size_t max = sizeof rp->headers / sizeof rp->headers[0];
    for (size_t i = 0; i + 1 < max && rp->headers[i]; i += 2)
        add_header(out, &n, rp->headers[i], rp->headers[i + 1]);
    if (out->status == 405 && out->allow[0])
        add_header(out, &n, "Allow", out->allow);
    if (out->status == 401)
        add_header(out, &n, "WWW-Authenticate", "Bearer realm=\"semd\"");
    /* while draining, keep-alive connections end after their reply */
    if (atomic_load(&srv->draining))
        add_header(out, &n, "Connection", "close");
    x->state = ST_ANSWERED;
    x->rp.status = out->status;
    x->bytes_out = out->len;
}

/* The request is over: metrics, and for a connection the access-log
 * line (why: NULL, or how it ended early). */
static void
finish(struct rctx *x, const char *why, int log)
{
    double secs = since(&x->t0);
    int status = x->state == ST_ANSWERED ? x->rp.status : 0;
    metrics_request(x->rq.route, status, secs);
    metrics_inflight(-1);
    if (!log)
        return;
    char path[200] = "";
    log_quote(path, sizeof path, x->path[0] ? x->path : "-");
    /* the path only: query strings may carry secrets */
    log_info("msg=request id=%s method=%s path=%s status=%d bytes=%zu "
             "ms=%.3f%s%s",
             x->id, x->method[0] ? x->method : "-", path, status,
             x->bytes_out, secs * 1000.0, why ? " reason=" : "",
             why ? why : "");
}

static void
ctx_free(struct rctx *x)
{
    json_decref(x->rq.json);
    semd_snapshot_release(x->rq.snap);
    reply_release(&x->rp);
    if (x->rq.scratch_free)
        x->rq.scratch_free(x->rq.scratch);
    else
        free(x->rq.scratch);
    free(x->body);
    free(x->target);
    free(x->dpath);
    free(x->qbuf);
    free(x->hdrs);
    free(x);
}

/* ------------------------------------------------------ http_dispatch */

static void
dispatch_wake(void *arg)
{
    struct rctx *x = arg;
    pthread_mutex_lock(&x->wl);
    x->woken = 1;
    pthread_cond_signal(&x->wc);
    pthread_mutex_unlock(&x->wl);
}

void
http_response_release(struct http_response *r)
{
    if (!r->body_static)
        free(r->body);
    memset(r, 0, sizeof *r);
}

int
http_dispatch(struct server *srv, const struct http_request *req,
              struct http_response *out)
{
    struct rctx *x = ctx_new(srv, NULL);
    if (!x) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\","
                                  "\"message\":\"out of memory\"}}";
        memset(out, 0, sizeof *out);
        out->status = 500;
        out->content_type = "application/json";
        out->body = (char *)oom;
        out->len = sizeof oom - 1;
        out->body_static = 1;
        return SEMD_ENOMEM;
    }
    int stop = 0;
    if (ctx_target(x, req->path, strlen(req->path), req->query,
                   req->query ? strlen(req->query) : 0) != 0)
        stop = 1;
    const char *cl = NULL;
    for (size_t i = 0; i < req->n_headers && !stop; i++) {
        const struct http_header *hd = &req->headers[i];
        if (!strcasecmp(hd->name, "Content-Length") && !cl)
            cl = hd->value;
        if (ctx_header(x, hd->name, strlen(hd->name), hd->value,
                       hd->value ? strlen(hd->value) : 0) < 0)
            stop = 1;
    }
    if (stop) {
        x->state = ST_OPEN;
        reply_error(&x->rp, ERR_INTERNAL, NULL, "out of memory");
    } else {
        x->declared = cl ? strtoull(cl, NULL, 10) : req->body_len;
        if (!begin(x, req->method)) {
            if (req->body_len)
                body(x, req->body, req->body_len);
            if (run(x) == R_DEFER) {
                pthread_mutex_init(&x->wl, NULL);
                pthread_cond_init(&x->wc, NULL);
                x->job.wake = dispatch_wake;
                x->job.wake_arg = x;
                x->state = ST_WAITING;
                submit(x);
                pthread_mutex_lock(&x->wl);
                while (!x->woken)
                    pthread_cond_wait(&x->wc, &x->wl);
                pthread_mutex_unlock(&x->wl);
                pthread_cond_destroy(&x->wc);
                pthread_mutex_destroy(&x->wl);
            }
        }
    }
    respond(x, out);
    finish(x, NULL, 0);
    ctx_free(x);
    return SEMD_OK;
}

/* ------------------------------------------------------ libmicrohttpd */

static struct conn *
conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Starts (ms > 0) or stops (0) the clock of --request-timeout. */
static void
conn_clock(struct MHD_Connection *c, long long ms)
{
    struct conn *k = conn_of(c);
    if (k)
        atomic_store(&k->since, ms);
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    struct http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn *k = calloc(1, sizeof *k);
        if (!k)
            return; /* not timed; the idle timeout still applies */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        atomic_init(&k->since, now_ms());
        pthread_mutex_lock(&h->lock);
        k->next = h->conns;
        if (h->conns)
            h->conns->prev = k;
        h->conns = k;
        k->over = ++h->open > h->srv->cfg->max_connections;
        pthread_mutex_unlock(&h->lock);
        *socket_context = k;
        return;
    }
    struct conn *k = *socket_context;
    if (!k)
        return;
    *socket_context = NULL;
    pthread_mutex_lock(&h->lock);
    if (k->prev)
        k->prev->next = k->next;
    else
        h->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    h->open--;
    int cut = k->cut;
    pthread_mutex_unlock(&h->lock);
    if (cut && k->over)
        log_info("msg=\"connection closed: over --max-connections and "
                 "no request\"");
    else if (cut)
        log_info("msg=\"connection closed: a request took longer than "
                 "--request-timeout\" seconds=%u",
                 h->srv->cfg->request_timeout);
    free(k);
}

static void *
sweeper(void *arg)
{
    struct http *h = arg;
    long long limit = (long long)h->srv->cfg->request_timeout * 1000;
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 250 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000L)
            t.tv_sec++, t.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&h->cond, &h->lock, &t);
        long long now = now_ms();
        for (struct conn *k = h->conns; k; k = k->next) {
            long long s = atomic_load(&k->since);
            /* a connection over the cap gets a second for its request,
             * which is answered 503 */
            if (s && !k->cut && now - s > (k->over ? 1000 : limit) &&
                k->fd != MHD_INVALID_SOCKET) {
                /* MHD sees the client leave and closes the connection;
                 * the descriptor stays MHD's until its close
                 * notification, which waits for this lock */
                shutdown(k->fd, SHUT_RDWR);
                k->cut = 1;
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* The request line is in: the context, with a copy of the raw target
 * (MHD decodes its own copy in place after this call). */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct http *h = cls;
    struct rctx *x = ctx_new(h->srv, h);
    if (!x)
        return NULL;
    atomic_fetch_add(&h->active, 1);
    x->conn = c;
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    if (ctx_target(x, uri, plen, q ? q + 1 : NULL, q ? strlen(q + 1) : 0))
        x->target_len = (size_t)-1; /* out of memory: answered in begin */
    return x;
}

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
               size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    return ctx_header(cls, key, key_size, value, value ? value_size : 0) < 0
               ? MHD_NO : MHD_YES;
}

static enum MHD_Result
answer(struct rctx *x)
{
    struct http_response out;
    respond(x, &out);
    struct MHD_Response *resp;
    if (out.body_static)
        resp = MHD_create_response_from_buffer(out.len, out.body,
                                               MHD_RESPMEM_PERSISTENT);
    else {
        resp = MHD_create_response_from_buffer_with_free_callback(
            out.len, out.body, free);
        if (!resp)
            free(out.body);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            out.content_type);
    for (size_t i = 0; out.headers[i]; i += 2)
        MHD_add_response_header(resp, out.headers[i], out.headers[i + 1]);
    enum MHD_Result ret = MHD_queue_response(x->conn,
                                             (unsigned)out.status, resp);
    MHD_destroy_response(resp);
    /* a client that reads the reply slowly is timed from now */
    conn_clock(x->conn, now_ms());
    return ret;
}

static void
wake(void *arg)
{
    struct rctx *x = arg;
    x->state = ST_RESUMED;
    MHD_resume_connection(x->conn);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **req_cls)
{
    (void)version;
    (void)url; /* decoded by MHD: the engine decodes its own raw copy */
    struct http *h = cls;
    struct rctx *x = *req_cls;
    if (!x)
        return MHD_NO; /* on_uri ran out of memory */
    if (x->state == ST_NEW) {
        /* the thread policy of cmd_serve.c, once per pool thread: an
         * OpenMP team inside each search would spin on the other cores */
        static _Thread_local int policy_applied;
        if (!policy_applied) {
            if (h->srv->omp_threads)
                semd_set_threads(0, h->srv->omp_threads);
            policy_applied = 1;
        }
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_header,
                                    x);
        if (x->oom || x->target_len == (size_t)-1) {
            x->state = ST_OPEN;
            reply_error(&x->rp, ERR_INTERNAL, NULL, "out of memory");
            return answer(x);
        }
        const char *cl = header(x, "Content-Length");
        x->declared = cl ? strtoull(cl, NULL, 10) : 0;
        struct conn *k = conn_of(conn);
        if (k && k->over) {
            /* MHD admits a few connections past ours, so that the
             * newest hear why instead of waiting in the listen queue */
            x->state = ST_OPEN;
            snprintf(x->method, sizeof x->method, "%s", method);
            reply_error(&x->rp, ERR_BUSY, NULL,
                        "over %u connections (--max-connections): try "
                        "again later", h->srv->cfg->max_connections);
            x->rp.headers[0] = "Retry-After";
            x->rp.headers[1] = "1";
            x->rp.headers[2] = "Connection";
            x->rp.headers[3] = "close";
            return answer(x);
        }
        if (begin(x, method))
            return answer(x);
        /* answer on a later call: keeps the connection alive */
        return MHD_YES;
    }
    if (x->state == ST_ANSWERED) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        body(x, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (x->state == ST_RESUMED)
        return answer(x);
    if (x->state == ST_WAITING)
        return MHD_YES;
    /* the request is in: the server's time is not the client's */
    conn_clock(conn, 0);
    if (run(x) == R_ANSWER)
        return answer(x);
    x->job.wake = wake;
    x->job.wake_arg = x;
    x->state = ST_WAITING;
    MHD_suspend_connection(conn);
    submit(x);
    return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct http *h = cls;
    struct rctx *x = *req_cls;
    if (!x)
        return;
    *req_cls = NULL;
    /* the next request on this connection is timed from here */
    conn_clock(conn, now_ms());
    const char *why = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL
                      : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED
                          ? "timeout"
                      : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN
                          ? "shutdown"
                      : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT
                          ? "client_closed"
                          : "error";
    finish(x, why, 1);
    ctx_free(x);
    atomic_fetch_sub(&h->active, 1);
}

/* libmicrohttpd's format strings: the attribute lets compilers check our
 * vsnprintf of them like any printf-style call */
__attribute__((format(printf, 2, 0))) static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http *h = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
        msg[--n] = 0;
    /* why MHD_start_daemon failed; its threads may log meanwhile */
    if (h && atomic_load(&h->starting) && !h->start_msg[0] &&
        pthread_equal(pthread_self(), h->starter))
        snprintf(h->start_msg, sizeof h->start_msg, "%s", msg);
    char q[600] = "";
    log_quote(q, sizeof q, msg);
    log_error("msg=%s source=libmicrohttpd", q);
}

static void
free_pem(struct http *h)
{
    if (h->key) {
        memset(h->key, 0, strlen(h->key));
        free(h->key);
    }
    free(h->cert);
    h->key = h->cert = NULL;
}

int
http_start(struct http **out, struct server *srv, int *port,
           struct semd_err *err)
{
    const struct config *cfg = srv->cfg;
    if (cfg->tls_cert && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return semd_err_set(err, SEMD_EINVAL,
                            "--tls-cert: this libmicrohttpd was built "
                            "without TLS support; serve plain HTTP behind "
                            "a TLS proxy, or install one built with GnuTLS");
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    int rc = config_read_tls(cfg, &h->cert, &h->key, err);
    if (rc != 0) {
        free(h);
        return rc;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host[0] ? cfg->host : NULL, portstr, &hints,
                          &ai);
    if (gai != 0) {
        free_pem(h);
        free(h);
        return semd_err_set(err, SEMD_EINVAL, "cannot resolve '%s': %s",
                            cfg->host, gai_strerror(gai));
    }
    h->srv = srv;
    atomic_init(&h->active, 0);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    boot_tag = (unsigned)(t.tv_nsec ^ (t.tv_sec << 8) ^ getpid());

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (h->cert)
        flags |= MHD_USE_TLS;
    /* MHD keeps the request line and the headers in each connection's
     * memory pool, with the read buffer: room for both our limits, so
     * that requests over them meet our JSON 414 and 431 and only far
     * larger ones MHD's own answer */
    /* MHD's own cap is a little above ours: the connections between
     * are answered 503 (on_request) and closed */
    size_t spare = cfg->max_connections / 8 < 16 ? 16
                                                 : cfg->max_connections / 8;
    size_t pool = 2 * (cfg->max_url + cfg->max_header_bytes) +
                  64 * (size_t)cfg->max_headers + 16384;
    if (pool < 32768)
        pool = 32768;
    struct MHD_OptionItem ops[16] = {
        /* first, so that MHD reports everything through it */
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, h},
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_CONNECTION_LIMIT,
         (intptr_t)(cfg->max_connections + spare), NULL},
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->max_per_ip,
         NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->timeout, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)pool, NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, h},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, h},
        {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
    };
    size_t n = 10;
    if (h->cert) {
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                           h->cert};
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
                                           h->key};
    }
    if (cfg->threads > 1)
        ops[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
                                           cfg->threads, NULL};
    ops[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    h->starter = pthread_self();
    atomic_store(&h->starting, 1);
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    atomic_store(&h->starting, 0);
    freeaddrinfo(ai);
    if (!h->d) {
        if (h->cert)
            rc = semd_err_set(err, SEMD_EINVAL,
                              "cannot serve HTTPS with --tls-cert '%s' and "
                              "--tls-key '%s': %s", cfg->tls_cert,
                              cfg->tls_key,
                              h->start_msg[0] ? h->start_msg
                                              : "libmicrohttpd refused them");
        else
            rc = semd_err_set(err, SEMD_EIO,
                              "cannot listen on %s:%d (in use, or not an "
                              "address of this host)", cfg->host, cfg->port);
        free_pem(h);
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return rc;
    }
    if ((errno = pthread_create(&h->sweeper, NULL, sweeper, h)) != 0) {
        rc = semd_err_set(err, SEMD_EIO, "cannot start a thread: %s",
                          strerror(errno));
        h->sweeping = 0;
        http_stop(h, 0);
        return rc;
    }
    h->sweeping = 1;
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : cfg->port;
    *out = h;
    return SEMD_OK;
}

void
http_stop(struct http *h, unsigned grace_ms)
{
    if (!h)
        return;
    /* stop accepting; requests on open connections still finish */
    MHD_socket s = MHD_quiesce_daemon(h->d);
    if (s != MHD_INVALID_SOCKET)
        close(s);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&h->active) > 0 && since(&t0) * 1000.0 < grace_ms) {
        struct timespec nap = {0, 5 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    if (h->sweeping) {
        pthread_mutex_lock(&h->lock);
        h->stop = 1;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->sweeper, NULL);
    }
    MHD_stop_daemon(h->d);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    free_pem(h);
    free(h);
}
