/*
 * test_tokens_http.c - the token routes end to end: `semd serve` runs on a
 * model converted from a generated safetensors file with GPT-2's real
 * vocabulary size and tokenizer files (50,257 rows, fixed-seed random rows,
 * a duplicated and a scaled row planted), and the test talks HTTP to it
 * over loopback (tests/daemon.h).
 *
 * POST /v1/tokenize gives the ids of the independent reference tokenizer
 * (tests/bpe/reference.sh, the one the BPE test compares with), offsets
 * that slice the input into the tokens' texts, and norms equal to the
 * norms of the generated rows; its answer is what `semd tokenize --json`
 * prints. GET /v1/tokens/report is what `semd tokens-report --json`
 * prints, computed once and then served from the cache, also to
 * concurrent first requests. Neighbours of "king" resolve through the
 * token " king". Every listed row (neighbours, analogy answers, odd one
 * out, word look-up, vectors, resolved terms) carries the token id the
 * vocabulary file gives its word and the text that word decodes to, both
 * computed here from encoder.json and GPT-2's byte table, not by semd;
 * a token holding part of a character stays valid JSON (U+FFFD); on the
 * word fixture those fields are absent. Every response is checked against
 * openapi.yaml by the contract checker at the end.
 */
#include "daemon.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 50257 /* GPT-2's vocabulary */
#define DIMS 64    /* fewer than GPT-2's 768: the test stays quick */
#define ROW_SCALED 31000 /* 50 times its norm */
#define ROW_DUP_A 40000  /* ROW_DUP_B is a copy of it */
#define ROW_DUP_B 40001

static const char *model_path;
static struct t_daemon d;
static json_t *encoder; /* encoder.json: vocabulary key -> id, read once */

/* ------------------------------------------------------------ the model */

static void
gen_row(uint64_t r, float *out)
{
    uint64_t s = 0x70CE0000ull + (r == ROW_DUP_B ? ROW_DUP_A : r);
    float scale = r == ROW_SCALED ? 50.0f : 1.0f;
    for (uint32_t i = 0; i < DIMS; i++)
        out[i] = scale * t_rand(&s);
}

/* The norm of a generated row, computed here, not by semd. */
static double
row_norm(uint64_t r)
{
    float v[DIMS];
    gen_row(r, v);
    double s = 0;
    for (uint32_t i = 0; i < DIMS; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

/* A safetensors file holding one F32 tensor "wte.weight", ROWS x DIMS. */
static void
write_safetensors(const char *path)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                     "\"data_offsets\":[0,%llu]}}",
                     ROWS, DIMS, (unsigned long long)ROWS * DIMS * 4);
    while (n % 8)
        hdr[n++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)((uint64_t)n >> (8 * i));
    assert_int_equal(fwrite(lb, 1, 8, f), 8);
    assert_int_equal(fwrite(hdr, 1, (size_t)n, f), (size_t)n);
    float v[DIMS];
    for (uint64_t r = 0; r < ROWS; r++) {
        gen_row(r, v);
        assert_int_equal(fwrite(v, sizeof v, 1, f), 1);
    }
    assert_int_equal(fclose(f), 0);
}

/* ---------------------------------------------------------------- setup */

static int
setup(void **state)
{
    (void)state;
    const char *st = t_path("gpt2.safetensors");
    write_safetensors(st);
    static char out[512];
    snprintf(out, sizeof out, "%s", t_path("gpt2.semd"));
    char cmd[2048], *msg = NULL;
    snprintf(cmd, sizeof cmd,
             "%s convert '%s' '%s' --tensor wte.weight --vocab "
             "'%s/gpt2/encoder.json' --merges '%s/gpt2/vocab.bpe' 2>&1",
             t_semd(), st, out, t_datadir(), t_datadir());
    int rc = t_run(cmd, &msg);
    if (rc != 0) {
        fprintf(stderr, "convert failed (%d): %s\n", rc, msg);
        free(msg);
        return -1;
    }
    free(msg);
    remove(st);
    model_path = out;
    if (t_record_responses(t_path("contract.jsonl")) != 0)
        return -1;
    const char *args[] = {model_path, "--threads", "4", NULL};
    return t_daemon_start(&d, "serve.log", args) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    /* a clean stop: a sanitizer report in the daemon makes it exit
     * otherwise */
    int rc = d.pid ? t_daemon_stop(&d, SIGTERM) : 0;
    if (rc != 0) {
        char *log = t_read_file(d.log, NULL);
        fprintf(stderr, "semd serve stopped with status %d; its log:\n%s\n",
                rc, log ? log : "(none)");
        free(log);
    }
    t_record_responses(NULL);
    json_decref(encoder);
    return rc == 0 ? 0 : -1;
}

