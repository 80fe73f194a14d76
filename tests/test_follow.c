/*
 * test_follow.c - `semd serve --follow DIR`, the read-only replica, as a
 * child process on loopback.
 *
 * The unit part plays the trainer by hand: it writes small generated
 * models into DIR/snapshots with the model writer and replaces DIR/CURRENT
 * atomically (write CURRENT.tmp, rename), as the snapshot directory
 * contract in README.md says. It checks that the follower is not ready
 * before the first snapshot, that its version rises and its answers change
 * with each CURRENT, that a client looping meanwhile never sees a failed
 * request, that write routes answer 403, and that a broken CURRENT keeps
 * the old snapshot serving.
 *
 * The end-to-end part runs a real trainer (`semd serve MODEL --train
 * --data-dir DIR`) and a follower of DIR as two processes, posts text to
 * the trainer and waits for the follower to serve what it learnt.
 */
#include "daemon.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WRITE_TOKEN "w-0123456789abcdef"

#define AUTH "Authorization: Bearer " WRITE_TOKEN "\r\n"

static struct t_daemon fol; /* follows dir "f" */

/* GET target on port: the status, and the JSON in *out when asked. */
static int
get(int port, const char *target, json_t **out)
{
    struct t_resp r;
    if (t_get(port, target, &r) != 0)
        fail_msg("GET %s: no response", target);
    int st = r.status;
    if (out)
        *out = json_incref(r.json);
    t_resp_free(&r);
    return st;
}

static json_int_t
version(int port)
{
    json_t *j = NULL;
    if (get(port, "/v1/ready", &j) != 200) {
        json_decref(j);
        return 0;
    }
    json_int_t v = json_integer_value(t_json_at(j, "result.version"));
    json_decref(j);
    return v;
}

static void
wait_version(int port, json_int_t want, double seconds, const char *log)
{
    double t0 = t_now();
    seconds *= t_scale();
    while (version(port) < want && t_now() - t0 < seconds)
        usleep(20 * 1000);
    if (version(port) < want)
        fail_msg("version %lld not reached in %.0f s (at %lld); log in %s",
                 (long long)want, seconds, (long long)version(port), log);
}

/* The neighbour words of word, comma-separated, in *out. */
static int
neighbours(int port, const char *word, char *out, size_t n)
{
    char target[128];
    snprintf(target, sizeof target, "/v1/neighbors?word=%s&k=5", word);
    json_t *j = NULL;
    int st = get(port, target, &j);
    out[0] = 0;
    size_t i;
    json_t *e;
    json_array_foreach(t_json_at(j, "result.neighbors"), i, e) {
        size_t len = strlen(out);
        snprintf(out + len, n - len, "%s%s", i ? "," : "",
                 t_json_str(e, "word"));
    }
    json_decref(j);
    return st;
}

/* ------------------------------------------------------------- the trainer
 * played by hand */

/* Writes dir/snapshots/v<version>.semd (dir under t_tmpdir): rows words
 * w0.. with vectors from seed (so another seed gives other neighbours). */
static void
snapshot(const char *dir, uint64_t version, uint64_t rows, uint64_t seed)
{
    char name[256];
    snprintf(name, sizeof name, "%s/snapshots/v%llu.semd", dir,
             (unsigned long long)version);
    t_random_model(name, rows, 16, seed);
}

/* Replaces dir/CURRENT (dir under t_tmpdir) atomically with text. */
static void
current(const char *dir, const char *text)
{
    char tmp[256], dst[256];
    snprintf(tmp, sizeof tmp, "%s/CURRENT.tmp", dir);
    snprintf(dst, sizeof dst, "%s/CURRENT", dir);
    t_write_file(t_path(tmp), text, strlen(text));
    char from[512];
    snprintf(from, sizeof from, "%s", t_path(tmp));
    if (rename(from, t_path(dst)) != 0)
        fail_msg("rename: %s", strerror(errno));
}

static void
advance(const char *dir, uint64_t version, uint64_t rows, uint64_t seed)
{
    snapshot(dir, version, rows, seed);
    char text[128];
    snprintf(text, sizeof text, "v%llu.semd %llu %llu\n",
             (unsigned long long)version, (unsigned long long)version,
             (unsigned long long)version * 10);
    current(dir, text);
}

static int
setup(void **state)
{
    (void)state;
    mkdir(t_path("f"), 0700);
    mkdir(t_path("f/snapshots"), 0700);
    const char *token = t_path("write.token");
    t_write_file(token, WRITE_TOKEN "\n", strlen(WRITE_TOKEN) + 1);
    chmod(token, 0600);
    const char *args[] = {"--follow", t_path("f"), "--threads", "2",
                          "--token-file", token, NULL};
    fol.live_only = 1; /* not ready before the first CURRENT */
    return t_daemon_start(&fol, "follow.log", args);
}

