/*
 * serve.h - the parts of `semd serve` shared between server/ files: the
 * configuration, the request and reply that handlers see (no
 * libmicrohttpd types), the route table, replies, metrics, logging, the
 * neighbour batcher and the HTTP front end. Grouped by the file that
 * defines them.
 */
#ifndef SEMD_SERVE_H
#define SEMD_SERVE_H

#include "semd.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- config.c */

struct config {
    const char *model;
    char host[256];
    int port;
    int threads;          /* request threads; also batcher threads */
    char *index;          /* FAISS factory string, "Flat": exact */
    size_t max_body;      /* bytes of a request body */
    uint32_t max_k;
    uint32_t max_batch;   /* queries in one POST and in one scoring batch */
    unsigned max_connections;
    unsigned max_per_ip;  /* connections from one client address; 0: any */
    unsigned timeout;     /* seconds a connection may stay idle */
    unsigned request_timeout; /* seconds one request may take in all */
    size_t max_url;       /* bytes of the request target */
    size_t max_header_bytes; /* bytes of all request header lines */
    unsigned max_headers; /* request header lines */
    size_t max_expr;      /* bytes of one expression (q=, expr) */
    char *tls_cert;       /* PEM files; both or neither */
    char *tls_key;
    size_t cache_size;    /* entries of the result cache; 0: off */
    size_t cache_bytes;   /* bytes of keys and answers it may hold */
    char *token_file;
    char *read_token_file;
    char *write_token;    /* loaded from the files; never logged */
    char *read_token;
    /* online training (server/trainer.c); off unless train is set */
    int train;
    char *data_dir;
    double publish_interval;  /* seconds */
    uint64_t publish_words;
    double persist_interval;  /* seconds */
    uint64_t min_count;
    uint32_t train_threads;
    uint32_t window;
    uint32_t negative;
    double sample;
    double alpha;
    uint64_t max_backlog_records;
    uint64_t max_backlog_bytes;
    double index_rebuild_interval; /* seconds between index builds */
    char *follow;         /* --follow DIR: a read-only replica, no model */
};

/* Parses flags and SEMD_* variables (flags win) into c. Returns 0 to
 * serve, 1 when --help was printed (exit 0), 2 on a usage error (printed
 * to stderr). */
int config_parse(struct config *c, int argc, char **argv);
/* Reads the token files, refusing ones others can read. */
int config_load_tokens(struct config *c, struct semd_err *err);
/* Reads --tls-cert and --tls-key into malloc'd, NUL-terminated PEM text
 * (*cert, *key: NULL when TLS is off), refusing a key file that group or
 * others can read or write, and files that hold no PEM block. The caller
 * frees both, wiping the key first. */
int config_read_tls(const struct config *c, char **cert, char **key,
                    struct semd_err *err);
void config_release(struct config *c);

/* ------------------------------------------------------------------- log.c */

/* One logfmt line on stderr: ts=... level=... msg="..." then fields. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Appends a logfmt value to buf, quoted when needed. */
void log_quote(char *buf, size_t n, const char *s);

/* ------------------------------------------------------------- routes.c */

struct api_req;
struct api_reply;
typedef void (*api_fn)(struct api_req *rq, struct api_reply *rp);

#define ROUTE_BODY 0x1u    /* takes a JSON body */
#define ROUTE_WRITE 0x2u   /* needs the write token */
#define ROUTE_PUBLIC 0x4u  /* open even when a read token is set */
#define ROUTE_PARAM 0x8u   /* the path ends in one {param} segment */
#define ROUTE_NOSNAP 0x10u /* answers without a snapshot */
#define ROUTE_RAW 0x20u    /* reply is text, not the JSON envelope */
#define ROUTE_TEXT 0x40u   /* with ROUTE_BODY: text/plain is taken too,
                              unparsed (rq->json NULL, rq->body set) */