/* POSTs text as {"text": ..., "norms": true} and checks what holds for
 * any text: count, offsets that tile the text, each token's text the
 * bytes it covers (when they are whole characters), norms the generated
 * rows' norms (row == id in a converted model). Returns the tokens array
 * (a new reference). */
static json_t *
tokenize(const char *text, size_t len)
{
    json_t *req = json_pack("{s:s%, s:b}", "text", text, len, "norms", 1);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    struct t_resp r;
    assert_int_equal(t_request(d.port, "POST", "/v1/tokenize",
                               "application/json", body, strlen(body), NULL,
                               &r),
                     0);
    free(body);
    if (r.status != 200)
        fail_msg("tokenize: status %d: %s", r.status, r.body);
    json_t *toks = t_json_at(r.json, "result.tokens");
    assert_true(json_is_array(toks));
    assert_int_equal(json_integer_value(t_json_at(r.json, "result.count")),
                     json_array_size(toks));
    size_t at = 0, i;
    json_t *o;
    json_array_foreach(toks, i, o) {
        size_t start = (size_t)json_integer_value(json_object_get(o, "start"));
        size_t end = (size_t)json_integer_value(json_object_get(o, "end"));
        assert_int_equal(start, at);
        assert_true(end > start && end <= len);
        const char *tt = json_string_value(json_object_get(o, "text"));
        assert_non_null(tt);
        /* a token holding part of a character shows U+FFFD instead */
        if (!strstr(tt, "\xEF\xBF\xBD")) {
            assert_int_equal(strlen(tt), end - start);
            assert_memory_equal(tt, text + start, end - start);
        }
        json_int_t id = json_integer_value(json_object_get(o, "id"));
        assert_true(id >= 0 && id < ROWS);
        double want = row_norm((uint64_t)id);
        double got = json_number_value(json_object_get(o, "norm"));
        if (fabs(got - want) > 1e-5 * want)
            fail_msg("token %lld: norm %.9g, the row's is %.9g",
                     (long long)id, got, want);
        at = end;
    }
    assert_int_equal(at, len);
    json_incref(toks);
    t_resp_free(&r);
    return toks;
}

/* --------------------------------------------------------------- tokenize */

static const char *const lines[] = {
    "From numbers to meaning",
    "The king's 3 crowns weren't   lost; 12345 tokens!",
    "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA"
    "\x9E \xF0\x9F\x99\x82 emoji",
    "\ttabs\tand  spaces  ",
};

/* The ids of the reference tokenizer for each of lines[] (JSON arrays), or
 * NULL when node is not installed. */
static json_t *
reference_ids(void)
{
    const char *corpus = t_path("ref-corpus.txt");
    FILE *f = fopen(corpus, "w");
    assert_non_null(f);
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        fprintf(f, "%s\n", lines[i]);
    assert_int_equal(fclose(f), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash %s/../bpe/reference.sh '%s' '%s' >&2",
             t_datadir(), corpus, t_path("ref.jsonl"));
    int rc = t_run(cmd, NULL);
    if (rc == 77)
        return NULL;
    assert_int_equal(rc, 0);
    /* one JSON line per corpus line first (tests/bpe/encode.js) */
    size_t n;
    char *ref = t_read_file(t_path("ref.jsonl"), &n);
    assert_non_null(ref);
    json_t *all = json_array();
    char *p = ref;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_error_t je;
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, &je);
        assert_non_null(o);
        assert_string_equal(json_string_value(json_object_get(o, "text")),
                            lines[i]);
        json_array_append(all, json_object_get(o, "a"));
        json_decref(o);
        p = nl + 1;
    }
    free(ref);
    return all;
}

