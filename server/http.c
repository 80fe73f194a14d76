/*
 * http.c - the HTTP front end over libmicrohttpd, the only file that
 * includes microhttpd.h. It turns connections into struct api_req, calls
 * the route's handler and turns struct api_reply into a response.
 *
 * Life of a request (MHD calls on_request several times per request):
 *  - first call: find the route and check auth, content type and declared
 *    length. Errors found here are answered at once (the connection then
 *    closes, which is what an unread oversized body needs). Otherwise the
 *    context is stored and the call returns without answering: answering
 *    on the first call makes MHD 0.9.75 close keep-alive connections.
 *  - middle calls: append the body; past the route's limit, record 413
 *    and discard the rest.
 *  - last call: parse the JSON, take a snapshot reference, run the
 *    handler and queue its reply. A handler may defer (exact neighbour
 *    queries go to the batcher): the connection is suspended, and the
 *    batcher's wake resumes it, which brings one more call that answers.
 *  - completion callback: the only place that frees the context (body,
 *    parsed JSON, snapshot reference, reply); it counts the request in
 *    the metrics and writes its access-log line.
 *
 * Threads: MHD's internal thread pool (--threads), each with its own
 * epoll set, runs on_request and on_completed; the batcher's threads call
 * wake. A context is touched by one thread at a time: the hand-over to
 * and from the batcher goes through MHD's suspend/resume (locked).
 */
#include "serve.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct http {
    struct MHD_Daemon *d;
    struct server *srv;
    atomic_int active; /* contexts alive: requests not yet completed */
};

enum state {
    ST_OPEN,     /* route found, reading the body */
    ST_WAITING,  /* suspended while the batcher scores */
    ST_RESUMED,  /* the batcher filled the reply */
    ST_ANSWERED, /* a response is queued */
};

struct rctx {
    struct http *h;
    struct MHD_Connection *conn;
    enum state state;
    struct timespec t0;
    char id[32];
    char method[8];
    char path[160];
    char allow[32];
    size_t limit;
    int refused;  /* a reply was decided before the body ended: discard */
    int text;     /* ROUTE_TEXT route sent text/plain: body not parsed */
    char *body;
    size_t len, cap;
    struct api_req rq;
    struct api_reply rp;
    struct batch_job job;
    size_t bytes_out;
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

const struct api_arg *
api_arg(const struct api_req *rq, const char *key)
{
    for (size_t i = 0; i < rq->n_args; i++)
        if (!strcmp(rq->args[i].key, key))
            return &rq->args[i];
    return NULL;
}

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
            size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    (void)key_size;
    struct rctx *x = cls;
    if (x->rq.n_args == API_MAX_ARGS) {
        x->rq.n_args++; /* one past: too many */
        return MHD_NO;
    }
    struct api_arg *a = &x->rq.args[x->rq.n_args++];
    a->key = key;
    a->val = value ? value : "";
    a->len = value ? value_size : 0;
    return MHD_YES;
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
bearer(struct MHD_Connection *c, const char **tok, size_t *len)
{
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
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
    const struct config *cfg = x->h->srv->cfg;
    const char *tok = NULL;
    size_t len = 0;
    int have = bearer(x->conn, &tok, &len);
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
json_content_type(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!t || strncasecmp(t, "application/json", 16))
        return 0;
    return t[16] == 0 || t[16] == ';' || t[16] == ' ';
}

static int
text_content_type(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!t || strncasecmp(t, "text/plain", 10))
        return 0;
    return t[10] == 0 || t[10] == ';' || t[10] == ' ';
}

