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
 * token " king". Every response is checked against openapi.yaml by the
 * contract checker at the end.
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
    json_t *nb = t_json_at(r.json, "result.neighbors");
    assert_int_equal(json_array_size(nb), 5);
    size_t i;
    json_t *o;
    json_array_foreach(nb, i, o) {
        assert_true(json_integer_value(json_object_get(o, "row")) != king);
    }
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

/* ---------------------------------------------------------------- contract */

/* Every response above against openapi.yaml. The checker also wants every
 * route reached, which only test_http's full run does: of its failures,
 * only routes other than these two left unreached are accepted. */
static void
test_contract(void **state)
{
    (void)state;
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "node %s/../contract/validate.mjs %s/../../openapi.yaml %s 2>&1",
             t_datadir(), t_datadir(), t_path("contract.jsonl"));
    int rc = t_run(cmd, &out);
    unsigned checked = 0, total = 0, unreached = 0;
    const char *sum = strstr(out, "contract: ");
    if (!sum || sscanf(sum, "contract: %u of %u responses valid", &checked,
                       &total) != 2)
        fail_msg("the contract checker failed (%d): %s", rc, out);
    for (char *l = strstr(out, "contract: FAIL"); l;
         l = strstr(l + 1, "contract: FAIL")) {
        int other_route =
            !strncmp(l, "contract: FAIL no recorded request reached ", 43) &&
            strncmp(l + 43, "POST /v1/tokenize\n", 18) &&
            strncmp(l + 43, "GET /v1/tokens/report\n", 22);
        if (!other_route)
            fail_msg("%s", out);
        unreached++;
    }
    print_message("contract: %u of %u responses valid (%u routes left to "
                  "test_http)\n",
                  checked, total, unreached);
    assert_true(total >= 10);
    assert_int_equal(checked, total);
    assert_true(rc == 0 || rc == 1);
    free(out);
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
        cmocka_unit_test(test_contract),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("tokens_http", tests, setup, teardown);
}