static void
test_tokenize_reference(void **state)
{
    (void)state;
    json_t *ref = reference_ids();
    if (!ref) {
        /* the ids gpt-tokenizer gives, as test_bpe.c has them */
        fprintf(stderr, "node is not installed: comparing the first line "
                        "with the reference's known ids only\n");
        ref = json_pack("[[i,i,i,i]]", 4863, 3146, 284, 3616);
    }
    for (size_t i = 0; i < json_array_size(ref); i++) {
        json_t *toks = tokenize(lines[i], strlen(lines[i]));
        json_t *want = json_array_get(ref, i);
        size_t k;
        json_t *o;
        int same = json_array_size(toks) == json_array_size(want);
        json_array_foreach(toks, k, o) {
            same = same && json_integer_value(json_object_get(o, "id")) ==
                               json_integer_value(json_array_get(want, k));
        }
        if (!same) {
            char *w = json_dumps(want, 0);
            fail_msg("\"%s\": ids differ from the reference %s", lines[i], w);
        }
        json_decref(toks);
    }
    /* the line the issue names: four tokens, " meaning" the last */
    json_t *toks = tokenize(lines[0], strlen(lines[0]));
    assert_int_equal(json_array_size(toks), 4);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(toks, 3), "token")),
        "\xC4\xA0meaning");
    json_decref(toks);
    json_decref(ref);
}

/* text/plain with ?norms=1 answers as the JSON body does, and both are
 * what `semd tokenize --json --norms` prints. */