static enum MHD_Result
answer(struct rctx *x)
{
    struct server *srv = x->h->srv;
    struct api_reply *rp = &x->rp;
    if (rp->status == 500 && rp->error) {
        json_t *m = json_object_get(rp->error, "message");
        log_error("msg=\"request failed\" id=%s path=%s status=%d "
                  "detail=\"%s\"", x->id, x->path, rp->status,
                  json_string_value(m) ? json_string_value(m) : "");
    }
    uint64_t version = x->rq.snap ? semd_snapshot_version(x->rq.snap)
                                  : semd_holder_version(srv->holder);
    size_t len = 0;
    const char *ctype = "application/json";
    char *body = reply_body(rp, x->id, since(&x->t0) * 1000.0, version, &len,
                            &ctype);
    struct MHD_Response *resp;
    int status = rp->status ? rp->status : 500;
    if (body) {
        resp = MHD_create_response_from_buffer_with_free_callback(len, body,
                                                                  free);
        if (!resp)
            free(body);
    } else {
        static const char oom[] = "{\"error\":{\"code\":\"internal\","
                                  "\"message\":\"out of memory\"}}";
        status = 500;
        len = sizeof oom - 1;
        resp = MHD_create_response_from_buffer(len, (void *)oom,
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", x->id);
    for (size_t i = 0; i + 1 < sizeof rp->headers / sizeof rp->headers[0] &&
                       rp->headers[i];
         i += 2)
        MHD_add_response_header(resp, rp->headers[i], rp->headers[i + 1]);
    if (status == 405 && x->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, x->allow);
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"semd\"");
    /* while draining, keep-alive connections end after their reply */
    if (atomic_load(&srv->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(x->conn, (unsigned)status,
                                             resp);
    MHD_destroy_response(resp);
    x->state = ST_ANSWERED;
    x->rp.status = status;
    x->bytes_out = len;
    return ret;
}

static void
wake(void *arg)
{
    struct rctx *x = arg;
    x->state = ST_RESUMED;
    MHD_resume_connection(x->conn);
}

/* The last call for a request: everything is in, run the handler. */
static enum MHD_Result
run(struct rctx *x)
{
    struct server *srv = x->h->srv;
    const struct route *r = x->rq.route;
    if (x->refused)
        return answer(x);
    MHD_get_connection_values_n(x->conn, MHD_GET_ARGUMENT_KIND, collect_arg,
                                x);
    if (x->rq.n_args > API_MAX_ARGS) {
        reply_error(&x->rp, ERR_BAD_REQUEST, NULL,
                    "more than %d query parameters", API_MAX_ARGS);
        return answer(x);
    }
    if (!(r->flags & ROUTE_NOSNAP)) {
        x->rq.snap = semd_holder_acquire(srv->holder);
        if (!x->rq.snap) {
            reply_error(&x->rp, ERR_NOT_READY, NULL,
                        "the model is still loading");
            return answer(x);
        }
    }
    if ((r->flags & ROUTE_TEXT) && x->text) {
        /* a text body keeps its bytes; the buffer has room for a NUL */
        if (!x->body)
            x->body = calloc(1, 1);
        else if (x->len == x->cap) {
            char *b = realloc(x->body, x->cap + 1);
            if (b)
                x->body = b, x->cap++;
        }
        if (!x->body || x->len == x->cap) {
            reply_error(&x->rp, ERR_INTERNAL, NULL, "out of memory");
            return answer(x);
        }
        x->body[x->len] = 0;
        x->rq.body = x->body;
        x->rq.body_len = x->len;
    } else if (r->flags & ROUTE_BODY) {
        json_error_t je;
        if (!x->len) {
            reply_error(&x->rp, ERR_INVALID_JSON, NULL,
                        "empty body: expected a JSON object");
            return answer(x);
        }
        x->rq.json = json_loadb(x->body, x->len, JSON_REJECT_DUPLICATES, &je);
        if (!x->rq.json) {
            reply_error(&x->rp, ERR_INVALID_JSON, NULL,
                        "invalid JSON at line %d column %d: %s", je.line,
                        je.column, je.text);
            return answer(x);
        }
        if (!json_is_object(x->rq.json)) {
            reply_error(&x->rp, ERR_BAD_REQUEST, NULL,
                        "the body must be a JSON object");
            return answer(x);
        }
    }
    x->rq.if_none_match = MHD_lookup_connection_value(
        x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    x->rq.accept_encoding = MHD_lookup_connection_value(
        x->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    x->rq.job = &x->job;
    r->fn(&x->rq, &x->rp);
    if (!x->rp.deferred)
        return answer(x);
    x->job.wake = wake;
    x->job.wake_arg = x;
    x->state = ST_WAITING;
    MHD_suspend_connection(x->conn);
    if (!srv->batcher || batcher_submit(srv->batcher, &x->job) != 0) {
        reply_error(&x->rp, ERR_SHUTTING_DOWN, NULL,
                    "the server is shutting down");
        wake(x);
    }
    return MHD_YES;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **req_cls)
{
    (void)version;
    struct http *h = cls;
    struct rctx *x = *req_cls;
    if (!x) {
        /* the thread policy of cmd_serve.c, once per pool thread: an
         * OpenMP team inside each search would spin on the other cores */
        static _Thread_local int policy_applied;
        if (!policy_applied) {
            if (h->srv->omp_threads)
                semd_set_threads(0, h->srv->omp_threads);
            policy_applied = 1;
        }
        x = calloc(1, sizeof *x);
        if (!x)
            return MHD_NO;
        atomic_fetch_add(&h->active, 1);
        metrics_inflight(1);
        *req_cls = x;
        x->h = h;
        x->conn = conn;
        clock_gettime(CLOCK_MONOTONIC, &x->t0);
        snprintf(x->id, sizeof x->id, "%08x-%06llx", boot_tag,
                 (unsigned long long)atomic_fetch_add(&next_id, 1));
        snprintf(x->method, sizeof x->method, "%s", method);
        snprintf(x->path, sizeof x->path, "%s", url);
        x->rq.srv = h->srv;
        x->rq.id = x->id;
        x->state = ST_OPEN;

        const struct route *r = NULL;
        const char *param = NULL;
        int rc = route_find(method, url, &r, &param, x->allow,
                            sizeof x->allow);
        if (rc == 404) {
            reply_error(&x->rp, ERR_NOT_FOUND, NULL, "no route '%s'",
                        x->path);
            return answer(x);
        }
        if (rc == 405) {
            reply_error(&x->rp, ERR_METHOD, NULL,
                        "method %s not allowed on '%s' (allowed: %s)",
                        x->method, x->path, x->allow);
            return answer(x);
        }
        x->rq.route = r;
        x->rq.param = param;
        if (check_auth(x, r) != 0)
            return answer(x);
        x->limit = r->body_limit == ROUTE_LIMIT_DEFAULT
                       ? h->srv->cfg->max_body : r->body_limit;
        const char *cl = MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(
            conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
        if ((r->flags & ROUTE_TEXT) && text_content_type(conn))
            x->text = 1;
        else if ((r->flags & ROUTE_BODY) && (declared > 0 || te) &&
                 !json_content_type(conn)) {
            const char *t = MHD_lookup_connection_value(
                conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
            reply_error(&x->rp, ERR_MEDIA_TYPE, NULL,
                        "content type '%s' is not application/json%s",
                        t ? t : "(none)",
                        (r->flags & ROUTE_TEXT) ? " or text/plain" : "");
            return answer(x);
        }
        if (declared > x->limit) {
            reply_error(&x->rp, ERR_TOO_LARGE, NULL,
                        "body of %llu bytes is over the limit of %zu for "
                        "%s %s", declared, x->limit, x->method, r->name);
            return answer(x);
        }
        /* answer on a later call: keeps the connection alive */
        return MHD_YES;
    }

    if (x->state == ST_ANSWERED) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (x->refused)
            return MHD_YES;
        if (n > x->limit - x->len) {
            reply_error(&x->rp, ERR_TOO_LARGE, NULL,
                        "body over the limit of %zu bytes for %s %s",
                        x->limit, x->method, x->rq.route->name);
            x->refused = 1;
            free(x->body);
            x->body = NULL;
            x->len = x->cap = 0;
            return MHD_YES;
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
                return MHD_YES;
            }
            x->body = b;
            x->cap = cap;
        }
        memcpy(x->body + x->len, upload, n);
        x->len += n;
        return MHD_YES;
    }
    if (x->state == ST_RESUMED)
        return answer(x);
    if (x->state == ST_WAITING)
        return MHD_YES;
    return run(x);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct http *h = cls;
    struct rctx *x = *req_cls;
    if (!x)
        return;
    *req_cls = NULL;
    double secs = since(&x->t0);
    int status = x->state == ST_ANSWERED ? x->rp.status : 0;
    metrics_request(x->rq.route, status, secs);
    metrics_inflight(-1);
    const char *why = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL
                      : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED
                          ? "timeout"
                      : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN
                          ? "shutdown"
                      : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT
                          ? "client_closed"
                          : "error";
    char path[200] = "";
    log_quote(path, sizeof path, x->path);
    /* the path only: query strings may carry secrets */
    log_info("msg=request id=%s method=%s path=%s status=%d bytes=%zu "
             "ms=%.3f%s%s",
            x->id, x->method, path, status, x->bytes_out, secs * 1000.0,
            why ? " reason=" : "", why ? why : "");
    json_decref(x->rq.json);
    semd_snapshot_release(x->rq.snap);
    reply_release(&x->rp);
    if (x->rq.scratch_free)
        x->rq.scratch_free(x->rq.scratch);
    else
        free(x->rq.scratch);
    free(x->body);
    free(x);
    atomic_fetch_sub(&h->active, 1);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '.'))
        msg[--n] = 0;
    char q[600] = "";
    log_quote(q, sizeof q, msg);
    log_error("msg=%s source=libmicrohttpd", q);
}

int
http_start(struct http **out, struct server *srv, int *port,
           struct semd_err *err)
{
    const struct config *cfg = srv->cfg;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host[0] ? cfg->host : NULL, portstr, &hints,
                          &ai);
    if (gai != 0)
        return semd_err_set(err, SEMD_EINVAL, "cannot resolve '%s': %s",
                            cfg->host, gai_strerror(gai));
    struct http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    h->srv = srv;
    atomic_init(&h->active, 0);
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    boot_tag = (unsigned)(t.tv_nsec ^ (t.tv_sec << 8) ^ getpid());

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem ops[] = {
        /* first, so that MHD reports everything through it */
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)cfg->max_connections, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->timeout, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, h},
        {MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL},
        {cfg->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
         cfg->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        free(h);
        return semd_err_set(err, SEMD_EIO,
                            "cannot listen on %s:%d (in use, or not an "
                            "address of this host)", cfg->host, cfg->port);
    }
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
    MHD_stop_daemon(h->d);
    free(h);
}