static int
teardown(void **state)
{
    (void)state;
    if (fol.pid)
        t_daemon_stop(&fol, SIGKILL);
    return 0;
}

/* ----------------------------------------------------------------- tests */

static void
test_not_ready_before_current(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(get(fol.port, "/v1/health", NULL), 200);
    assert_int_equal(get(fol.port, "/v1/ready", &j), 503);
    const char *msg = t_json_str(j, "error.message");
    if (!strstr(msg, "CURRENT"))
        fail_msg("not-ready message does not say why: %s", msg);
    json_decref(j);
    assert_int_equal(get(fol.port, "/v1/neighbors?word=w1&k=5", NULL), 503);
}

struct loop {
    int port;
    const char *words[5]; /* asked in turn */
    atomic_int stop; /* written by the test thread, read by the client */
    int ok, failed;
    char last_fail[256];
};

static void *
client_loop(void *arg)
{
    struct loop *l = arg;
    for (int i = 0; !l->stop; i++) {
        char target[64];
        snprintf(target, sizeof target, "/v1/neighbors?word=%s&k=5",
                 l->words[i % 5]);
        struct t_resp r;
        if (t_get(l->port, target, &r) == 0 &&
            r.status == 200 &&
            json_array_size(t_json_at(r.json, "result.neighbors")) == 5) {
            l->ok++;
        } else {
            l->failed++;
            snprintf(l->last_fail, sizeof l->last_fail, "status %d: %s",
                     r.status, t_json_str(r.json, "error.message"));
        }
        t_resp_free(&r);
    }
    return NULL;
}

static void
test_follows_each_version(void **state)
{
    (void)state;
    advance("f", 1, 400, 11);
    wait_version(fol.port, 1, 20, fol.log);
    char n1[512], n2[512], n3[512];
    assert_int_equal(neighbours(fol.port, "w0", n1, sizeof n1), 200);
    /* w450 exists only from version 3 on */
    assert_int_equal(get(fol.port, "/v1/vectors/w450", NULL), 404);

    struct loop l[2] = {{fol.port, {"w0", "w1", "w2", "w3", "w4"}, 0, 0, 0,
                         ""},
                        {fol.port, {"w5", "w6", "w7", "w8", "w9"}, 0, 0, 0,
                         ""}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, client_loop, &l[i]);
    usleep(200 * 1000);
    advance("f", 2, 400, 22);
    wait_version(fol.port, 2, 20, fol.log);
    assert_int_equal(neighbours(fol.port, "w0", n2, sizeof n2), 200);
    usleep(200 * 1000);
    /* the trainer removes old files; mappings of them stay valid */
    unlink(t_path("f/snapshots/v1.semd"));
    advance("f", 3, 500, 33);
    wait_version(fol.port, 3, 20, fol.log);
    assert_int_equal(neighbours(fol.port, "w0", n3, sizeof n3), 200);
    usleep(200 * 1000);
    for (int i = 0; i < 2; i++) {
        l[i].stop = 1;
        pthread_join(th[i], NULL);
    }
    print_message("v1 %s\nv2 %s\nv3 %s\nduring two swaps: %d answered, %d "
                  "failed %s\n", n1, n2, n3, l[0].ok + l[1].ok,
                  l[0].failed + l[1].failed, l[0].last_fail);
    assert_int_equal(l[0].failed + l[1].failed, 0);
    assert_true(l[0].ok + l[1].ok > 20);
    assert_string_not_equal(n1, n2);
    assert_string_not_equal(n2, n3);
    assert_int_equal(get(fol.port, "/v1/vectors/w450", NULL), 200);

    json_t *j = NULL;
    assert_int_equal(get(fol.port, "/v1/model", &j), 200);
    assert_int_equal(json_integer_value(t_json_at(j, "result.version")), 3);
    assert_int_equal(json_integer_value(t_json_at(j, "result.rows")), 500);
    assert_string_equal(t_json_str(j, "result.follow.dir"), t_path("f"));
    assert_int_equal(json_integer_value(t_json_at(j,
                                                  "result.follow.version")),
                     3);
    assert_int_equal(json_integer_value(t_json_at(j,
                                                  "result.follow.journal_seq")),
                     30);
    assert_string_equal(t_json_str(j, "result.follow.file"), "v3.semd");
    json_decref(j);
}

