/*
 * api_query.c - the query endpoints: neighbours, similarity, analogy, odd
 * one out, vectors and word look-up. Each handler checks its input (one
 * strict json_unpack_ex per body shape; query parameters one by one),
 * calls the core on the request's snapshot and builds the "result" JSON,
 * naming how each input term was resolved (provenance).
 *
 * Handlers run on request threads, concurrently, and only read the
 * snapshot. GET /v1/neighbors on an exact index defers to the batcher:
 * its reply is then built by neighbors_done on a scoring thread, with
 * the request parked until it is woken.
 */
#include "serve.h"

#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_K 10

/* --------------------------------------------------------------- helpers */

static int
utf8_valid(const char *s, size_t n)
{
    return model_utf8_valid_prefix(s, n) == n;
}

/* Checks a word from a query string or a path (JSON strings are checked
 * by jansson already). */
static int
word_ok(const char *name, const char *s, size_t n, struct api_reply *rp)
{
    if (n == 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s is empty", name);
        return 0;
    }
    if (n > SEMD_MAX_WORD) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s is %zu bytes long, over the limit of %d", name, n,
                    SEMD_MAX_WORD);
        return 0;
    }
    if (!utf8_valid(s, n)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s is not valid UTF-8",
                    name);
        return 0;
    }
    return 1;
}

/* An unsigned integer query parameter in [min, max]; def when absent. */
static int
arg_uint(const struct api_req *rq, const char *key, uint64_t min,
         uint64_t max, uint64_t def, uint64_t *out, struct api_reply *rp)
{
    const struct api_arg *a = api_arg(rq, key);
    if (!a) {
        *out = def;
        return 1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(a->val, &end, 10);
    if (!a->len || a->val[0] == '-' || a->val[0] == '+' || errno ||
        end != a->val + a->len || v < min || v > max) {
        char shown[40] = "";
        snprintf(shown, sizeof shown, "%.32s", a->val);
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s must be an integer in %llu..%llu, got '%s'", key,
                    (unsigned long long)min, (unsigned long long)max,
                    utf8_valid(shown, strlen(shown)) ? shown : "?");
        return 0;
    }
    *out = v;
    return 1;
}

static int
arg_bool(const struct api_req *rq, const char *key, int *out,
         struct api_reply *rp)
{
    const struct api_arg *a = api_arg(rq, key);
    *out = 0;
    if (!a)
        return 1;
    if (!strcmp(a->val, "1") || !strcmp(a->val, "true") || !a->len)
        *out = 1;
    else if (!strcmp(a->val, "0") || !strcmp(a->val, "false"))
        *out = 0;
    else {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s must be 1, 0, true or false", key);
        return 0;
    }
    return 1;
}

static int
arg_float(const struct api_req *rq, const char *key, double min, double max,
          int *present, float *out, struct api_reply *rp)
{
    const struct api_arg *a = api_arg(rq, key);
    *present = 0;
    if (!a)
        return 1;
    char *end;
    errno = 0;
    double v = strtod(a->val, &end);
    if (!a->len || errno || end != a->val + a->len || !isfinite(v) ||
        v < min || v > max) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s must be a number in %g..%g", key, min, max);
        return 0;
    }
    *present = 1;
    *out = (float)v;
    return 1;
}

static uint32_t
max_k(const struct api_req *rq)
{
    uint64_t rows = semd_model_rows(semd_snapshot_model(rq->snap));
    uint32_t k = rq->srv->cfg->max_k;
    return rows < k ? (uint32_t)rows : k;
}

/* k, restrict and min_similarity from the query string. */
static int
search_args(const struct api_req *rq, struct semd_search *s,
            struct api_reply *rp)
{
    uint64_t k, r;
    int present;
    memset(s, 0, sizeof *s);
    if (!arg_uint(rq, "k", 1, max_k(rq), DEFAULT_K, &k, rp) ||
        !arg_uint(rq, "restrict", 0, UINT64_MAX, 0, &r, rp) ||
        !arg_float(rq, "min_similarity", -1.0, 1.0, &present,
                   &s->min_similarity, rp))
        return 0;
    s->k = (uint32_t)k;
    s->restrict_rows = r;
    s->use_min_similarity = present;
    return 1;
}

/* Approximate indexes: efSearch (HNSW) and nprobe (IVF) bounded so that
 * one request cannot ask for a scan of everything, and whether to rescore
 * the candidates exactly. Exact indexes ignore them. */
#define MAX_EF_SEARCH 4096u
#define MAX_NPROBE 65536u

static int
approx_args(const struct api_req *rq, struct semd_search *s,
            struct api_reply *rp)
{
    uint64_t ef, np;
    if (!arg_uint(rq, "ef_search", 1, MAX_EF_SEARCH, 0, &ef, rp) ||
        !arg_uint(rq, "nprobe", 1, MAX_NPROBE, 0, &np, rp) ||
        !arg_bool(rq, "rerank", &s->rerank, rp))
        return 0;
    s->ef_search = (uint32_t)ef;
    s->nprobe = (uint32_t)np;
    return 1;
}

