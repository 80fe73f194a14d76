/*
 * api_train.c - the training endpoints: POST /v1/train (text into the
 * journal, 202 once it is on disk), GET /v1/train (the trainer's figures)
 * and GET /v1/words/{word}/drift (how a word moved between two retained
 * versions).
 *
 * Called from request threads, concurrently. Posting only appends to the
 * journal; training happens on the trainer thread (server/trainer.c).
 */
#include "serve.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRIFT_K 10

/* The text of a JSON body: {"text": "..."} or {"documents": [...]}, the
 * documents joined by line breaks (each ends its sentence). Returns a
 * malloc'd string, or NULL with the reply filled. */
static char *
json_text(struct api_req *rq, struct api_reply *rp, size_t *len)
{
    json_t *text = NULL, *docs = NULL;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s?o, s?o}", "text",
                       &text, "documents", &docs) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return NULL;
    }
    if (!text == !docs) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "give either \"text\" or \"documents\"");
        return NULL;
    }
    if (text) {
        if (!json_is_string(text)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "\"text\" must be a string");
            return NULL;
        }
        *len = json_string_length(text);
        char *s = malloc(*len + 1);
        if (s)
            memcpy(s, json_string_value(text), *len + 1);
        else
            reply_error(rp, ERR_INTERNAL, NULL, "out of memory");
        return s;
    }
    if (!json_is_array(docs) || json_array_size(docs) == 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "\"documents\" must be a non-empty array of strings");
        return NULL;
    }
    size_t n = 0, i;
    json_t *d;
    json_array_foreach(docs, i, d) {
        if (!json_is_string(d)) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "documents[%zu] is not a string", i);
            return NULL;
        }
        n += json_string_length(d) + 1;
    }
    char *s = malloc(n + 1);
    if (!s) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    size_t o = 0;
    json_array_foreach(docs, i, d) {
        size_t l = json_string_length(d);
        memcpy(s + o, json_string_value(d), l);
        o += l;
        s[o++] = '\n';
    }
    s[o] = 0;
    *len = o;
    return s;
}

static int
blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return 0;
    return 1;
}

void
api_train_post(struct api_req *rq, struct api_reply *rp)
{
    struct online *o = rq->srv->online;
    if (!o) {
        reply_error(rp, ERR_FORBIDDEN, NULL,
                    "training is off: start the server with --train "
                    "--data-dir DIR");
        return;
    }
    char *owned = NULL;
    const char *text;
    size_t len;
    if (rq->json) {
        if (!(owned = json_text(rq, rp, &len)))
            return;
        text = owned;
    } else {
        text = rq->body ? rq->body : "";
        len = rq->body ? rq->body_len : 0;
    }
    if (blank(text, len)) {
        free(owned);
        reply_error(rp, ERR_BAD_REQUEST, NULL, "no text to train on");
        return;
    }
    uint64_t seq = 0, queued = 0;
    unsigned retry = 1;
    struct semd_err err = {0};
    int rc = online_post(o, text, len, &seq, &queued, &retry, &err);
    free(owned);
    if (rc == 1) {
        static const char *const secs[] = {"1", "2", "3", "4", "5", "10",
                                           "20", "30", "60"};
        static const unsigned vals[] = {1, 2, 3, 4, 5, 10, 20, 30, 60};
        size_t k = 0;
        while (k + 1 < sizeof vals / sizeof vals[0] && vals[k] < retry)
            k++;
        reply_error(rp, ERR_OVERLOADED, NULL,
                    "%" PRIu64 " posts wait to be trained, over the "
                    "backlog bound; retry after %s s",
                    queued, secs[k]);
        rp->headers[0] = "Retry-After";
        rp->headers[1] = secs[k];
        return;
    }
    if (rc == SEMD_EBUSY) {
        reply_error(rp, ERR_NOT_READY, NULL, "%s", err.msg);
        return;
    }
    if (rc) {
        reply_semd(rp, rc, &err, NULL);
        return;
    }
    reply_ok(rp, 202, json_pack("{s:I, s:I}", "seq", (json_int_t)seq,
                                "queued_records", (json_int_t)queued));
}

void
api_train_get(struct api_req *rq, struct api_reply *rp)
{
    json_t *r = online_status(rq->srv->online);
    if (!r) {
        reply_error(rp, ERR_INTERNAL, NULL, "cannot build the train reply");
        return;
    }
    reply_ok(rp, 200, r);
}

/* A version argument: 0 and *v, or -1 with the reply filled. */
static int
version_arg(struct api_req *rq, struct api_reply *rp, const char *key,
            uint64_t def, uint64_t *v)
{
    const struct api_arg *a = api_arg(rq, key);
    if (!a) {
        *v = def;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(a->val, &end, 10);
    if (errno || end == a->val || *end || a->val[0] == '-' || x == 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "%s '%s' is not a version number", key, a->val);
        return -1;
    }
    *v = x;
    return 0;
}

