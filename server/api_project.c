/*
 * api_project.c - POST /v1/project: a set of words, or the neighbourhood
 * of one word, laid out in two dimensions by PCA (semd_project_pca2) for
 * the page's scatter plot. The unit vectors are projected, so distances in
 * the picture follow cosine similarity, the measure every other endpoint
 * ranks by.
 *
 * Runs on request threads, concurrently; reads only the request's
 * snapshot, with its own memory freed before it returns.
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

#define PROJECT_MAX 500     /* points in one projection */
#define PROJECT_DEFAULT_K 30

static json_t *
term_prov(const struct semd_model *m, const struct semd_term *t,
          const struct semd_term_info *info)
{
    json_t *o = json_pack("{s:s%, s:f, s:s}", "word", t->word, t->len,
                          "weight", (double)t->weight, "provenance",
                          semd_prov_name(info->prov));
    if (info->row != UINT64_MAX && info->row < semd_model_rows(m)) {
        json_object_set_new(o, "resolved",
                            json_string(semd_model_word(m, info->row, NULL)));
        json_object_set_new(o, "row", json_integer((json_int_t)info->row));
    }
    return o;
}

/* The input words of a "words" request, checked. */
static size_t
read_words(json_t *arr, struct semd_term *t, struct api_reply *rp)
{
    if (!json_is_array(arr)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "words must be an array of words");
        return 0;
    }
    size_t n = json_array_size(arr);
    if (n < 3 || n > PROJECT_MAX) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "words must hold 3 to %d words, got %zu", PROJECT_MAX,
                    n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        size_t len = json_string_length(v);
        if (!json_is_string(v) || len == 0 || len > SEMD_MAX_WORD) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "words[%zu] must be a word of 1..%d bytes", i,
                        SEMD_MAX_WORD);
            return 0;
        }
        t[i] = (struct semd_term){json_string_value(v), len, NULL, 1.0f};
    }
    return n;
}