/* The same from a JSON object's optional members (already unpacked). */
static int
search_json(const struct api_req *rq, const char *where, json_int_t k,
            json_int_t restrict_rows, double min_sim, int have_min,
            struct semd_search *s, struct api_reply *rp)
{
    memset(s, 0, sizeof *s);
    if (k < 1 || k > (json_int_t)max_k(rq)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%sk must be in 1..%u, got %lld", where, max_k(rq),
                    (long long)k);
        return 0;
    }
    if (restrict_rows < 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%srestrict must be 0 or more, got %lld", where,
                    (long long)restrict_rows);
        return 0;
    }
    if (have_min && !(min_sim >= -1.0 && min_sim <= 1.0)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%smin_similarity must be in -1..1, got %g", where,
                    min_sim);
        return 0;
    }
    s->k = (uint32_t)k;
    s->restrict_rows = (uint64_t)restrict_rows;
    s->use_min_similarity = have_min;
    s->min_similarity = (float)min_sim;
    return 1;
}

static json_t *
term_json(const struct semd_model *m, const struct semd_term *t,
          const struct semd_term_info *info)
{
    json_t *o = json_object();
    if (t->vec)
        json_object_set_new(o, "vector", json_true());
    else
        json_object_set_new(o, "word", json_stringn(t->word, t->len));
    json_object_set_new(o, "weight", json_real(t->weight));
    json_object_set_new(o, "provenance", json_string(semd_prov_name(
                                             info->prov)));
    if (info->row != UINT64_MAX && info->row < semd_model_rows(m)) {
        json_object_set_new(o, "resolved",
                            json_string(semd_model_word(m, info->row, NULL)));
        json_object_set_new(o, "row", json_integer((json_int_t)info->row));
        tokens_row_fields(m, info->row, o);
    }
    return o;
}

static json_t *
terms_json(const struct semd_model *m, const struct semd_term *t, size_t n,
           const struct semd_term_info *info)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, term_json(m, &t[i], &info[i]));
    return a;
}

/* The missing words of a failed query, or NULL when none is missing. */
static json_t *
missing(const struct semd_term *t, size_t n,
        const struct semd_term_info *info)
{
    json_t *a = NULL;
    for (size_t i = 0; i < n; i++) {
        if (info[i].prov != SEMD_PROV_MISSING || t[i].vec)
            continue;
        if (!a)
            a = json_array();
        json_array_append_new(a, json_stringn(t[i].word, t[i].len));
    }
    return a;
}

/* A list of rows: "word" is the vocabulary key ("\u0120king" on a
 * tokenizer model), and a tokenizer model's rows add "id" and "text"
 * (" king"), the form people read. */
static json_t *
hits_json(const struct semd_model *m, const struct semd_hit *h, uint32_t n,
          const char *score)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s, s:f, s:I}", "word",
                              semd_model_word(m, h[i].row, NULL), score,
                              (double)h[i].score, "row",
                              (json_int_t)h[i].row);
        tokens_row_fields(m, h[i].row, o);
        json_array_append_new(a, o);
    }
    return a;
}

/* Fills terms from a JSON array of words, with one weight. */
static int
word_terms(json_t *arr, const char *field, float weight,
           struct semd_term *t, size_t *n, size_t cap, struct api_reply *rp)
{
    if (!arr)
        return 1;
    if (!json_is_array(arr)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s must be an array of words", field);
        return 0;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "%s[%zu] must be a string", field, i);
            return 0;
        }
        size_t len = json_string_length(v);
        if (len == 0 || len > SEMD_MAX_WORD) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "%s[%zu] must be a word of 1..%d bytes", field, i,
                        SEMD_MAX_WORD);
            return 0;
        }
        if (*n == cap) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "more than %zu terms in one query", cap);
            return 0;
        }
        t[*n].word = json_string_value(v);
        t[*n].len = len;
        t[*n].vec = NULL;
        t[*n].weight = weight;
        (*n)++;
    }
    return 1;
}

/* Reads a vector of dims finite numbers into out. */
static int
json_vector(json_t *arr, const char *field, uint32_t dims, float *out,
            struct api_reply *rp)
{
    if (!json_is_array(arr) || json_array_size(arr) != dims) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s must be an array of %u numbers, got %zu", field, dims,
                    json_is_array(arr) ? json_array_size(arr) : 0);
        return 0;
    }
    size_t i;
    json_t *v;
    double norm = 0;
    json_array_foreach(arr, i, v) {
        if (!json_is_number(v)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "%s[%zu] must be a number", field, i);
            return 0;
        }
        float f = (float)json_number_value(v);
        if (!isfinite(f)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "%s[%zu] is not a finite 32-bit float", field, i);
            return 0;
        }
        out[i] = f;
        norm += (double)f * f;
    }
    if (norm == 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s is all zeros", field);
        return 0;
    }
    return 1;
}