#define ROUTE_LIMIT_DEFAULT ((size_t)-1) /* body limit: --max-body */

struct route {
    const char *method;
    const char *path; /* with ROUTE_PARAM: the prefix before {param} */
    api_fn fn;
    size_t body_limit; /* bytes; 0: no body accepted */
    unsigned flags;
    const char *name;  /* for metrics and logs: the path template */
};

extern const struct route routes[];
extern const size_t n_routes;

/* Finds the route for method and path: 0 and *out, else 404 (no such
 * path) or 405 (path known, method not; allow gets the methods it takes,
 * comma-separated). For ROUTE_PARAM routes *param is the rest of path. */
int route_find(const char *method, const char *path, const struct route **out,
               const char **param, char *allow, size_t allow_n);

/* -------------------------------------------------------------- reply.c */

enum api_error {
    ERR_BAD_REQUEST,
    ERR_INVALID_JSON,
    ERR_UNKNOWN_WORD,
    ERR_NOT_FOUND,
    ERR_METHOD,
    ERR_TOO_LARGE,
    ERR_MEDIA_TYPE,
    ERR_UNAUTHORIZED,
    ERR_FORBIDDEN,
    ERR_NOT_READY,
    ERR_OVERLOADED,
    ERR_SHUTTING_DOWN,
    ERR_INTERNAL,
    ERR_URI_TOO_LONG,
    ERR_HEADERS_TOO_LARGE,
    ERR_BUSY,
    ERR_NOT_SUPPORTED, /* the served model cannot do it (no tokenizer) */
    ERR_COUNT
};

struct api_reply {
    int status;
    json_t *result;    /* 2xx: the "result" value, owned */
    json_t *error;     /* otherwise: the "error" object, owned */
    char *text;        /* ROUTE_RAW: the body, malloc'd, owned */
    size_t text_len;
    const char *content_type; /* ROUTE_RAW only; static */
    int deferred;      /* the handler queued a batch job (rq->job) */
    char *result_text; /* 2xx: the "result" value already serialised
                          (a cached answer), malloc'd, owned; used
                          instead of result */
    size_t result_len;
    const char *headers[16]; /* ROUTE_RAW: extra header name, value
                                pairs ending in NULL; static strings */
};

/* Success: takes over result (a new reference). */
void reply_ok(struct api_reply *rp, int status, json_t *result);
/* An error with its status from the code table; message is printf-like.
 * words (may be NULL) lists unknown words, taken over. For ERR_INTERNAL
 * the message only goes to the log, with the request id. */
