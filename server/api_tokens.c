/*
 * api_tokens.c - the token routes of a model that carries its tokenizer:
 * POST /v1/tokenize (text to tokens: id, text, byte offsets, norms on
 * request) and GET /v1/tokens/report (the token health report).
 *
 * The report reads the whole matrix several times (about a second for
 * GPT-2's 50,257 x 768), so it is computed once per snapshot version and
 * set of parameters and kept, serialised, in a small cache. Invariants of
 * the cache, all under `lock`: an entry is either being computed (by the
 * one thread that created it, which alone may fill or remove it) or done
 * (its text immutable until the entry is freed); a request that finds an
 * entry being computed waits on `computed` instead of computing it again.
 * Only done entries are evicted: those of versions older than the newest
 * one asked for, then the least recently used past REPORT_CACHE entries.
 * The cache is the process's (one server per process); entries are keyed
 * by the holder too, so servers sharing a process never mix.
 *
 * Handlers run on request threads, concurrently, and only read the
 * snapshot.
 */
#include "serve.h"

#include "model.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPORT_CACHE 8        /* done reports kept */
#define REPORT_MAX_LIST 1000  /* entries per list a request may ask for */

/* ------------------------------------------------------------- tokenize */

/* A query flag: 1, 0, or -1 (reply filled) for a value that is none of
 * "1", "true", "" (on) and "0", "false" (off). */
static int
flag_arg(const struct api_arg *a, struct api_reply *rp)
{
    if (!strcmp(a->val, "1") || !strcmp(a->val, "true") || !a->val[0])
        return 1;
    if (!strcmp(a->val, "0") || !strcmp(a->val, "false"))
        return 0;
    reply_error(rp, ERR_BAD_REQUEST, NULL,
                "%s must be 1, 0, true or false, got '%s'", a->key, a->val);
    return -1;
}

void
api_tokenize(struct api_req *rq, struct api_reply *rp)
{
    const char *text;
    size_t len;
    int norms = 0;
    const struct api_arg *qa = api_arg(rq, "norms");
    if (qa && (norms = flag_arg(qa, rp)) < 0)
        return;
    if (rq->json) {
        json_t *jt = NULL, *jn = NULL;
        json_error_t je;
        if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s:o, s?o}", "text",
                           &jt, "norms", &jn) != 0) {
            reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
            return;
        }
        if (!json_is_string(jt)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "\"text\" must be a string");
            return;
        }
        if (jn && !json_is_boolean(jn)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "\"norms\" must be true or false");
            return;
        }
        if (jn && qa) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "give norms in the body or in the query, not both");
            return;
        }
        if (jn)
            norms = json_is_true(jn);
        /* jansson has checked the string: UTF-8 without NUL */
        text = json_string_value(jt);
        len = json_string_length(jt);
    } else {
        text = rq->body ? rq->body : "";
        len = rq->body ? rq->body_len : 0;
        size_t bad = model_utf8_valid_prefix(text, len);
        if (bad < len) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "the text is not valid UTF-8: byte 0x%02x at offset "
                        "%zu",
                        (unsigned)(unsigned char)text[bad], bad);
            return;
        }
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    if (!t) {
        reply_error(rp, ERR_NOT_SUPPORTED, NULL,
                    "the model has no tokenizer: convert it with --vocab "
                    "and --merges (see semd convert --help)");
        return;
    }
    json_t *out;
    struct semd_err err = {0};
    int rc = tokens_json(t, norms ? m : NULL, text, len, &out, &err);
    if (rc != 0) {
        reply_semd(rp, rc, &err, NULL);
        return;
    }
    /* serialised as `semd tokenize --json` prints it: the same bytes */
    char *s = json_dumps(out, TOKENS_JSON_FLAGS);
    json_decref(out);
    if (!s) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for the tokens");
        return;
    }
    rp->status = 200;
    rp->result_text = s;
    rp->result_len = strlen(s);
}

/* --------------------------------------------------------------- report */