void
api_project(struct api_req *rq, struct api_reply *rp)
{
    json_t *words = NULL;
    const char *word = NULL;
    size_t word_len = 0;
    json_int_t k = PROJECT_DEFAULT_K;
    json_error_t je;
    if (json_unpack_ex(rq->json, &je, JSON_STRICT, "{s?o, s?s%, s?I}",
                       "words", &words, "word", &word, &word_len, "k",
                       &k) != 0) {
        reply_error(rp, ERR_BAD_REQUEST, NULL, "%s", je.text);
        return;
    }
    if (!words == !word) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "give exactly one of words (3 or more words) and word "
                    "(with k, its neighbourhood)");
        return;
    }
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    uint32_t d = semd_model_dims(m);
    uint64_t rows = semd_model_rows(m);
    json_int_t kmax = PROJECT_MAX - 1;
    if ((json_int_t)rq->srv->cfg->max_k < kmax)
        kmax = rq->srv->cfg->max_k;
    if (rows - 1 < (uint64_t)kmax)
        kmax = (json_int_t)rows - 1;
    if (word && (k < 2 || k > kmax)) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "k must be in 2..%lld, got %lld", (long long)kmax,
                    (long long)k);
        return;
    }
    if (words && json_object_get(rq->json, "k")) {
        reply_error(rp, ERR_BAD_REQUEST, NULL,
                    "k goes with word, not with words");
        return;
    }

    struct semd_term *t = calloc(PROJECT_MAX, sizeof *t);
    struct semd_term_info *info = calloc(PROJECT_MAX, sizeof *info);
    struct semd_hit *hits = calloc(PROJECT_MAX, sizeof *hits);
    float *x = malloc((size_t)PROJECT_MAX * d * sizeof *x);
    float *xy = malloc((size_t)PROJECT_MAX * 2 * sizeof *xy);
    json_t *prov = json_array(), *points = json_array();
    struct semd_err err = {0};
    size_t n = 0;
    if (!t || !info || !hits || !x || !xy || !prov || !points) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for a projection");
        goto out;
    }

    if (word) {
        /* the word itself, then its k nearest, each by row */
        t[0] = (struct semd_term){word, word_len, NULL, 1.0f};
        struct semd_search s = {0};
        s.k = (uint32_t)k;
        uint32_t n_hits = 0;
        int rc = semd_neighbors(semd_snapshot_index(rq->snap), t, 1, &s, 0,
                                hits, &n_hits, info, &err);
        if (rc == 0)
            rc = semd_combine(m, t, 1, x, info, &err);
        if (rc) {
            json_t *miss = NULL;
            if (info[0].prov == SEMD_PROV_MISSING)
                miss = json_pack("[s%]", word, word_len);
            reply_semd(rp, rc, &err, miss);
            goto out;
        }
        json_array_append_new(prov, term_prov(m, &t[0], &info[0]));
        const float *norms = semd_model_norms(m);
        for (uint32_t i = 0; i < n_hits; i++) {
            const float *r = semd_model_row(m, hits[i].row);
            float inv = norms[hits[i].row] > 0 ? 1.0f / norms[hits[i].row]
                                               : 0.0f;
            for (uint32_t j = 0; j < d; j++)
                x[(size_t)(i + 1) * d + j] = r[j] * inv;
        }
        n = (size_t)n_hits + 1;
        if (n < 3) {
            reply_error(rp, ERR_BAD_REQUEST, NULL,
                        "'%.*s' has %u neighbours: too few to project",
                        (int)word_len, word, n_hits);
            goto out;
        }
    } else {
        n = read_words(words, t, rp);
        if (!n)
            goto out;
        json_t *miss = NULL;
        for (size_t i = 0; i < n; i++) {
            int rc = semd_combine(m, &t[i], 1, x + i * d, &info[i], &err);
            if (rc == SEMD_ENOWORD) {
                if (!miss)
                    miss = json_array();
                json_array_append_new(miss,
                                      json_stringn(t[i].word, t[i].len));
            } else if (rc) {
                reply_semd(rp, rc, &err, NULL);
                json_decref(miss);
                goto out;
            }
            json_array_append_new(prov, term_prov(m, &t[i], &info[i]));
        }
        if (miss) {
            size_t nm = json_array_size(miss);
            reply_error(rp, ERR_UNKNOWN_WORD, miss,
                        "%zu word%s not in the vocabulary, first '%s'", nm,
                        nm == 1 ? " is" : "s are",
                        json_string_value(json_array_get(miss, 0)));
            goto out;
        }
    }

    double ratio[2];
    int rc = semd_project_pca2(x, n, d, xy, ratio, &err);
    if (rc) {
        reply_semd(rp, rc, &err, NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *p;
        if (word && i > 0)
            p = json_pack("{s:s, s:f, s:f, s:f}", "word",
                          semd_model_word(m, hits[i - 1].row, NULL), "x",
                          (double)xy[i * 2], "y", (double)xy[i * 2 + 1],
                          "score", (double)hits[i - 1].score);
        else if (word)
            p = json_pack("{s:s%, s:f, s:f, s:f}", "word", word, word_len,
                          "x", (double)xy[0], "y", (double)xy[1], "score",
                          1.0);
        else
            p = json_pack("{s:s%, s:f, s:f}", "word", t[i].word, t[i].len,
                          "x", (double)xy[i * 2], "y", (double)xy[i * 2 + 1]);
        json_array_append_new(points, p);
    }
    reply_ok(rp, 200,
             json_pack("{s:O, s:[f,f], s:s, s:O}", "points", points,
                       "explained_variance", ratio[0], ratio[1], "method",
                       "pca", "provenance", prov));
out:
    json_decref(prov);
    json_decref(points);
    free(t);
    free(info);
    free(hits);
    free(x);
    free(xy);
}