void reply_error(struct api_reply *rp, enum api_error e, json_t *words,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Maps a core error code (and its message) to a reply. */
void reply_semd(struct api_reply *rp, int code, const struct semd_err *err,
                json_t *words);
int reply_status(enum api_error e);
const char *reply_code(enum api_error e);
/* Serialises the reply (envelope or error) into a malloc'd body. version 0
 * is written as null. Returns NULL when out of memory. */
char *reply_body(struct api_reply *rp, const char *request_id,
                 double time_ms, uint64_t version, size_t *len,
                 const char **content_type);
void reply_release(struct api_reply *rp);

/* ------------------------------------------------------------ metrics.c */

struct server;
void metrics_init(void);
/* One finished request; route NULL when none matched. */
void metrics_request(const struct route *route, int status, double seconds);
void metrics_inflight(int delta);
void metrics_batch(size_t n);
/* The Prometheus text exposition, malloc'd. */
char *metrics_render(struct server *srv, size_t *len);

/* -------------------------------------------------------------- cache.c */

struct cache;
/* A cache of at most cap entries holding at most cap_bytes (keys, answers
 * and bookkeeping); *out NULL (no cache) when cap is 0. */
int cache_new(struct cache **out, size_t cap, size_t cap_bytes,
              struct semd_err *err);
/* A malloc'd copy of the value for (version, key), or NULL (a miss). */
char *cache_get(struct cache *c, uint64_t version, const char *key,
                size_t klen, size_t *len);
/* Stores a copy; the least recently used entry goes when full. */
void cache_put(struct cache *c, uint64_t version, const char *key,
               size_t klen, const char *val, size_t vlen);
struct cache_stats {
    unsigned long long hits, misses;
    size_t entries, cap, bytes, cap_bytes;
};
/* all zero for no cache */
void cache_stats(struct cache *c, struct cache_stats *st);
void cache_free(struct cache *c);

/* ------------------------------------------------------------ batcher.c */

/* One exact neighbour query waiting to be scored with others. */
struct batch_job {
    struct semd_nquery q;            /* filled by the handler */
    const struct semd_index *index;  /* jobs are grouped by index */
    void (*done)(struct batch_job *j); /* builds the reply; batcher thread */
    void (*wake)(void *arg);         /* resumes the request; set by http.c */
    void *wake_arg;
    struct api_req *rq;
    struct api_reply *rp;
    struct batch_job *next;
};

struct batcher;
int batcher_start(struct batcher **out, int threads, size_t max_batch,
                  struct semd_err *err);
/* Queues j; SEMD_ESHUTDOWN once stopping. Never blocks on scoring. */
int batcher_submit(struct batcher *b, struct batch_job *j);
/* Finishes queued jobs, joins the threads, frees b. */
void batcher_stop(struct batcher *b);

/* --------------------------------------------------------- the server */

/* The approximate index asked for with --index, while the exact index
 * answers: none (exact asked for), loading, ready (swapped in), failed. */
enum index_state {
    INDEX_NONE,
    INDEX_LOADING,
    INDEX_READY,
    INDEX_FAILED
};

/* "loading", "ready", "failed", or "ready" for INDEX_NONE (the exact
 * index is the one asked for). */
const char *index_state_name(int state);

struct server {
    struct config *cfg;
    struct semd_holder *holder;
    struct batcher *batcher; /* NULL: score in the request thread */
    double started;          /* seconds since the epoch */
    atomic_int draining;     /* stopping: replies close connections */
    int omp_threads;         /* OpenMP threads per request thread; 0:
                                library default */
    atomic_int index_state;  /* enum index_state, set by cmd_serve.c */
    struct cache *cache;     /* read results; NULL: off */
    struct online *online;   /* --train: the trainer, else NULL */
    struct follow *follow;   /* --follow: the follower thread, else NULL */
};

#define API_MAX_ARGS 32

struct api_arg {
    const char *key;
    const char *val; /* NUL-terminated, len bytes (may hold NULs) */
    size_t len;
};

/* What a handler sees of a request. Everything is borrowed from the
 * request context, which outlives the handler. */
struct api_req {
    struct server *srv;
    const struct route *route;
    const char *id;          /* request id, also in the log line */
    const char *param;       /* ROUTE_PARAM: the decoded {param} */
    struct api_arg args[API_MAX_ARGS];
    size_t n_args;
    json_t *json;            /* ROUTE_BODY: the parsed body */
    struct semd_snapshot *snap; /* NULL only for ROUTE_NOSNAP routes */
    struct batch_job *job;   /* set by a handler that defers */
    void *scratch;           /* a handler's memory, freed with the
                                request by scratch_free (NULL: free) */
    void (*scratch_free)(void *scratch);
    const char *if_none_match; /* the request's header, or NULL */
    const char *accept_encoding; /* the request's header, or NULL */
    const char *body;        /* ROUTE_TEXT: the raw body (NUL after it) */
    size_t body_len;
};

/* The query argument named key, or NULL. */
const struct api_arg *api_arg(const struct api_req *rq, const char *key);

/* ------------------------------------------------------ api_query.c */

void api_neighbors_get(struct api_req *rq, struct api_reply *rp);
void api_neighbors_post(struct api_req *rq, struct api_reply *rp);
void api_similarity_get(struct api_req *rq, struct api_reply *rp);
void api_similarity_post(struct api_req *rq, struct api_reply *rp);
void api_analogy_get(struct api_req *rq, struct api_reply *rp);
void api_analogy_post(struct api_req *rq, struct api_reply *rp);
void api_odd_one_out(struct api_req *rq, struct api_reply *rp);
void api_vector_get(struct api_req *rq, struct api_reply *rp);
void api_vectors_post(struct api_req *rq, struct api_reply *rp);
void api_words(struct api_req *rq, struct api_reply *rp);

/* ------------------------------------------------------ api_admin.c */

void api_health(struct api_req *rq, struct api_reply *rp);
void api_ready(struct api_req *rq, struct api_reply *rp);
void api_model(struct api_req *rq, struct api_reply *rp);
void api_metrics(struct api_req *rq, struct api_reply *rp);
void api_reload(struct api_req *rq, struct api_reply *rp);

/* ---------------------------------------------------- api_project.c */

void api_project(struct api_req *rq, struct api_reply *rp);

/* -------------------------------------------------------- tokens_json.c */

/* How the JSON below is serialised by `semd tokens-report --json` and GET
 * /v1/tokens/report, so both print the same bytes. */
#define TOKENS_JSON_FLAGS \
    (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8))