static void
test_writes_forbidden(void **state)
{
    (void)state;
    const char *routes[] = {"/v1/reload", "/v1/train"};
    for (int i = 0; i < 2; i++) {
        struct t_resp r;
        /* even with the right token: a replica takes no writes */
        if (t_request(fol.port, "POST", routes[i], "text/plain", "a b c", 5,
                      AUTH, &r) != 0)
            fail_msg("POST %s: no response", routes[i]);
        /* /v1/train may not exist in this build: 404 then, never 2xx */
        if (r.status == 404 && i == 1) {
            t_resp_free(&r);
            continue;
        }
        assert_int_equal(r.status, 403);
        const char *msg = t_json_str(r.json, "error.message");
        if (!strstr(msg, "read-only") || !strstr(msg, t_path("f")))
            fail_msg("POST %s: unclear 403 message: %s", routes[i], msg);
        t_resp_free(&r);
    }
}

static void
test_bad_current_keeps_serving(void **state)
{
    (void)state;
    json_int_t v = version(fol.port);
    assert_true(v >= 3);
    char text[128];
    /* a missing file, a name outside snapshots/, garbage, an old version,
     * a file that is not a model */
    snprintf(text, sizeof text, "v%lld.semd %lld 1\n", (long long)v + 1,
             (long long)v + 1);
    const char *bad[] = {text, "../CURRENT 99 1\n", "hello\n",
                         "v1.semd 1 1\n", "v98.semd 98 1\n"};
    t_write_file(t_path("f/snapshots/v98.semd"), "not a model", 11);
    char prev[256] = "(none)";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        current("f", bad[i]);
        json_t *j = NULL;
        const char *err = "(none)";
        /* each one is refused with its own message */
        for (double t0 = t_now(); t_now() - t0 < 5 * t_scale();
             usleep(20 * 1000)) {
            json_decref(j);
            assert_int_equal(get(fol.port, "/v1/model", &j), 200);
            err = t_json_str(j, "result.follow.last_error");
            if (strcmp(err, prev))
                break;
        }
        print_message("CURRENT %.*s -> %s\n", (int)strcspn(bad[i], "\n"),
                      bad[i], err);
        assert_string_not_equal(err, prev);
        snprintf(prev, sizeof prev, "%s", err);
        assert_int_equal(json_integer_value(t_json_at(j, "result.version")),
                         v);
        json_decref(j);
        char n[512];
        assert_int_equal(neighbours(fol.port, "w0", n, sizeof n), 200);
    }
    /* and a good one after them is followed */
    advance("f", (uint64_t)v + 2, 300, 44);
    wait_version(fol.port, v + 2, 20, fol.log);
    json_t *j = NULL;
    assert_int_equal(get(fol.port, "/v1/model", &j), 200);
    assert_true(json_is_null(t_json_at(j, "result.follow.last_error")));
    json_decref(j);
}

static void
test_usage(void **state)
{
    (void)state;
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s serve %s --follow %s 2>&1", t_semd(),
             t_fixture(), t_path("f"));
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "not both"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve --help", t_semd());
    assert_int_equal(t_run(cmd, &out), 0);
    assert_non_null(strstr(out, "--follow"));
    assert_non_null(strstr(out, "SEMD_FOLLOW"));
    free(out);
}

static void
test_follow_with_index(void **state)
{
    (void)state;
    /* SEMD_FOLLOW as the container sets it; SEMD_MODEL does not apply */
    setenv("SEMD_FOLLOW", t_path("f"), 1);
    setenv("SEMD_MODEL", "/nonexistent.semd", 1);
    struct t_daemon d = {.live_only = 1};
    const char *args[] = {"--index", "HNSW16", NULL};
    int rc = t_daemon_start(&d, "follow-hnsw.log", args);
    unsetenv("SEMD_FOLLOW");
    unsetenv("SEMD_MODEL");
    assert_int_equal(rc, 0);
    json_int_t v = version(fol.port);
    wait_version(d.port, v, 30, d.log);
    json_t *j = NULL;
    assert_int_equal(get(d.port, "/v1/model", &j), 200);
    if (!strstr(t_json_str(j, "result.index.factory"), "HNSW"))
        fail_msg("index is %s", t_json_str(j, "result.index.factory"));
    assert_false(json_is_true(t_json_at(j, "result.index.exact")));
    json_decref(j);
    /* a newer snapshot gets its own index before it is swapped in */
    advance("f", (uint64_t)v + 1, 300, 55);
    wait_version(d.port, v + 1, 30, d.log);
    assert_int_equal(get(d.port, "/v1/model", &j), 200);
    if (!strstr(t_json_str(j, "result.index.factory"), "HNSW"))
        fail_msg("index is %s", t_json_str(j, "result.index.factory"));
    json_decref(j);
    char n[512];
    assert_int_equal(neighbours(d.port, "w0", n, sizeof n), 200);
    assert_int_equal(t_daemon_stop(&d, SIGTERM), 0);
}