/* The snapshot of version v: the request's own or a retained one. */
static struct semd_snapshot *
find_version(struct api_req *rq, uint64_t v)
{
    if (semd_snapshot_version(rq->snap) == v)
        return semd_snapshot_acquire(rq->snap);
    return online_version(rq->srv->online, v);
}

/* The word's DRIFT_K nearest neighbours in s, into words (n returned). */
static int
neighbours(const struct semd_snapshot *s, uint64_t row, const char **words,
           uint32_t *n, struct semd_err *err)
{
    const struct semd_model *m = semd_snapshot_model(s);
    struct semd_search q = {0};
    q.k = DRIFT_K;
    q.exclude = &row;
    q.n_exclude = 1;
    struct semd_hit hits[DRIFT_K];
    int rc = semd_index_search(semd_snapshot_index(s), semd_model_row(m, row),
                               &q, hits, n, err);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < *n; i++)
        words[i] = semd_model_word(m, hits[i].row, NULL);
    return 0;
}

static int
listed(const char *w, const char *const *ws, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(w, ws[i]))
            return 1;
    return 0;
}

static json_t *
word_list(const char *const *ws, uint32_t n, const char *const *other,
          uint32_t n_other, int only_new)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < n; i++)
        if (!only_new || !listed(ws[i], other, n_other))
            json_array_append_new(a, json_string(ws[i]));
    return a;
}

void
api_drift(struct api_req *rq, struct api_reply *rp)
{
    /* the parameter is "{word}/drift": the route matched the suffix */
    size_t plen = strlen(rq->param);
    const char *suffix = "/drift";
    if (plen <= strlen(suffix)) {
        reply_error(rp, ERR_NOT_FOUND, NULL, "no route for '%s'", rq->param);
        return;
    }
    size_t wlen = plen - strlen(suffix);
    uint64_t cur = semd_snapshot_version(rq->snap);
    uint64_t oldest = online_oldest_version(rq->srv->online);
    uint64_t from, to;
    if (version_arg(rq, rp, "from", oldest ? oldest : cur, &from) ||
        version_arg(rq, rp, "to", cur, &to))
        return;
    struct semd_snapshot *a = find_version(rq, from);
    struct semd_snapshot *b = find_version(rq, to);
    if (!a || !b) {
        reply_error(rp, ERR_NOT_FOUND, NULL,
                    "version %" PRIu64 " is not retained (retained: %" PRIu64
                    " to %" PRIu64 ")", a ? to : from,
                    oldest ? oldest : cur, cur);
        goto out;
    }
    const struct semd_model *ma = semd_snapshot_model(a);
    const struct semd_model *mb = semd_snapshot_model(b);
    uint64_t ra, rb;
    struct semd_err err = {0};
    int rc = semd_model_lookup(ma, rq->param, wlen, &ra);
    if (rc == 0)
        rc = semd_model_lookup(mb, rq->param, wlen, &rb);
    if (rc) {
        json_t *w = json_array();
        json_array_append_new(w, json_stringn(rq->param, wlen));
        reply_error(rp, ERR_UNKNOWN_WORD, w, "'%.*s' is not in version "
                    "%" PRIu64, (int)wlen, rq->param,
                    semd_model_lookup(ma, rq->param, wlen, &ra) ? from : to);
        goto out;
    }
    uint32_t dims = semd_model_dims(ma);
    const float *va = semd_model_row(ma, ra), *vb = semd_model_row(mb, rb);
    double dot = 0, na = 0, nb = 0;
    for (uint32_t i = 0; i < dims; i++) {
        dot += (double)va[i] * vb[i];
        na += (double)va[i] * va[i];
        nb += (double)vb[i] * vb[i];
    }
    double cosine = na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
    const char *wa[DRIFT_K], *wb[DRIFT_K];
    uint32_t n_a = 0, n_b = 0;
    if ((rc = neighbours(a, ra, wa, &n_a, &err)) != 0 ||
        (rc = neighbours(b, rb, wb, &n_b, &err)) != 0) {
        reply_semd(rp, rc, &err, NULL);
        goto out;
    }
    json_t *r = json_pack(
        "{s:s%, s:I, s:I, s:f, s:o, s:o, s:o, s:o}", "word", rq->param,
        wlen, "from", (json_int_t)from, "to", (json_int_t)to, "cosine",
        cosine, "neighbors_from", word_list(wa, n_a, NULL, 0, 0),
        "neighbors_to", word_list(wb, n_b, NULL, 0, 0), "entered",
        word_list(wb, n_b, wa, n_a, 1), "left",
        word_list(wa, n_a, wb, n_b, 1));
    if (!r)
        reply_error(rp, ERR_INTERNAL, NULL, "cannot build the drift reply");
    else
        reply_ok(rp, 200, r);
out:
    semd_snapshot_release(a);
    semd_snapshot_release(b);
}