/* Parses an expression argument into e, reporting errors. */
static int
expr_arg(const struct api_req *rq, const struct api_arg *a, const char *name,
         struct semd_expr *e, struct api_reply *rp)
{
    struct semd_err err = {0};
    size_t max = rq->srv->cfg->max_expr;
    if (!a->len) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s is empty", name);
        return 0;
    }
    if (a->len > max || a->len > SEMD_MAX_EXPR) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s is %zu bytes long, over the limit of %zu bytes "
                    "(--max-expr)", name, a->len,
                    max < SEMD_MAX_EXPR ? max : (size_t)SEMD_MAX_EXPR);
        return 0;
    }
    if (!utf8_valid(a->val, a->len)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s is not valid UTF-8",
                    name);
        return 0;
    }
    if (semd_expr_parse(e, a->val, a->len, &err) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s: %s", name, err.msg);
        return 0;
    }
    if (e->n_terms == 0) {
        semd_expr_release(e);
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s has no terms", name);
        return 0;
    }
    return 1;
}

static json_t *
neighbors_result(const struct semd_snapshot *snap, const struct semd_term *t,
                 size_t n, const struct semd_term_info *info,
                 const struct semd_search *s, const struct semd_hit *hits,
                 uint32_t n_hits)
{
    const struct semd_model *m = semd_snapshot_model(snap);
    const struct semd_index *ix = semd_snapshot_index(snap);
    return json_pack("{s:o, s:i, s:s, s:b, s:o}", "terms",
                     terms_json(m, t, n, info), "k", (int)s->k, "index",
                     semd_index_factory(ix), "exact",
                     semd_index_is_exact(ix) != 0, "neighbors",
                     hits_json(m, hits, n_hits, "similarity"));
}

/* ------------------------------------------------------------ neighbours */

/* What GET /v1/neighbors keeps until its reply is built. */
struct nb_scratch {
    struct semd_expr expr;
    int have_expr;
    char *key;              /* the result cache's key, or NULL */
    size_t klen;
    struct semd_term one;
    struct semd_term_info info[SEMD_MAX_TERMS];
    struct semd_hit hits[]; /* k */
};

static void
nb_free(void *p)
{
    struct nb_scratch *x = p;
    if (x && x->have_expr)
        semd_expr_release(&x->expr);
    if (x)
        free(x->key);
    free(x);
}

static void
neighbors_reply(struct api_req *rq, struct api_reply *rp,
                const struct semd_nquery *q)
{
    if (q->rc) {
        reply_semd(rp, q->rc, &q->err, missing(q->terms, q->n_terms, q->info));
        return;
    }
    json_t *res = neighbors_result(rq->snap, q->terms, q->n_terms, q->info,
                                   &q->search, q->hits, q->n_hits);
    struct nb_scratch *x = rq->scratch;
    if (res && x && x->key) {
        /* serialised once: for the cache and for this reply */
        char *text = json_dumps(res, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                         JSON_REAL_PRECISION(9));
        if (text) {
            size_t n = strlen(text);
            cache_put(rq->srv->cache, semd_snapshot_version(rq->snap),
                      x->key, x->klen, text, n);
            json_decref(res);
            rp->status = 200;
            rp->result_text = text;
            rp->result_len = n;
            return;
        }
    }
    reply_ok(rp, 200, res);
}

/* The cache key of a GET /v1/neighbors: the parsed parameters, so that
 * spellings of the same request (k=10, k=010) share one entry. */
static char *
neighbors_key(const char *kind, const struct api_arg *a,
              const struct semd_search *s, size_t *klen)
{
    size_t n = a->len + 160;
    char *k = malloc(n);
    if (!k)
        return NULL;
    int h = snprintf(k, n, "nb|%s|%u|%llu|%d|%.9g|%u|%u|%d|", kind, s->k,
                     (unsigned long long)s->restrict_rows,
                     s->use_min_similarity,
                     s->use_min_similarity ? (double)s->min_similarity : 0.0,
                     s->ef_search, s->nprobe, s->rerank);
    if (h < 0 || (size_t)h >= n - a->len) {
        free(k);
        return NULL;
    }
    memcpy(k + h, a->val, a->len);
    *klen = (size_t)h + a->len;
    return k;
}

static void
neighbors_done(struct batch_job *j)
{
    neighbors_reply(j->rq, j->rp, &j->q);
}