/* ------------------------------------------------- trainer and follower */

/* Posts text to the trainer, waiting while it answers 503 (starting). */
static void
train(int port, const char *text)
{
    struct t_resp r = {0};
    for (double t0 = t_now(); t_now() - t0 < 60 * t_scale();
         usleep(50 * 1000)) {
        t_resp_free(&r);
        if (t_request(port, "POST", "/v1/train", "text/plain", text,
                      strlen(text), AUTH, &r) != 0)
            fail_msg("POST /v1/train: no response");
        if (r.status != 503)
            break;
    }
    if (r.status < 200 || r.status > 299)
        fail_msg("POST /v1/train: %d %s", r.status,
                 t_json_str(r.json, "error.message"));
    t_resp_free(&r);
}

static void
test_trainer_and_follower(void **state)
{
    (void)state;
    char cmd[1024], *help = NULL;
    snprintf(cmd, sizeof cmd, "%s serve --help", t_semd());
    t_run(cmd, &help);
    int have = help && strstr(help, "--train") && strstr(help, "--data-dir");
    free(help);
    if (!have) {
        print_message("semd serve has no --train --data-dir yet: skipping "
                      "the trainer-and-follower test\n");
        skip();
    }
    const char *data = t_path("data");
    mkdir(data, 0700);
    /* neither is ready before it has a snapshot */
    struct t_daemon tr = {.live_only = 1}, fo = {.live_only = 1};
    const char *targs[] = {t_fixture(), "--train", "--data-dir", data,
                           "--token-file", t_path("write.token"),
                           "--publish-interval", "0.2",
                           "--persist-interval", "0.5", "--min-count", "2",
                           "--threads", "2", NULL};
    if (t_daemon_start(&tr, "trainer.log", targs) != 0)
        fail_msg("the trainer did not start; log in %s", t_path(
                     "trainer.log"));
    const char *fargs[] = {"--follow", data, "--threads", "2", NULL};
    assert_int_equal(t_daemon_start(&fo, "follower.log", fargs), 0);

    struct t_resp r;
    if (t_get(tr.port, "/v1/train", &r) != 0)
        fail_msg("GET /v1/train: no response");
    int train_status = r.status;
    t_resp_free(&r);
    if (train_status == 404) {
        print_message("semd serve --train has no /v1/train route yet: "
                      "skipping the trainer-and-follower test\n");
        t_daemon_stop(&fo, SIGKILL);
        t_daemon_stop(&tr, SIGKILL);
        skip();
    }
    /* first text: the trainer persists, the follower becomes ready */
    static char text[65536];
    size_t n = 0;
    for (int i = 0; i < 200 && n < sizeof text - 200; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "the cat sat on the mat with the dog . ");
    train(tr.port, text);
    wait_version(fo.port, 1, 60, fo.log);
    json_int_t v0 = version(fo.port);
    assert_int_equal(get(fo.port, "/v1/vectors/zorblax", NULL), 404);

    struct loop l = {fo.port, {"cat", "dog", "king", "mat", "the"}, 0, 0, 0,
                     ""};
    pthread_t th;
    pthread_create(&th, NULL, client_loop, &l);
    /* then a word the fixture lacks, in contexts it knows */
    n = 0;
    for (int i = 0; i < 300 && n < sizeof text - 200; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "the zorblax sat on the mat with the cat . "
                              "the king saw the zorblax . ");
    train(tr.port, text);
    int got = 0;
    for (double t0 = t_now(); t_now() - t0 < 60 * t_scale() && !got;
         usleep(100 * 1000))
        got = get(fo.port, "/v1/vectors/zorblax", NULL) == 200;
    json_int_t v1 = version(fo.port);
    usleep(200 * 1000);
    l.stop = 1;
    pthread_join(th, NULL);
    print_message("follower version %lld -> %lld, zorblax %s; %d answered, "
                  "%d failed %s\n", (long long)v0, (long long)v1,
                  got ? "learnt" : "missing", l.ok, l.failed, l.last_fail);
    assert_true(got);
    assert_true(v1 > v0);
    assert_int_equal(l.failed, 0);
    assert_true(l.ok > 10);
    t_daemon_stop(&fo, SIGTERM);
    t_daemon_stop(&tr, SIGTERM);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_ready_before_current),
        cmocka_unit_test(test_follows_each_version),
        cmocka_unit_test(test_writes_forbidden),
        cmocka_unit_test(test_bad_current_keeps_serving),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_follow_with_index),
        cmocka_unit_test(test_trainer_and_follower),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("follow", tests, setup, teardown);
}