/* The tokens of len bytes of text by t, in *out (a new reference):
 * {"tokens": [{"id", "text", "token", "start", "end"}], "count"}: text is
 * the token's bytes as UTF-8 (U+FFFD for a byte of a split character),
 * token its byte-level form, [start, end) the bytes of text it covers.
 * With m (the model carrying t; NULL: none) each token also gets "norm",
 * the norm of its row (null when m has no row for it). */
int tokens_json(const struct semd_tokenizer *t, const struct semd_model *m,
                const char *text, size_t len, json_t **out,
                struct semd_err *err);
/* The token health report of m as one object (see semd_tokens_report), a
 * new reference; NULL when out of memory. */
json_t *tokens_report_json(const struct semd_model *m,
                           const struct semd_tokens_report *r);
/* "no_merge" or "split". */
const char *tokens_unreach_reason(int reason);
/* On a model with a tokenizer, sets "id" (the token id of row) and "text"
 * (its bytes as UTF-8, each byte of a split character as U+FFFD, as
 * semd_model_display_word gives it) in o; does nothing on a word model or
 * for a row that is no token, so that "word" alone names the row there.
 * Returns 0, or -1 when out of memory. */
int tokens_row_fields(const struct semd_model *m, uint64_t row, json_t *o);

/* ------------------------------------------------------------ api_tokens.c */

void api_tokenize(struct api_req *rq, struct api_reply *rp);
void api_tokens_report(struct api_req *rq, struct api_reply *rp);

/* ---------------------------------------------------------- trainer.c */

/* The online trainer of `semd serve --train`: a journal of posted text,
 * one thread that trains a private copy and publishes snapshots, and the
 * persisted snapshots in --data-dir (see the comment atop trainer.c). */
struct online;

/* Before the first load: reads DATA_DIR/CURRENT. *model gets the model
 * file to serve first (the persisted snapshot, else cfg->model; borrowed
 * from o) and *version its version. */
int online_new(struct online **out, const struct config *cfg,
               const char **model, uint64_t *version, struct semd_err *err);
/* Publishes the first snapshot, opens the journal, starts the trainer
 * from that snapshot and replays the journal after the persisted
 * position; with an approximate --index, starts the thread that builds
 * it for the versions published (see trainer.c), keeping *index_state
 * (may be NULL) up to date. */
int online_start(struct online *o, struct semd_holder *holder,
                 atomic_int *index_state, struct semd_err *err);
/* Stops the thread, persists what was trained, frees o. Accepts NULL. */
void online_free(struct online *o);