void
api_neighbors_get(struct api_req *rq, struct api_reply *rp)
{
    const struct api_arg *w = api_arg(rq, "word"), *q = api_arg(rq, "q");
    if (!w == !q) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "give exactly one of word= (a word) and q= (an "
                    "expression such as king-man+woman)");
        return;
    }
    struct semd_search s;
    if (!search_args(rq, &s, rp) || !approx_args(rq, &s, rp))
        return;
    struct nb_scratch *x = calloc(1, sizeof *x + s.k * sizeof x->hits[0]);
    if (!x) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for %u hits", s.k);
        return;
    }
    rq->scratch = x;
    rq->scratch_free = nb_free;
    const struct semd_term *terms;
    size_t n;
    if (w && !word_ok("word", w->val, w->len, rp))
        return;
    if (rq->srv->cache &&
        (x->key = neighbors_key(w ? "w" : "q", w ? w : q, &s, &x->klen))) {
        size_t len;
        char *hit = cache_get(rq->srv->cache,
                              semd_snapshot_version(rq->snap), x->key,
                              x->klen, &len);
        if (hit) {
            rp->status = 200;
            rp->result_text = hit;
            rp->result_len = len;
            return;
        }
    }
    if (w) {
        x->one = (struct semd_term){w->val, w->len, NULL, 1.0f};
        terms = &x->one;
        n = 1;
    } else {
        if (!expr_arg(rq, q, "q", &x->expr, rp))
            return;
        x->have_expr = 1;
        terms = x->expr.terms;
        n = x->expr.n_terms;
    }
    struct batch_job *j = rq->job;
    j->q = (struct semd_nquery){.terms = terms, .n_terms = n, .search = s,
                                .hits = x->hits, .info = x->info};
    const struct semd_index *ix = semd_snapshot_index(rq->snap);
    if (rq->srv->batcher && semd_index_is_exact(ix)) {
        j->index = ix;
        j->done = neighbors_done;
        j->rq = rq;
        j->rp = rp;
        rp->deferred = 1;
        return;
    }
    j->q.rc = semd_neighbors(ix, terms, n, &s, 0, x->hits, &j->q.n_hits,
                             x->info, &j->q.err);
    neighbors_reply(rq, rp, &j->q);
}

/* One query of POST /v1/neighbors, with the memory it needs. */
struct bq {
    struct semd_term terms[SEMD_MAX_TERMS];
    struct semd_term_info info[SEMD_MAX_TERMS];
    struct semd_expr expr;
    int have_expr;
    float *vec;
    struct semd_hit *hits;
};

static int
batch_query(struct api_req *rq, json_t *qo, size_t i, struct bq *b,
            struct semd_nquery *nq, struct api_reply *rp)
{
    const char *word = NULL, *expr = NULL;
    json_t *vector = NULL, *pos = NULL, *neg = NULL;
    json_int_t k = DEFAULT_K, restrict_rows = 0, ef = 0, np = 0;
    double min_sim = NAN; /* stays NaN when absent */
    int keep = 0, rerank = 0;
    json_error_t je;
    char where[48];
    snprintf(where, sizeof where, "queries[%zu]: ", i);
    if (json_unpack_ex(qo, &je, JSON_STRICT,
                       "{s?s, s?s, s?o, s?o, s?o, s?I, s?I, s?F, s?b, s?I, "
                       "s?I, s?b}",
                       "word", &word, "expr", &expr, "vector", &vector,
                       "positive", &pos, "negative", &neg, "k", &k,
                       "restrict", &restrict_rows, "min_similarity", &min_sim,
                       "keep_inputs", &keep, "ef_search", &ef, "nprobe", &np,
                       "rerank", &rerank) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s%s", where, je.text);
        return 0;
    }
    if (json_object_get(qo, "ef_search") &&
        (ef < 1 || ef > (json_int_t)MAX_EF_SEARCH)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%sef_search must be in 1..%u, got %lld", where,
                    MAX_EF_SEARCH, (long long)ef);
        return 0;
    }
    if (json_object_get(qo, "nprobe") &&
        (np < 1 || np > (json_int_t)MAX_NPROBE)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%snprobe must be in 1..%u, got %lld", where,
                    MAX_NPROBE, (long long)np);
        return 0;
    }
    int kinds = !!word + !!expr + !!vector + !!(pos || neg);
    if (kinds != 1) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%sgive exactly one of word, expr, vector or "
                    "positive/negative", where);
        return 0;
    }
    if (!search_json(rq, where, k, restrict_rows, min_sim, !isnan(min_sim),
                     &nq->search, rp))
        return 0;
    nq->search.ef_search = (uint32_t)ef;
    nq->search.nprobe = (uint32_t)np;
    nq->search.rerank = rerank;
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    size_t n = 0;
    char field[64];
    if (word) {
        size_t len = strlen(word);
        if (len == 0 || len > SEMD_MAX_WORD) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "%sword must be 1..%d bytes", where, SEMD_MAX_WORD);
            return 0;
        }
        b->terms[0] = (struct semd_term){word, len, NULL, 1.0f};
        n = 1;
    } else if (expr) {
        struct api_arg a = {"expr", expr, strlen(expr)};
        snprintf(field, sizeof field, "queries[%zu].expr", i);
        if (!expr_arg(rq, &a, field, &b->expr, rp))
            return 0;
        b->have_expr = 1;
        n = b->expr.n_terms;
        if (n > SEMD_MAX_TERMS)
            n = SEMD_MAX_TERMS;
        memcpy(b->terms, b->expr.terms, n * sizeof b->terms[0]);
    } else if (vector) {
        uint32_t d = semd_model_dims(m);
        b->vec = malloc(d * sizeof *b->vec);
        snprintf(field, sizeof field, "queries[%zu].vector", i);
        if (!b->vec || !json_vector(vector, field, d, b->vec, rp))
            return 0;
        b->terms[0] = (struct semd_term){NULL, 0, b->vec, 1.0f};
        n = 1;
    } else {
        snprintf(field, sizeof field, "queries[%zu].positive", i);
        if (!word_terms(pos, field, 1.0f, b->terms, &n, SEMD_MAX_TERMS, rp))
            return 0;
        snprintf(field, sizeof field, "queries[%zu].negative", i);
        if (!word_terms(neg, field, -1.0f, b->terms, &n, SEMD_MAX_TERMS, rp))
            return 0;
        if (n == 0) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "%spositive and negative are both empty", where);
            return 0;
        }
    }
    b->hits = malloc(nq->search.k * sizeof *b->hits);
    if (!b->hits) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for hits");
        return 0;
    }
    nq->terms = b->terms;
    nq->n_terms = n;
    nq->keep_inputs = keep;
    nq->hits = b->hits;
    nq->info = b->info;
    return 1;
}