static void
test_tokenize_text_and_cli(void **state)
{
    (void)state;
    const char *text = lines[1];
    json_t *toks = tokenize(text, strlen(text));
    struct t_resp r;
    assert_int_equal(t_request(d.port, "POST", "/v1/tokenize?norms=1",
                               "text/plain; charset=utf-8", text,
                               strlen(text), NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_true(json_equal(t_json_at(r.json, "result.tokens"), toks));

    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' \"%s\" --json --norms",
             t_semd(), model_path, text);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *cli = json_loads(out, 0, &je);
    assert_non_null(cli);
    assert_true(json_equal(cli, t_json_at(r.json, "result")));
    json_decref(cli);
    free(out);
    t_resp_free(&r);
    json_decref(toks);

    /* without norms: no "norm" member */
    assert_int_equal(t_request(d.port, "POST", "/v1/tokenize",
                               "application/json", "{\"text\":\"king\"}", 15,
                               NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(t_json_at(r.json, "result.count")),
                     1);
    assert_null(t_json_at(r.json, "result.tokens.0.norm"));
    t_resp_free(&r);
}

static void
test_tokenize_edges(void **state)
{
    (void)state;
    struct t_resp r;
    /* the empty text has no tokens */
    assert_int_equal(t_request(d.port, "POST", "/v1/tokenize",
                               "application/json", "{\"text\":\"\"}", 11,
                               NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_integer_value(t_json_at(r.json, "result.count")),
                     0);
    t_resp_free(&r);
    /* a byte that is not UTF-8: 400 naming its offset */
    assert_int_equal(t_request(d.port, "POST", "/v1/tokenize", "text/plain",
                               "ab\xC0\xAF", 4, NULL, &r),
                     0);
    assert_int_equal(r.status, 400);
    assert_string_equal(t_json_str(r.json, "error.code"), "bad_request");
    assert_non_null(strstr(t_json_str(r.json, "error.message"), "offset 2"));
    t_resp_free(&r);
}

/* ----------------------------------------------------------------- report */

static json_t *
report(const char *target, int *cached)
{
    struct t_resp r;
    assert_int_equal(
        t_request(d.port, "GET", target, NULL, NULL, 0, NULL, &r), 0);
    if (r.status != 200)
        fail_msg("%s: status %d: %s", target, r.status, r.body);
    json_t *res = json_deep_copy(t_json_at(r.json, "result"));
    t_resp_free(&r);
    json_t *c = json_object_get(res, "cached");
    assert_true(json_is_boolean(c));
    *cached = json_is_true(c);
    json_object_del(res, "cached");
    return res;
}

static void
test_report_matches_cli(void **state)
{
    (void)state;
    int cached;
    json_t *first = report("/v1/tokens/report?max=5", &cached);
    assert_false(cached);
    json_t *again = report("/v1/tokens/report?max=5", &cached);
    assert_true(cached);
    assert_true(json_equal(first, again));

    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "%s tokens-report '%s' --json --max 5",
             t_semd(), model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *cli = json_loads(out, 0, &je);
    assert_non_null(cli);
    if (!json_equal(cli, first))
        fail_msg("the route's report differs from the command's:\n%.400s\n"
                 "%.400s", out, json_dumps(first, JSON_COMPACT));
    /* what was planted */
    assert_int_equal(json_integer_value(t_json_at(
                         first, "norms.high.rows.0.row")),
                     ROW_SCALED);
    assert_int_equal(json_integer_value(t_json_at(first,
                                                  "duplicates.pairs.0.a.row")),
                     ROW_DUP_A);
    assert_int_equal(json_integer_value(t_json_at(first,
                                                  "duplicates.pairs.0.b.row")),
                     ROW_DUP_B);
    assert_true(json_integer_value(t_json_at(first, "unreachable.count")) >=
                1);
    json_decref(cli);
    free(out);
    json_decref(first);
    json_decref(again);
}

#define RACERS 4

struct racer {
    pthread_barrier_t *go;
    json_t *res;
    int cached;
    double ms; /* the server's time_ms */
};

static void *
race(void *arg)
{
    struct racer *x = arg;
    pthread_barrier_wait(x->go);
    struct t_resp r;
    if (t_request(d.port, "GET", "/v1/tokens/report?max=7&z=3", NULL, NULL,
                  0, NULL, &r) == 0 &&
        r.status == 200) {
        x->res = json_deep_copy(t_json_at(r.json, "result"));
        x->cached = json_is_true(json_object_get(x->res, "cached"));
        x->ms = json_number_value(t_json_at(r.json, "time_ms"));
        json_object_del(x->res, "cached");
    }
    t_resp_free(&r);
    return NULL;
}

/* First requests at once: one computes, the others wait for it (or, on a
 * request thread the computing one holds, come after it), and all get the
 * same report. */
static void
test_report_concurrent_first(void **state)
{
    (void)state;
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    struct racer x[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
        x[i] = (struct racer){&go, NULL, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
    }
    int computed = 0, waited = 0;
    double compute_ms = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(t[i], NULL);
        assert_non_null(x[i].res);
        computed += !x[i].cached;
        if (!x[i].cached)
            compute_ms = x[i].ms;
    }
    pthread_barrier_destroy(&go);
    for (int i = 0; i < RACERS; i++) {
        assert_true(json_equal(x[i].res, x[0].res));
        /* a cached answer that took half the computation waited for it */
        waited += x[i].cached && x[i].ms > compute_ms / 2;
    }
    for (int i = 0; i < RACERS; i++)
        json_decref(x[i].res);
    assert_int_equal(computed, 1);
    print_message("report: computed once in %.1f ms, %d of %d other "
                  "requests waited for it\n",
                  compute_ms, waited, RACERS - 1);
}

/* ------------------------------------------------- token rows, decoded */

/* GPT-2's byte-to-unicode table inverted: the byte each code point of a
 * byte-level vocabulary key stands for (-1: none). Printable Latin-1 bytes
 * stand for themselves, the other 68 for U+0100 onwards, in byte order. */
static int byte_of[324];

static void
init_byte_table(void)
{
    int next = 256;
    for (int i = 0; i < 324; i++)
        byte_of[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                        (b >= 0xAE && b <= 0xFF);
        byte_of[printable ? b : next++] = b;
    }
}

/* The bytes a vocabulary key stands for, into out (cap bytes); their
 * count. */
static size_t
key_bytes(const char *key, unsigned char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)key;
    size_t n = 0;
    while (*p) {
        unsigned cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else {
            /* keys hold code points below U+0800 only: two bytes */
            assert_int_equal(p[0] & 0xE0, 0xC0);
            cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
            p += 2;
        }
        assert_true(cp < 324 && byte_of[cp] >= 0);
        assert_true(n < cap);
        out[n++] = (unsigned char)byte_of[cp];
    }
    return n;
}

/* The length of the valid UTF-8 character at b[0..n), 0 if none. */
static size_t
utf8_char(const unsigned char *b, size_t n)
{
    size_t len = b[0] < 0x80 ? 1 : b[0] >= 0xC2 && b[0] <= 0xDF ? 2
             : b[0] >= 0xE0 && b[0] <= 0xEF ? 3
             : b[0] >= 0xF0 && b[0] <= 0xF4 ? 4 : 0;
    if (len == 0 || len > n || b[0] == 0)
        return 0;
    for (size_t k = 1; k < len; k++)
        if ((b[k] & 0xC0) != 0x80)
            return 0;
    /* overlong, surrogate and beyond U+10FFFF forms */
    if ((b[0] == 0xE0 && b[1] < 0xA0) || (b[0] == 0xED && b[1] >= 0xA0) ||
        (b[0] == 0xF0 && b[1] < 0x90) || (b[0] == 0xF4 && b[1] >= 0x90))
        return 0;
    return len;
}

/* What "text" must be for a key: its bytes, each byte outside a valid
 * character as U+FFFD. *whole: no byte was replaced. */
static void
expected_text(const char *key, char *out, size_t cap, int *whole)
{
    unsigned char b[256];
    size_t n = key_bytes(key, b, sizeof b), o = 0;
    *whole = 1;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_char(b + i, n - i);
        assert_true(o + 4 < cap);
        if (len) {
            memcpy(out + o, b + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            *whole = 0;
        }
    }
    out[o] = '\0';
}

static json_int_t
encoder_id(const char *key)
{
    if (!encoder) {
        char path[1024];
        snprintf(path, sizeof path, "%s/gpt2/encoder.json", t_datadir());
        json_error_t je;
        encoder = json_load_file(path, 0, &je);
        if (!encoder)
            fail_msg("%s: %s", path, je.text);
        init_byte_table();
    }
    json_t *v = json_object_get(encoder, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* A listed row of the token model: key its vocabulary key ("word" of a
 * listed row, "resolved" of a term or vector; NULL: take it from o), "id"
 * the id encoder.json gives key, equal to "row" when o has one (a
 * converted matrix has row == id), "text" what the key decodes to.
 * Returns 1 when the text is whole characters, 0 when it has U+FFFD. */
static int
check_token_key(json_t *o, const char *key, const char *where)
{
    if (!key)
        key = json_string_value(json_object_get(o, "resolved"));
    if (!key)
        key = json_string_value(json_object_get(o, "word"));
    json_t *id = json_object_get(o, "id");
    const char *text = json_string_value(json_object_get(o, "text"));
    if (!key || !json_is_integer(id) || !text) {
        char *s = json_dumps(o, JSON_COMPACT);
        fail_msg("%s: no word, id and text in %s", where, s);
    }
    assert_int_equal(json_integer_value(id), encoder_id(key));
    json_t *row = json_object_get(o, "row");
    if (row)
        assert_int_equal(json_integer_value(row), json_integer_value(id));
    char want[1024];
    int whole;
    expected_text(key, want, sizeof want, &whole);
    if (strcmp(text, want))
        fail_msg("%s: id %lld: text \"%s\", decoded \"%s\"", where,
                 (long long)json_integer_value(id), text, want);
    return whole;
}

static int
check_token_row(json_t *o, const char *where)
{
    return check_token_key(o, NULL, where);
}

/* check_token_row on each item of the array at path of r's body. */
static void
check_token_rows(json_t *body, const char *path)
{
    json_t *a = t_json_at(body, path);
    if (!json_is_array(a) || json_array_size(a) == 0)
        fail_msg("no rows at %s", path);
    size_t i;
    json_t *o;
    json_array_foreach(a, i, o) {
        check_token_row(o, path);
    }
}

/* Percent-encodes s for a query string. */
static void
pct(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        assert_true(o + 4 < cap);
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9'))
            out[o++] = (char)*p;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
    }
    out[o] = '\0';
}

static struct t_resp
get_ok(int port, const char *target)
{
    struct t_resp r;
    assert_int_equal(t_get(port, target, &r), 0);
    if (r.status != 200 || !r.json)
        fail_msg("%s: status %d: %s", target, r.status, r.body);
    return r;
}

static struct t_resp
post_ok(int port, const char *target, const char *body)
{
    struct t_resp r;
    assert_int_equal(t_request(port, "POST", target, "application/json",
                               body, strlen(body), NULL, &r),
                     0);
    if (r.status != 200 || !r.json)
        fail_msg("%s: status %d: %s", target, r.status, r.body);
    return r;
}

/* --------------------------------------------------------------- queries */

static void
test_neighbors_of_king(void **state)
{
    (void)state;
    /* the id of " king" from the tokenize route */
    json_t *toks = tokenize(" king", 5);
    assert_int_equal(json_array_size(toks), 1);
    json_int_t king = json_integer_value(
        json_object_get(json_array_get(toks, 0), "id"));
    json_decref(toks);

    struct t_resp r;
    assert_int_equal(t_request(d.port, "GET", "/v1/neighbors?word=king&k=5",
                               NULL, NULL, 0, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(t_json_str(r.json, "result.terms.0.provenance"),
                        "token_space");
    assert_string_equal(t_json_str(r.json, "result.terms.0.resolved"),
                        "\xC4\xA0king");
    assert_int_equal(json_integer_value(
                         t_json_at(r.json, "result.terms.0.row")),
                     king);
    /* the term shows the token it resolved to */
    assert_int_equal(json_integer_value(t_json_at(r.json, "result.terms.0.id")),
                     king);
    assert_string_equal(t_json_str(r.json, "result.terms.0.text"), " king");
    json_t *nb = t_json_at(r.json, "result.neighbors");
    assert_int_equal(json_array_size(nb), 5);
    size_t i;
    json_t *o;
    json_array_foreach(nb, i, o) {
        assert_true(json_integer_value(json_object_get(o, "row")) != king);
    }
    check_token_rows(r.json, "result.neighbors");
    /* the same again from the result cache */
    struct t_resp again = get_ok(d.port, "/v1/neighbors?word=king&k=5");
    assert_true(json_equal(t_json_at(again.json, "result"),
                           t_json_at(r.json, "result")));
    t_resp_free(&again);

    /* `semd query --json` lists the same tokens, with the same texts */
    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd, "%s query '%s' king -k 5 --json", t_semd(),
             model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *cli = json_loads(out, 0, &je);
    if (!cli)
        fail_msg("semd query --json printed no JSON: %s", out);
    json_t *cnb = json_object_get(cli, "neighbors");
    assert_int_equal(json_array_size(cnb), 5);
    json_array_foreach(cnb, i, o) {
        check_token_row(o, "semd query --json");
        json_t *h = json_array_get(nb, i);
        assert_true(json_equal(json_object_get(o, "id"),
                               json_object_get(h, "id")));
    }
    json_decref(cli);
    free(out);
    /* and its table shows the first one's text quoted, with its id */
    snprintf(cmd, sizeof cmd, "%s query '%s' king -k 5", t_semd(),
             model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    json_t *first = json_array_get(nb, 0);
    json_t *q = json_object_get(first, "text");
    char *quoted = json_dumps(q, JSON_ENCODE_ANY);
    char shown[256];
    snprintf(shown, sizeof shown, "%s #%lld", quoted,
             (long long)json_integer_value(json_object_get(first, "id")));
    if (!strstr(out, shown))
        fail_msg("semd query does not show %s:\n%s", shown, out);
    free(quoted);
    free(out);
    t_resp_free(&r);

    /* a word that is no one token: the mean of its tokens */
    assert_int_equal(t_request(d.port, "GET",
                               "/v1/neighbors?word=tokenization&k=3", NULL,
                               NULL, 0, NULL, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(t_json_str(r.json, "result.terms.0.provenance"),
                        "token_mean");
    t_resp_free(&r);
}

/* Analogies (answers and the other method's pick), batches, odd one out,
 * vectors and the word look-up list tokens the same way. */
static void
test_token_rows_everywhere(void **state)
{
    (void)state;
    struct t_resp r = get_ok(d.port, "/v1/analogy?q=king-man%2Bwoman&k=4"
                                     "&method=both&explain=1");
    check_token_rows(r.json, "result.results.0.answers");
    check_token_rows(r.json, "result.results.1.answers");
    check_token_row(t_json_at(r.json, "result.results.0.explain.other_method"),
                    "other_method");
    check_token_rows(r.json, "result.terms");
    t_resp_free(&r);

    r = post_ok(d.port, "/v1/neighbors",
                "{\"queries\":[{\"word\":\"queen\",\"k\":3},"
                "{\"expr\":\"paris-france+italy\",\"k\":3},"
                "{\"positive\":[\"cat\",\"dog\"],\"k\":3}]}");
    check_token_rows(r.json, "result.results.0.neighbors");
    check_token_rows(r.json, "result.results.1.neighbors");
    check_token_rows(r.json, "result.results.2.neighbors");
    t_resp_free(&r);

    r = post_ok(d.port, "/v1/analogy",
                "{\"a\":\"man\",\"b\":\"king\",\"c\":\"woman\",\"k\":3}");
    check_token_rows(r.json, "result.results.0.answers");
    t_resp_free(&r);

    /* a word that is several tokens has no one id: only "word" */
    r = post_ok(d.port, "/v1/odd-one-out",
                "{\"words\":[\"apple\",\"pear\",\"plum\","
                "\"tokenization\"]}");
    json_t *ws = t_json_at(r.json, "result.words");
    assert_int_equal(json_array_size(ws), 4);
    /* "word" is the input there: the key is its term's */
    for (size_t i = 0; i < 3; i++) {
        char path[32];
        snprintf(path, sizeof path, "result.terms.%zu.resolved", i);
        check_token_key(json_array_get(ws, i), t_json_str(r.json, path),
                        "odd-one-out");
    }
    assert_string_equal(t_json_str(r.json, "result.terms.3.provenance"),
                        "token_mean");
    assert_null(json_object_get(json_array_get(ws, 3), "id"));
    assert_null(json_object_get(json_array_get(ws, 3), "text"));
    t_resp_free(&r);

    r = get_ok(d.port, "/v1/vectors/king");
    check_token_row(t_json_at(r.json, "result"), "vectors");
    assert_string_equal(t_json_str(r.json, "result.provenance"),
                        "token_space");
    assert_string_equal(t_json_str(r.json, "result.text"), " king");
    t_resp_free(&r);

    /* the prefix is the vocabulary key: "\u0120kin" lists " kin..." */
    char target[256], enc[64];
    pct("\xC4\xA0kin", enc, sizeof enc);
    snprintf(target, sizeof target, "/v1/words?prefix=%s&limit=20", enc);
    r = get_ok(d.port, target);
    check_token_rows(r.json, "result.words");
    json_t *w;
    size_t i;
    json_array_foreach(t_json_at(r.json, "result.words"), i, w) {
        assert_memory_equal(json_string_value(json_object_get(w, "text")),
                            " kin", 4);
    }
    t_resp_free(&r);
}

/* Tokens that hold part of a UTF-8 character (a lone lead byte; the first
 * bytes of a CJK character) are listed as valid JSON with U+FFFD for each
 * such byte: found by their own rows' vectors, whose nearest row they are,
 * and by their key as a prefix. */
static void
test_partial_utf8_tokens(void **state)
{
    (void)state;
    encoder_id("the"); /* loads the table */
    /* the first ids (in id order) of one byte and of several bytes whose
     * bytes are not whole characters */
    const char *keys[2] = {NULL, NULL};
    json_int_t ids[2] = {-1, -1};
    const char *key;
    json_t *v;
    json_object_foreach(encoder, key, v) {
        unsigned char b[256];
        size_t n = key_bytes(key, b, sizeof b);
        char text[1024];
        int whole, slot = n == 1 ? 0 : 1;
        expected_text(key, text, sizeof text, &whole);
        json_int_t id = json_integer_value(v);
        if (!whole && (ids[slot] < 0 || id < ids[slot])) {
            ids[slot] = id;
            keys[slot] = key;
        }
    }
    assert_true(ids[0] >= 0 && ids[1] >= 0);
    for (int k = 0; k < 2; k++) {
        float vec[DIMS];
        gen_row((uint64_t)ids[k], vec);
        json_t *arr = json_array();
        for (int i = 0; i < DIMS; i++)
            json_array_append_new(arr, json_real(vec[i]));
        json_t *req = json_pack("{s:[{s:o, s:i}]}", "queries", "vector", arr,
                                "k", 2);
        char *body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        /* jansson refuses a body that is not valid UTF-8: a parsed reply
         * is valid JSON */
        struct t_resp r = post_ok(d.port, "/v1/neighbors", body);
        free(body);
        json_t *top = t_json_at(r.json, "result.results.0.neighbors.0");
        assert_int_equal(json_integer_value(json_object_get(top, "row")),
                         ids[k]);
        assert_int_equal(check_token_row(top, keys[k]), 0);
        assert_non_null(strstr(json_string_value(json_object_get(top,
                                                                 "text")),
                               "\xEF\xBF\xBD"));
        print_message("token %lld (%s) shows as \"%s\"\n", (long long)ids[k],
                      keys[k], json_string_value(json_object_get(top,
                                                                 "text")));
        t_resp_free(&r);

        char target[512], enc[256];
        pct(keys[k], enc, sizeof enc);
        snprintf(target, sizeof target, "/v1/words?prefix=%s&limit=50", enc);
        r = get_ok(d.port, target);
        check_token_rows(r.json, "result.words");
        t_resp_free(&r);
    }
}

/* On a word model nothing changes: rows have no "id" nor "text". */
static void
test_word_model_has_no_token_fields(void **state)
{
    (void)state;
    struct t_daemon wd = {0};
    const char *args[] = {t_fixture(), "--threads", "2", NULL};
    assert_int_equal(t_daemon_start(&wd, "words.log", args), 0);
    static const char *const lists[][2] = {
        {"/v1/neighbors?word=king&k=5", "result.neighbors"},
        {"/v1/analogy?q=king-man%2Bwoman&k=3&method=both&explain=1",
         "result.results.0.answers"},
        {"/v1/words?prefix=kin&limit=5", "result.words"},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        struct t_resp r = get_ok(wd.port, lists[i][0]);
        json_t *a = t_json_at(r.json, lists[i][1]);
        assert_true(json_array_size(a) > 0);
        size_t k;
        json_t *o;
        json_array_foreach(a, k, o) {
            assert_non_null(json_object_get(o, "word"));
            assert_null(json_object_get(o, "id"));
            assert_null(json_object_get(o, "text"));
        }
        assert_null(t_json_at(r.json, "result.terms.0.id"));
        t_resp_free(&r);
    }
    assert_int_equal(t_daemon_stop(&wd, SIGTERM), 0);

    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd, "%s query '%s' king -k 3 --json", t_semd(),
             t_fixture());
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *cli = json_loads(out, 0, &je);
    assert_non_null(cli);
    assert_null(t_json_at(cli, "neighbors.0.id"));
    assert_null(t_json_at(cli, "neighbors.0.text"));
    json_decref(cli);
    free(out);
}

/* ---------------------------------------------------------------- contract */

/* Every response above against openapi.yaml. The checker also wants every
 * route reached, which only test_http's full run does: of its failures,
 * only routes other than these two left unreached are accepted. */
static void
test_contract(void **state)
{
    (void)state;
    static const char *const mine[] = {"POST /v1/tokenize",
                                       "GET /v1/tokens/report", NULL};
    assert_true(t_contract_partial(mine) >= 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_reference),
        cmocka_unit_test(test_tokenize_text_and_cli),
        cmocka_unit_test(test_tokenize_edges),
        cmocka_unit_test(test_report_matches_cli),
        cmocka_unit_test(test_report_concurrent_first),
        cmocka_unit_test(test_neighbors_of_king),
        cmocka_unit_test(test_token_rows_everywhere),
        cmocka_unit_test(test_partial_utf8_tokens),
        cmocka_unit_test(test_word_model_has_no_token_fields),
        cmocka_unit_test(test_contract),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("tokens_http", tests, setup, teardown);
}