/* Appends text to the journal (durable on return): 0 and *seq; 1 when
 * the backlog is over its bound (*retry_after seconds); or a negative
 * code. */
int online_post(struct online *o, const char *text, size_t len,
                uint64_t *seq, uint64_t *queued_records,
                unsigned *retry_after, struct semd_err *err);
/* The figures of GET /v1/train, a new object; o may be NULL (off). */
json_t *online_status(struct online *o);
/* The training figures in Prometheus text, malloc'd; NULL when off. */
char *online_metrics(struct online *o);
/* A new reference to the retained snapshot of version v, or NULL. */
struct semd_snapshot *online_version(struct online *o, uint64_t v);
/* Oldest retained version (0 when none). */
uint64_t online_oldest_version(struct online *o);

/* ---------------------------------------------------------- api_train.c */

void api_train_post(struct api_req *rq, struct api_reply *rp);
void api_train_get(struct api_req *rq, struct api_reply *rp);
void api_drift(struct api_req *rq, struct api_reply *rp);

/* ------------------------------------------------------------ web.c */

/* GET /, /app.css, /app.js: the embedded page (server/web/). */
void api_page(struct api_req *rq, struct api_reply *rp);

/* ---------------------------------------------------------------- http.c */

struct http;
/* Starts listening; *port gets the bound port (useful with port 0). With
 * --tls-cert and --tls-key it serves HTTPS. */
int http_start(struct http **out, struct server *srv, int *port,
               struct semd_err *err);
/* Stops accepting, waits up to grace_ms for in-flight requests, stops. */
void http_stop(struct http *h, unsigned grace_ms);

/* One request without a socket: the steps a request that arrives over a
 * connection goes through (limits on the target and headers, routing,
 * auth, content type, body limit, query arguments, JSON, snapshot,
 * handler, batcher, reply), in the same functions of http.c. For tests
 * and fuzzing. It counts the request in the metrics but writes no
 * access-log line. */
struct http_header {
    const char *name;
    const char *value;
};

struct http_request {
    const char *method;
    const char *path;  /* as sent: percent-encoded, no '?' */
    const char *query; /* what follows '?', as sent; NULL: no '?' */
    const struct http_header *headers;
    size_t n_headers;
    const char *body;  /* the body as it arrives; a missing Content-Length
                          header is taken to be body_len */
    size_t body_len;
};

#define HTTP_REPLY_HEADERS 12 /* name, value pairs, besides Content-Type */

struct http_response {
    int status;
    const char *content_type; /* static */
    char *body;               /* owned: http_response_release */
    size_t len;
    const char *headers[2 * HTTP_REPLY_HEADERS + 1]; /* NULL-terminated;
                                 static or in this struct */
    char id[32], allow[32];   /* storage for header values */
    int body_static;          /* body is a static string */
};

/* Runs req through the server and fills *out (release it with
 * http_response_release). Returns 0, or SEMD_ENOMEM when even the request
 * context could not be allocated (*out is then a 500). Any thread; a
 * request a handler defers waits here for the batcher. */
int http_dispatch(struct server *srv, const struct http_request *req,
                  struct http_response *out);
void http_response_release(struct http_response *r);

/* -------------------------------------------------------------- follow.c */

struct follow;
/* Starts the thread that publishes each snapshot srv->cfg->follow/CURRENT
 * names (see follow.c). */
int follow_start(struct follow **out, struct server *srv,
                 struct semd_err *err);
/* Reads CURRENT again now, retrying a snapshot that failed (SIGHUP). */
void follow_check(struct follow *f);
/* Joins the thread and frees f; accepts NULL. */
void follow_stop(struct follow *f);
/* {dir, version, journal_seq, file, last_error}: a new reference. */
json_t *follow_json(struct follow *f);

/* ------------------------------------------------------------ cmd_serve.c */

/* Asks the main thread to reload the model and index (as SIGHUP does). */
void serve_request_reload(void);

#endif