void
api_neighbors_post(struct api_req *rq, struct api_reply *rp)
{
    json_t *queries;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s:o}", "queries",
                       &queries) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return;
    }
    size_t nq = json_is_array(queries) ? json_array_size(queries) : 0;
    if (!json_is_array(queries) || nq == 0 ||
        nq > rq->srv->cfg->max_batch) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "queries must be an array of 1..%u query objects",
                    rq->srv->cfg->max_batch);
        return;
    }
    struct bq *b = calloc(nq, sizeof *b);
    struct semd_nquery *q = calloc(nq, sizeof *q);
    if (!b || !q) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for %zu queries",
                    nq);
        goto out;
    }
    for (size_t i = 0; i < nq; i++) {
        json_t *qo = json_array_get(queries, i);
        if (!json_is_object(qo)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "queries[%zu] must be an object", i);
            goto out;
        }
        if (!batch_query(rq, qo, i, &b[i], &q[i], rp))
            goto out;
    }
    const struct semd_index *ix = semd_snapshot_index(rq->snap);
    struct semd_err err = {0};
    int rc = semd_neighbors_batch(ix, q, nq, &err);
    if (rc) {
        reply_semd(rp, rc, &err, NULL);
        goto out;
    }
    json_t *results = json_array();
    for (size_t i = 0; i < nq; i++) {
        if (q[i].rc) {
            struct api_reply one = {0};
            reply_semd(&one, q[i].rc, &q[i].err,
                       missing(q[i].terms, q[i].n_terms, q[i].info));
            json_array_append_new(results,
                                  json_pack("{s:O}", "error", one.error));
            reply_release(&one);
        } else {
            json_array_append_new(
                results, neighbors_result(rq->snap, q[i].terms,
                                          q[i].n_terms, q[i].info,
                                          &q[i].search, q[i].hits,
                                          q[i].n_hits));
        }
    }
    reply_ok(rp, 200, json_pack("{s:o}", "results", results));
out:
    for (size_t i = 0; b && i < nq; i++) {
        if (b[i].have_expr)
            semd_expr_release(&b[i].expr);
        free(b[i].vec);
        free(b[i].hits);
    }
    free(b);
    free(q);
}

/* ------------------------------------------------------------ similarity */

void
api_similarity_get(struct api_req *rq, struct api_reply *rp)
{
    const struct api_arg *a = api_arg(rq, "a"), *b = api_arg(rq, "b");
    if (!a || !b) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "give both a= and b=");
        return;
    }
    if (!word_ok("a", a->val, a->len, rp) || !word_ok("b", b->val, b->len,
                                                       rp))
        return;
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    struct semd_term t[2] = {{a->val, a->len, NULL, 1.0f},
                             {b->val, b->len, NULL, 1.0f}};
    struct semd_term_info info[2] = {{0}};
    struct semd_err err = {0};
    float sim;
    int rc = semd_similarity(m, &t[0], &t[1], &sim, info, &err);
    if (rc) {
        reply_semd(rp, rc, &err, missing(t, 2, info));
        return;
    }
    reply_ok(rp, 200, json_pack("{s:s%, s:s%, s:f, s:o}", "a", a->val, a->len,
                                "b", b->val, b->len, "similarity",
                                (double)sim, "terms",
                                terms_json(m, t, 2, info)));
}

