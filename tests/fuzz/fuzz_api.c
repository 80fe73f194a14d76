/*
 * fuzz_api.c - one HTTP request through the server without sockets: the
 * input is a request in HTTP's own shape,
 *
 *     METHOD SP TARGET LF  (NAME: VALUE LF)*  LF  BODY
 *
 * (the version is left out; CR before LF is allowed), handed to
 * http_dispatch, which runs the very steps a request arriving over a
 * connection goes through (server/http.c): target and header limits,
 * routing, auth, content type, body limit, query arguments, JSON,
 * snapshot, handler, reply. The server has a small model with an exact
 * index, a write token (so writes are checked, and a token in the input
 * may match it) and no batcher (handlers answer in the calling thread).
 *
 * Properties: every request gets a status from 200 to 599 and a body;
 * JSON bodies parse; bad input never gets a 500; a reload never runs
 * without the token.
 */
#include "fuzz.h"

#include "semd.h"
#include "serve.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 32
#define TOKEN "fuzz-write-token" /* also in dict/api.dict */

static int token_given; /* the input holds TOKEN in a header value */

static struct config cfg;
static struct server srv;

static void
make_server(void)
{
    static const char *const words[] = {
        "the", "king", "queen", "man", "woman", "paris", "france", "berlin",
        "germany", "cat", "dog", "car", "automobile", "breakfast", "lunch",
        "dinner", "Apple", "apple", "caf\xc3\xa9", "e-mail", "a+b", "x y"};
    size_t nw = sizeof words / sizeof words[0];
    const char *path = fuzz_path("api.semd");
    struct semd_writer_opts o = {"fuzz", "api", SEMD_MODEL_COUNTS_ARE_RANKS};
    struct semd_writer *w;
    struct semd_err err = {0};
    float v[16];
    uint64_t state = 88172645463325252ull;
    if (semd_writer_open(&w, path, 16, &o, &err) != 0)
        fuzz_fail("writer: %s", err.msg);
    for (size_t i = 0; i < nw + 180; i++) {
        char word[32];
        const char *wd = word;
        if (i < nw)
            wd = words[i];
        else
            snprintf(word, sizeof word, "w%zu", i);
        for (int d = 0; d < 16; d++) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            v[d] = (float)(state % 2001) / 1000.0f - 1.0f;
        }
        if (semd_writer_add(w, wd, strlen(wd), v, 0, &err) != 0)
            fuzz_fail("writer: %s", err.msg);
    }
    struct semd_model *m;
    struct semd_index *ix;
    struct semd_snapshot *s;
    struct semd_index_opts io = {0};
    if (semd_writer_finish(w, &err) != 0 ||
        semd_model_open(&m, path, &err) != 0 ||
        semd_index_open(&ix, m, &io, &err) != 0 ||
        semd_snapshot_new(&s, m, ix, 1, &err) != 0)
        fuzz_fail("model: %s", err.msg);
    char *argv[] = {"serve", (char *)path, NULL};
    if (config_parse(&cfg, 2, argv) != 0)
        fuzz_fail("config_parse refused the defaults");
    cfg.max_body = 1 << 16; /* the fuzzer's inputs are small anyway */
    cfg.write_token = strdup(TOKEN);
    if (!cfg.write_token)
        fuzz_fail("out of memory");
    srv.cfg = &cfg;
    if (semd_holder_new(&srv.holder, &err) != 0 ||
        semd_holder_publish(srv.holder, s, &err) != 0)
        fuzz_fail("holder: %s", err.msg); /* publish took our reference */
    metrics_init();
}

/* cmd_serve.c is not linked: POST /v1/reload asks for a reload here,
 * which only a request with the write token may do. */
void
serve_request_reload(void)
{
    if (!token_given)
        fuzz_fail("the reload handler ran without the write token");
}

/* Splits buf (NUL-terminated copy of the input, n bytes) into q; 0 if the
 * request line is not "METHOD TARGET". */
static int
parse(char *buf, size_t n, struct http_request *q,
      struct http_header *h)
{
    memset(q, 0, sizeof *q);
    char *end = buf + n;
    char *nl = memchr(buf, '\n', n);
    char *line_end = nl ? nl : end;
    if (line_end > buf && line_end[-1] == '\r')
        line_end[-1] = '\0';
    *line_end = '\0';
    char *sp = strchr(buf, ' ');
    if (!sp || sp == buf)
        return 0;
    *sp = '\0';
    q->method = buf;
    char *path = sp + 1;
    if (strchr(path, ' '))
        *strchr(path, ' ') = '\0'; /* "HTTP/1.1" after the target */
    char *qm = strchr(path, '?');
    if (qm) {
        *qm = '\0';
        q->query = qm + 1;
    }
    q->path = path;
    q->headers = h;
    char *p = nl ? nl + 1 : end;
    size_t nh = 0;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        if (le > p && le[-1] == '\r')
            le[-1] = '\0';
        *le = '\0';
        if (!*p) { /* blank line: the body follows */
            p = nl ? nl + 1 : end;
            break;
        }
        char *colon = strchr(p, ':');
        if (colon && nh < MAX_HEADERS) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            h[nh++] = (struct http_header){p, v};
        }
        p = nl ? nl + 1 : end;
    }
    q->n_headers = nh;
    q->body = p < end ? p : end;
    q->body_len = (size_t)(end - q->body);
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv.holder)
        make_server();
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    struct http_request q;
    struct http_header h[MAX_HEADERS];
    if (!parse(buf, size, &q, h)) {
        free(buf);
        return 0;
    }
    token_given = 0;
    for (size_t i = 0; i < q.n_headers; i++)
        if (strstr(q.headers[i].value, TOKEN))
            token_given = 1;
    struct http_response r;
    if (http_dispatch(&srv, &q, &r) != 0)
        fuzz_fail("out of memory for a request context");
    int status = r.status;
    if (!r.body || status < 200 || status > 599)
        fuzz_fail("%s %s: status %d, %s body", q.method, q.path, status,
                  r.body ? "a" : "no");
    if (status >= 500 && status != 503)
        fuzz_fail("%s %s: status %d for a request: %.*s", q.method, q.path,
                  status, (int)(r.len > 300 ? 300 : r.len), r.body);
    if (!strncmp(r.content_type, "application/json", 16)) {
        json_error_t je;
        json_t *j = json_loadb(r.body, r.len, 0, &je);
        if (!j)
            fuzz_fail("%s %s: reply is not JSON (%s): %.*s", q.method,
                      q.path, je.text, (int)(r.len > 300 ? 300 : r.len),
                      r.body);
        json_decref(j);
    }
    http_response_release(&r);
    free(buf);
    return 0;
}
