/*
 * routes.c - every endpoint of the v1 API in one table, in the order of
 * openapi.yaml: method, path, handler, body limit, flags. Paths match
 * exactly, except a ROUTE_PARAM route whose last segment is a parameter.
 * Finding no path gives 404, a known path with another method 405.
 *
 * The table is constant: read by every request thread, never written.
 */
#include "serve.h"

#include <string.h>

#define SMALL_BODY ((size_t)64 * 1024)

const struct route routes[] = {
    {"GET", "/v1/health", api_health, 0, ROUTE_PUBLIC | ROUTE_NOSNAP,
     "/v1/health"},
    {"GET", "/v1/ready", api_ready, 0, ROUTE_PUBLIC | ROUTE_NOSNAP,
     "/v1/ready"},
    {"GET", "/v1/model", api_model, 0, 0, "/v1/model"},
    {"GET", "/v1/neighbors", api_neighbors_get, 0, 0, "/v1/neighbors"},
    {"POST", "/v1/neighbors", api_neighbors_post, ROUTE_LIMIT_DEFAULT,
     ROUTE_BODY, "/v1/neighbors"},
    {"GET", "/v1/similarity", api_similarity_get, 0, 0, "/v1/similarity"},
    {"POST", "/v1/similarity", api_similarity_post, ROUTE_LIMIT_DEFAULT,
     ROUTE_BODY, "/v1/similarity"},
    {"GET", "/v1/analogy", api_analogy_get, 0, 0, "/v1/analogy"},
    {"POST", "/v1/analogy", api_analogy_post, SMALL_BODY, ROUTE_BODY,
     "/v1/analogy"},
    {"POST", "/v1/odd-one-out", api_odd_one_out, SMALL_BODY, ROUTE_BODY,
     "/v1/odd-one-out"},
    {"GET", "/v1/vectors/", api_vector_get, 0, ROUTE_PARAM,
     "/v1/vectors/{word}"},
    {"POST", "/v1/vectors", api_vectors_post, ROUTE_LIMIT_DEFAULT,
     ROUTE_BODY, "/v1/vectors"},
    {"GET", "/v1/words", api_words, 0, 0, "/v1/words"},
    {"GET", "/v1/words/", api_drift, 0, ROUTE_PARAM,
     "/v1/words/{word}/drift"},
    {"POST", "/v1/reload", api_reload, 0, ROUTE_WRITE | ROUTE_NOSNAP,
     "/v1/reload"},
    {"POST", "/v1/train", api_train_post, ROUTE_LIMIT_DEFAULT,
     ROUTE_BODY | ROUTE_TEXT | ROUTE_WRITE | ROUTE_NOSNAP, "/v1/train"},
    {"GET", "/v1/train", api_train_get, 0, ROUTE_NOSNAP, "/v1/train"},
    {"POST", "/v1/project", api_project, SMALL_BODY, ROUTE_BODY,
     "/v1/project"},
    {"POST", "/v1/tokenize", api_tokenize, ROUTE_LIMIT_DEFAULT,
     ROUTE_BODY | ROUTE_TEXT, "/v1/tokenize"},
    {"GET", "/v1/tokens/report", api_tokens_report, 0, 0,
     "/v1/tokens/report"},
    {"GET", "/", api_page, 0, ROUTE_PUBLIC | ROUTE_NOSNAP | ROUTE_RAW, "/"},
    {"GET", "/app.css", api_page, 0, ROUTE_PUBLIC | ROUTE_NOSNAP | ROUTE_RAW,
     "/app.css"},
    {"GET", "/app.js", api_page, 0, ROUTE_PUBLIC | ROUTE_NOSNAP | ROUTE_RAW,
     "/app.js"},
    {"GET", "/metrics", api_metrics, 0,
     ROUTE_PUBLIC | ROUTE_NOSNAP | ROUTE_RAW, "/metrics"},
};

const size_t n_routes = sizeof routes / sizeof routes[0];

static int
path_matches(const struct route *r, const char *path, const char **param)
{
    if (!(r->flags & ROUTE_PARAM))
        return !strcmp(r->path, path);
    size_t n = strlen(r->path);
    /* the parameter is one non-empty segment, followed by what the
     * template has after it ("/drift" in "/v1/words/{word}/drift"); the
     * handler is given both */
    const char *suffix = strchr(r->name, '}');
    suffix = suffix ? suffix + 1 : "";
    size_t sl = strlen(suffix), pl = strlen(path);
    if (strncmp(r->path, path, n) || pl <= n + sl ||
        strcmp(path + pl - sl, suffix) ||
        memchr(path + n, '/', pl - n - sl))
        return 0;
    *param = path + n;
    return 1;
}

int
route_find(const char *method, const char *path, const struct route **out,
           const char **param, char *allow, size_t allow_n)
{
    int path_known = 0;
    if (allow_n)
        allow[0] = 0;
    for (size_t i = 0; i < n_routes; i++) {
        const char *p = NULL;
        if (!path_matches(&routes[i], path, &p))
            continue;
        if (!strcmp(routes[i].method, method)) {
            *out = &routes[i];
            *param = p;
            return 0;
        }
        path_known = 1;
        size_t len = strlen(allow);
        snprintf(allow + len, allow_n - len, "%s%s", len ? ", " : "",
                 routes[i].method);
    }
    return path_known ? 405 : 404;
}