static void
similarity_pairs(struct api_req *rq, struct api_reply *rp, json_t *pairs)
{
    size_t n = json_is_array(pairs) ? json_array_size(pairs) : 0;
    if (!json_is_array(pairs) || n == 0 || n > rq->srv->cfg->max_batch) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "pairs must be an array of 1..%u [a, b] pairs",
                    rq->srv->cfg->max_batch);
        return;
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    json_t *out = json_array(), *miss = NULL;
    struct semd_err first = {0};
    int first_rc = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(pairs, i);
        const char *a, *b;
        size_t al, bl;
        json_error_t je;
        if (json_unpack_ex(p, &je, JSON_STRICT, "[s%s%]", &a, &al, &b,
                           &bl) != 0 || !al || !bl || al > SEMD_MAX_WORD ||
            bl > SEMD_MAX_WORD) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "pairs[%zu] must be [a, b] with two words", i);
            json_decref(out);
            json_decref(miss);
            return;
        }
        struct semd_term t[2] = {{a, al, NULL, 1.0f}, {b, bl, NULL, 1.0f}};
        struct semd_term_info info[2] = {{0}};
        struct semd_err err = {0};
        float sim;
        int rc = semd_similarity(m, &t[0], &t[1], &sim, info, &err);
        if (rc == SEMD_ENOWORD) {
            json_t *mw = missing(t, 2, info);
            if (!miss)
                miss = json_array();
            json_array_extend(miss, mw);
            json_decref(mw);
            if (!first_rc)
                first_rc = rc, first = err;
            continue;
        }
        if (rc) {
            reply_semd(rp, rc, &err, NULL);
            json_decref(out);
            json_decref(miss);
            return;
        }
        json_array_append_new(out, json_pack("{s:s%, s:s%, s:f, s:o}", "a", a,
                                             al, "b", b, bl, "similarity",
                                             (double)sim, "terms",
                                             terms_json(m, t, 2, info)));
    }
    if (miss) {
        json_decref(out);
        reply_error(rp, ERR_UNKNOWN_WORD, miss,
                    "%zu word(s) not in the vocabulary, first: %s",
                    json_array_size(miss), first.msg);
        return;
    }
    reply_ok(rp, 200, json_pack("{s:o}", "pairs", out));
}

void
api_similarity_post(struct api_req *rq, struct api_reply *rp)
{
    json_t *pairs = NULL, *a = NULL, *b = NULL;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s?o, s?o, s?o}", "pairs",
                       &pairs, "a", &a, "b", &b) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return;
    }
    if (pairs && !a && !b) {
        similarity_pairs(rq, rp, pairs);
        return;
    }
    if (pairs || !a || !b) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "give either pairs ([[a, b], ...]) or two word sets a "
                    "and b");
        return;
    }
    struct semd_term ta[SEMD_MAX_TERMS], tb[SEMD_MAX_TERMS];
    struct semd_term_info info[2 * SEMD_MAX_TERMS] = {{0}};
    size_t na = 0, nb = 0;
    if (!word_terms(a, "a", 1.0f, ta, &na, SEMD_MAX_TERMS, rp) ||
        !word_terms(b, "b", 1.0f, tb, &nb, SEMD_MAX_TERMS, rp))
        return;
    if (!na || !nb) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "a and b must each hold at least one word");
        return;
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    struct semd_err err = {0};
    float sim;
    int rc = semd_n_similarity(m, ta, na, tb, nb, &sim, info, &err);
    if (rc) {
        json_t *ma = missing(ta, na, info), *mb = missing(tb, nb, info + na);
        if (ma && mb)
            json_array_extend(ma, mb);
        json_decref(ma ? mb : NULL);
        reply_semd(rp, rc, &err, ma ? ma : mb);
        return;
    }
    reply_ok(rp, 200, json_pack("{s:f, s:o, s:o}", "similarity", (double)sim,
                                "a", terms_json(m, ta, na, info), "b",
                                terms_json(m, tb, nb, info + na)));
}

/* --------------------------------------------------------------- analogy */

static json_t *
explain_json(const struct semd_model *m, const struct semd_term *t, size_t n,
             const struct semd_explain *e, int method)
{
    json_t *tc = json_array();
    for (size_t i = 0; i < n && i < SEMD_MAX_TERMS; i++)
        json_array_append_new(
            tc, json_pack("{s:s%, s:f, s:f}", "word", t[i].word ? t[i].word
                                                                : "",
                          t[i].word ? t[i].len : 0, "weight",
                          (double)t[i].weight, "cos",
                          (double)e->term_cos[i]));
    json_t *o = json_pack("{s:o, s:I, s:f, s:b}", "term_cos", tc,
                          "rank_with_inputs",
                          (json_int_t)e->rank_with_inputs, "margin",
                          (double)e->margin, "methods_agree",
                          e->methods_agree != 0);
    if (e->other_row < semd_model_rows(m)) {
        json_t *other = json_pack(
            "{s:s, s:s, s:f}", "method",
            method == SEMD_3COSADD ? "3cosmul" : "3cosadd", "word",
            semd_model_word(m, e->other_row, NULL), "score",
            (double)e->other_score);
        tokens_row_fields(m, e->other_row, other);
        json_object_set_new(o, "other_method", other);
    }
    return o;
}