struct report {
    const struct semd_holder *holder;
    uint64_t version;
    struct semd_tokens_report_opts opts; /* as asked: 0 means default */
    int done;
    char *text; /* done: the report, serialised (TOKENS_JSON_FLAGS) */
    size_t len;
    uint64_t used; /* tick of the last use */
    struct report *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t computed = PTHREAD_COND_INITIALIZER;
static struct report *reports;
static uint64_t ticks;

static int
same_key(const struct report *r, const struct semd_holder *h, uint64_t v,
         const struct semd_tokens_report_opts *o)
{
    return r->holder == h && r->version == v &&
           r->opts.z_limit == o->z_limit &&
           r->opts.dup_cosine == o->dup_cosine &&
           r->opts.max_list == o->max_list;
}

/* Drops done entries of h older than version, then the least recently
 * used done entries past REPORT_CACHE. Under lock. */
static void
evict(const struct semd_holder *h, uint64_t version)
{
    size_t n_done = 0;
    for (struct report **pp = &reports, *r; (r = *pp);) {
        if (r->done && r->holder == h && r->version < version) {
            *pp = r->next;
            free(r->text);
            free(r);
            continue;
        }
        n_done += r->done;
        pp = &r->next;
    }
    while (n_done > REPORT_CACHE) {
        struct report **oldest = NULL;
        for (struct report **pp = &reports; *pp; pp = &(*pp)->next)
            if ((*pp)->done && (!oldest || (*pp)->used < (*oldest)->used))
                oldest = pp;
        struct report *r = *oldest;
        *oldest = r->next;
        free(r->text);
        free(r);
        n_done--;
    }
}

/* Computes the report of the request's snapshot: 0 and a malloc'd text,
 * or a negative code with err filled. Outside the lock. */
static int
compute(struct api_req *rq, const struct semd_tokens_report_opts *o,
        char **text, size_t *len, struct semd_err *err)
{
    struct semd_tokens_report r = {0};
    int rc = semd_tokens_report(semd_snapshot_index(rq->snap), o, &r, err);
    if (rc != 0)
        return rc;
    json_t *doc = tokens_report_json(semd_snapshot_model(rq->snap), &r);
    char *s = doc ? json_dumps(doc, TOKENS_JSON_FLAGS) : NULL;
    json_decref(doc);
    semd_tokens_report_release(&r);
    if (!s)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory for the report");
    *text = s;
    *len = strlen(s);
    return 0;
}

/* The report's text, from the cache or computed (and cached): a malloc'd
 * copy in *text, *cached whether it was there. */
static int
report_text(struct api_req *rq, const struct semd_tokens_report_opts *o,
            char **text, size_t *len, int *cached, struct semd_err *err)
{
    const struct semd_holder *h = rq->srv->holder;
    uint64_t v = semd_snapshot_version(rq->snap);
    pthread_mutex_lock(&lock);
    for (;;) {
        struct report *r = reports;
        while (r && !same_key(r, h, v, o))
            r = r->next;
        if (!r)
            break;
        if (r->done) {
            r->used = ++ticks;
            char *copy = malloc(r->len + 1);
            if (copy)
                memcpy(copy, r->text, r->len + 1);
            size_t n = r->len;
            pthread_mutex_unlock(&lock);
            if (!copy)
                return semd_err_set(err, SEMD_ENOMEM,
                                    "out of memory for the report");
            *text = copy;
            *len = n;
            *cached = 1;
            return 0;
        }
        /* another request is computing it: wait for it, then look again
         * (it is gone if that failed: then this request tries) */
        pthread_cond_wait(&computed, &lock);
    }
    struct report *mine = calloc(1, sizeof *mine);
    if (mine) {
        mine->holder = h;
        mine->version = v;
        mine->opts = *o;
        mine->next = reports;
        reports = mine;
    }
    pthread_mutex_unlock(&lock);

    char *s = NULL;
    size_t n = 0;
    int rc = compute(rq, o, &s, &n, err);
    char *copy = NULL;
    if (rc == 0 && !(copy = malloc(n + 1)))
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory for the report");
    if (copy)
        memcpy(copy, s, n + 1);

    pthread_mutex_lock(&lock);
    if (mine) {
        if (rc == 0) {
            mine->text = s;
            mine->len = n;
            mine->done = 1;
            mine->used = ++ticks;
            s = NULL;
        } else {
            struct report **pp = &reports;
            while (*pp != mine)
                pp = &(*pp)->next;
            *pp = mine->next;
            free(mine);
        }
        evict(h, v);
        pthread_cond_broadcast(&computed);
    }
    pthread_mutex_unlock(&lock);
    free(s);
    if (rc != 0)
        return rc;
    *text = copy;
    *len = n;
    *cached = 0;
    return 0;
}

/* A number query argument into *out: 1 when present and valid, 0 when
 * absent, -1 (reply filled) when it is not a number in [lo, hi] (lo
 * excluded when open_lo). */
static int
number_arg(struct api_req *rq, struct api_reply *rp, const char *key,
           double lo, int open_lo, double hi, double *out)
{
    const struct api_arg *a = api_arg(rq, key);
    if (!a)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(a->val, &end);
    if (!a->val[0] || *end || errno || strlen(a->val) != a->len ||
        !isfinite(v) || v < lo || (open_lo && v == lo) || v > hi) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s must be a number in %s%g, %g], got '%s'", key,
                    open_lo ? "(" : "[", lo, hi, a->val);
        return -1;
    }
    *out = v;
    return 1;
}

void
api_tokens_report(struct api_req *rq, struct api_reply *rp)
{
    struct semd_tokens_report_opts o = {0};
    double x;
    int rc;
    if ((rc = number_arg(rq, rp, "max", 1, 0, REPORT_MAX_LIST, &x)) < 0)
        return;
    if (rc > 0) {
        if (x != floor(x)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "max must be a whole number, got '%s'",
                        api_arg(rq, "max")->val);
            return;
        }
        o.max_list = (size_t)x;
    }
    if ((rc = number_arg(rq, rp, "z", 0, 1, 1e6, &x)) < 0)
        return;
    if (rc > 0)
        o.z_limit = x;
    if ((rc = number_arg(rq, rp, "cosine", 0, 1, 1, &x)) < 0)
        return;
    if (rc > 0)
        o.dup_cosine = x;

    char *text = NULL;
    size_t len = 0;
    int cached = 0;
    struct semd_err err = {0};
    if ((rc = report_text(rq, &o, &text, &len, &cached, &err)) != 0) {
        reply_semd(rp, rc, &err, NULL);
        return;
    }
    /* {"cached":B, then the report's own members (text is an object with
     * at least one member: "{..." */
    static const char on[] = "{\"cached\":true,", off[] = "{\"cached\":false,";
    const char *head = cached ? on : off;
    size_t hl = strlen(head);
    char *s = malloc(hl + len);
    if (!s) {
        free(text);
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for the report");
        return;
    }
    memcpy(s, head, hl);
    memcpy(s + hl, text + 1, len); /* with the NUL */
    free(text);
    rp->status = 200;
    rp->result_text = s;
    rp->result_len = hl + len - 1;
}