static void
analogy_run(struct api_req *rq, struct api_reply *rp,
            const struct semd_term *t, size_t n, const char *method,
            int explain, const struct semd_search *s)
{
    int methods[2], nm = 0;
    if (!method || !strcmp(method, "3cosadd"))
        methods[nm++] = SEMD_3COSADD;
    else if (!strcmp(method, "3cosmul"))
        methods[nm++] = SEMD_3COSMUL;
    else if (!strcmp(method, "both"))
        methods[nm++] = SEMD_3COSADD, methods[nm++] = SEMD_3COSMUL;
    else {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "method must be 3cosadd, 3cosmul or both, got '%.40s'",
                    utf8_valid(method, strlen(method) < 40 ? strlen(method)
                                                           : 40)
                        ? method : "?");
        return;
    }
    const struct semd_index *ix = semd_snapshot_index(rq->snap);
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    struct semd_hit *hits = malloc(s->k * sizeof *hits);
    struct semd_term_info info[SEMD_MAX_TERMS] = {{0}};
    if (!hits) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for %u hits",
                    s->k);
        return;
    }
    json_t *results = json_array(), *answer = NULL;
    for (int i = 0; i < nm; i++) {
        struct semd_explain e;
        struct semd_err err = {0};
        uint32_t nh = 0;
        int rc = semd_analogy(ix, t, n, methods[i], s, hits, &nh,
                              explain ? &e : NULL, info, &err);
        if (rc) {
            reply_semd(rp, rc, &err, missing(t, n, info));
            json_decref(results);
            free(hits);
            return;
        }
        const char *name = methods[i] == SEMD_3COSADD ? "3cosadd" : "3cosmul";
        json_t *r = json_pack("{s:s, s:o}", "method", name, "answers",
                              hits_json(m, hits, nh, "score"));
        if (explain && nh)
            json_object_set_new(r, "explain",
                                explain_json(m, t, n, &e, methods[i]));
        if (!answer && nh)
            answer = json_string(semd_model_word(m, hits[0].row, NULL));
        json_array_append_new(results, r);
    }
    free(hits);
    reply_ok(rp, 200, json_pack("{s:o, s:o, s:o}", "answer",
                                answer ? answer : json_null(), "terms",
                                terms_json(m, t, n, info), "results",
                                results));
}

void
api_analogy_get(struct api_req *rq, struct api_reply *rp)
{
    const struct api_arg *q = api_arg(rq, "q"), *method = api_arg(rq, "method");
    if (!q) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "give q=, an expression such as king-man+woman");
        return;
    }
    struct semd_search s;
    int explain;
    if (!search_args(rq, &s, rp) || !arg_bool(rq, "explain", &explain, rp))
        return;
    struct semd_expr e;
    if (!expr_arg(rq, q, "q", &e, rp))
        return;
    analogy_run(rq, rp, e.terms, e.n_terms, method ? method->val : NULL,
                explain, &s);
    semd_expr_release(&e);
}

void
api_analogy_post(struct api_req *rq, struct api_reply *rp)
{
    json_t *pos = NULL, *neg = NULL;
    const char *a = NULL, *b = NULL, *c = NULL, *method = NULL;
    json_int_t k = DEFAULT_K, restrict_rows = 0;
    int explain = 0;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT,
                       "{s?o, s?o, s?s, s?s, s?s, s?I, s?I, s?s, s?b}",
                       "positive", &pos, "negative", &neg, "a", &a, "b", &b,
                       "c", &c, "k", &k, "restrict", &restrict_rows,
                       "method", &method, "explain", &explain) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return;
    }
    struct semd_search s;
    if (!search_json(rq, "", k, restrict_rows, 0, 0, &s, rp))
        return;
    struct semd_term t[SEMD_MAX_TERMS];
    size_t n = 0;
    if (a || b || c) {
        if (!a || !b || !c || pos || neg) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "give a, b and c (a is to b as c is to ?), or "
                        "positive and negative");
            return;
        }
        /* a : b :: c : ?  is  b - a + c */
        const char *w[3] = {b, a, c};
        float wt[3] = {1.0f, -1.0f, 1.0f};
        for (int i = 0; i < 3; i++) {
            size_t len = strlen(w[i]);
            if (!len || len > SEMD_MAX_WORD) {
                reply_error(rp, ERR_BAD_REQUEST, NULL,
                            "a, b and c must be words of 1..%d bytes",
                            SEMD_MAX_WORD);
                return;
            }
            t[n++] = (struct semd_term){w[i], len, NULL, wt[i]};
        }
    } else {
        if (!word_terms(pos, "positive", 1.0f, t, &n, SEMD_MAX_TERMS, rp) ||
            !word_terms(neg, "negative", -1.0f, t, &n, SEMD_MAX_TERMS, rp))
            return;
        if (!pos || !json_array_size(pos)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "positive must hold at least one word");
            return;
        }
    }
    analogy_run(rq, rp, t, n, method, explain, &s);
}

/* ----------------------------------------------------------- odd one out */

void
api_odd_one_out(struct api_req *rq, struct api_reply *rp)
{
    json_t *words;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s:o}", "words",
                       &words) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return;
    }
    struct semd_term t[SEMD_MAX_TERMS];
    struct semd_term_info info[SEMD_MAX_TERMS] = {{0}};
    float sims[SEMD_MAX_TERMS];
    size_t n = 0;
    if (!word_terms(words, "words", 1.0f, t, &n, SEMD_MAX_TERMS, rp))
        return;
    if (n < 3) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "words must hold 3 to %d words, got %zu", SEMD_MAX_TERMS,
                    n);
        return;
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    struct semd_err err = {0};
    size_t odd;
    int rc = semd_odd_one_out(m, t, n, &odd, sims, info, &err);
    if (rc) {
        reply_semd(rp, rc, &err, missing(t, n, info));
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s%, s:f}", "word", t[i].word, t[i].len,
                              "similarity_to_mean", (double)sims[i]);
        /* a word that resolved to one token shows it; the mean of
         * several tokens has no one id (terms says which) */
        if (info[i].row < semd_model_rows(m))
            tokens_row_fields(m, info[i].row, o);
        json_array_append_new(list, o);
    }
    reply_ok(rp, 200, json_pack("{s:s%, s:i, s:o, s:o}", "odd", t[odd].word,
                                t[odd].len, "index", (int)odd, "words", list,
                                "terms", terms_json(m, t, n, info)));
}

/* --------------------------------------------------------------- vectors */

static json_t *
vector_json(const struct semd_model *m, const char *word, size_t len,
            const struct semd_term_info *info, int normalize)
{
    uint32_t d = semd_model_dims(m);
    const float *row = semd_model_row(m, info->row);
    float norm = semd_model_norms(m)[info->row];
    float scale = normalize && norm > 0 ? 1.0f / norm : 1.0f;
    json_t *v = json_array();
    for (uint32_t i = 0; i < d; i++)
        json_array_append_new(v, json_real((double)(row[i] * scale)));
    json_t *o = json_pack("{s:s%, s:s, s:s, s:I, s:f, s:b, s:o}", "word",
                          word, len, "resolved",
                          semd_model_word(m, info->row, NULL), "provenance",
                          semd_prov_name(info->prov), "row",
                          (json_int_t)info->row, "norm", (double)norm,
                          "normalized", normalize != 0, "vector", v);
    tokens_row_fields(m, info->row, o);
    return o;
}

void
api_vector_get(struct api_req *rq, struct api_reply *rp)
{
    int normalize;
    size_t len = strlen(rq->param);
    if (!word_ok("the word in the path", rq->param, len, rp) ||
        !arg_bool(rq, "normalize", &normalize, rp))
        return;
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    struct semd_term_info info;
    if (semd_resolve(m, rq->param, len, &info) != 0) {
        reply_error(rp, ERR_UNKNOWN_WORD, json_pack("[s%]", rq->param, len),
                    "word '%s' not in the vocabulary", rq->param);
        return;
    }
    reply_ok(rp, 200, vector_json(m, rq->param, len, &info, normalize));
}

void
api_vectors_post(struct api_req *rq, struct api_reply *rp)
{
    json_t *words;
    int normalize = 0;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s:o, s?b}", "words",
                       &words, "normalize", &normalize) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return;
    }
    size_t n = json_is_array(words) ? json_array_size(words) : 0;
    if (!n || n > rq->srv->cfg->max_batch) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "words must be an array of 1..%u words",
                    rq->srv->cfg->max_batch);
        return;
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    json_t *out = json_array(), *miss = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *w = json_array_get(words, i);
        size_t len = json_string_length(w);
        if (!json_is_string(w) || !len || len > SEMD_MAX_WORD) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "words[%zu] must be a word of 1..%d bytes", i,
                        SEMD_MAX_WORD);
            json_decref(out);
            json_decref(miss);
            return;
        }
        struct semd_term_info info;
        if (semd_resolve(m, json_string_value(w), len, &info) != 0) {
            if (!miss)
                miss = json_array();
            json_array_append(miss, w);
            continue;
        }
        json_array_append_new(out, vector_json(m, json_string_value(w), len,
                                               &info, normalize));
    }
    if (miss) {
        json_decref(out);
        reply_error(rp, ERR_UNKNOWN_WORD, miss,
                    "%zu word(s) not in the vocabulary",
                    json_array_size(miss));
        return;
    }
    reply_ok(rp, 200, json_pack("{s:i, s:o}", "dims",
                                (int)semd_model_dims(m), "vectors", out));
}

/* ----------------------------------------------------------------- words */

void
api_words(struct api_req *rq, struct api_reply *rp)
{
    const struct api_arg *p = api_arg(rq, "prefix");
    uint64_t limit;
    if (!arg_uint(rq, "limit", 1, rq->srv->cfg->max_k, 10, &limit, rp))
        return;
    const char *prefix = p ? p->val : "";
    size_t len = p ? p->len : 0;
    if (len > SEMD_MAX_WORD || !utf8_valid(prefix, len)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "prefix must be valid UTF-8 of at most %d bytes",
                    SEMD_MAX_WORD);
        return;
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    uint64_t *rows = malloc(limit * sizeof *rows);
    size_t n = 0;
    struct semd_err err = {0};
    if (!rows) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory");
        return;
    }
    int rc = semd_model_prefix(m, prefix, len, rows, limit, &n);
    if (rc) {
        free(rows);
        reply_semd(rp, rc, &err, NULL);
        return;
    }
    /* the prefix matches the vocabulary key: on a tokenizer model
     * "\u0120ki" lists the tokens " ki..." */
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s, s:I, s:I}", "word",
                              semd_model_word(m, rows[i], NULL), "row",
                              (json_int_t)rows[i], "count",
                              (json_int_t)semd_model_count(m, rows[i]));
        tokens_row_fields(m, rows[i], o);
        json_array_append_new(list, o);
    }
    free(rows);
    reply_ok(rp, 200, json_pack("{s:s%, s:o}", "prefix", prefix, len, "words",
                                list));
}
