/*
 * cmd_serve.c - `semd serve MODEL`: start order, signals, reload, stop.
 *
 * The main thread blocks SIGHUP, SIGTERM and SIGINT before any other
 * thread exists (so every thread inherits the mask) and then waits for
 * them with sigwait: no handler runs asynchronously. SIGHUP (or POST
 * /v1/reload, which raises it) maps the model file again, loads its
 * index and publishes a new snapshot with the next version; requests in
 * flight finish on the old one. SIGTERM and SIGINT stop accepting, let
 * in-flight requests finish, stop the scoring threads and return 0.
 *
 * Start order: HTTP first (health answers, ready says 503), then the
 * model with its exact index, then ready. An approximate index (--index
 * HNSW32...) can take seconds to read and minutes to build, so a loader
 * thread opens it in the background while the exact index answers
 * (correct, only slower); when it is ready it is published as a new
 * snapshot of the same file, so requests in flight finish on the exact
 * one and none fails. At most one loader runs: a reload waits for it
 * first. Publishing takes publish_lock so that versions only grow. Stop
 * order: HTTP (drains), the loader, batcher, the current snapshot.
 */
#include "serve.h"

#include "commands.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_MS 10000u

void
serve_request_reload(void)
{
    /* every thread blocks SIGHUP; the main thread's sigwait takes it */
    kill(getpid(), SIGHUP);
}

/*
 * Threads that libraries start before main() (OpenBLAS's pool) do not
 * inherit the mask serve sets, so the kernel may deliver SIGTERM to one
 * of them while the main thread is busy reloading, and the default
 * action would kill the process instead of draining. This handler runs
 * only on such a thread and hands the signal to the main thread, which
 * blocks it and takes it with sigwait. Written once before any handler
 * can run; tgkill is async-signal-safe.
 */
static pid_t main_tid;

static void
forward_to_main(int sig)
{
    syscall(SYS_tgkill, getpid(), main_tid, sig);
}

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* The background loader of the approximate index; one at a time. */
static struct {
    pthread_mutex_t publish_lock; /* version + 1 and publish, atomically */
    pthread_t thread;
    int running;                  /* started and not yet joined */
    atomic_int cancel;            /* a reload or a stop wants it ended */
} loader = {.publish_lock = PTHREAD_MUTEX_INITIALIZER};

/* Asked by the index build between chunks of rows. */
static int
loader_cancelled(void *arg)
{
    (void)arg;
    return atomic_load(&loader.cancel);
}

static int
is_exact(const char *factory)
{
    return !factory || !*factory || strcmp(factory, "Flat") == 0;
}

/* Bundles m and ix and publishes them as the next version. On failure m
 * and ix are closed. */
static int
publish(struct server *srv, struct semd_model *m, struct semd_index *ix,
        uint64_t *version, struct semd_err *err)
{
    struct semd_snapshot *s = NULL;
    pthread_mutex_lock(&loader.publish_lock);
    uint64_t v = semd_holder_version(srv->holder) + 1;
    int rc = semd_snapshot_new(&s, m, ix, v, err);
    if (rc) {
        pthread_mutex_unlock(&loader.publish_lock);
        semd_index_close(ix);
        semd_model_close(m);
        return rc;
    }
    /* publish releases s itself when it refuses it */
    rc = semd_holder_publish(srv->holder, s, err);
    pthread_mutex_unlock(&loader.publish_lock);
    *version = v;
    return rc;
}

static void
log_loaded(const struct semd_model *m, const struct semd_index *ix,
           const char *model, uint64_t version, double t0)
{
    char q[400] = "";
    log_quote(q, sizeof q, model);
    log_info("msg=\"model loaded\" model=%s rows=%llu dims=%u index=%s "
             "version=%llu ms=%.1f", q, (unsigned long long)semd_model_rows(m),
             (unsigned)semd_model_dims(m), semd_index_factory(ix),
             (unsigned long long)version, (now() - t0) * 1000.0);
}

/* The loader thread: maps the file again (the exact snapshot owns its own
 * mapping; the pages are shared) and reads or builds the index. */
static void *
load_approx(void *arg)
{
    struct server *srv = arg;
    const struct config *cfg = srv->cfg;
    double t0 = now();
    struct semd_err err = {0};
    /* requests come first: on Linux nice is per thread, and the threads
     * FAISS starts to build inherit it */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        log_info("msg=\"index loader keeps normal priority\"");
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    uint64_t v = 0;
    struct semd_index_opts io = {0};
    io.factory = cfg->index;
    io.progress = 1;
    io.cancel = loader_cancelled;
    int rc = semd_model_open(&m, cfg->model, &err);
    if (rc == 0 && (rc = semd_index_open(&ix, m, &io, &err)) != 0)
        semd_model_close(m);
    if (rc == 0)
        rc = publish(srv, m, ix, &v, &err);
    if (rc == SEMD_ESHUTDOWN) {
        log_info("msg=\"index build cancelled\" index=%s", cfg->index);
        return NULL;
    }
    if (rc) {
        char q[600] = "";
        log_quote(q, sizeof q, err.msg);
        atomic_store(&srv->index_state, INDEX_FAILED);
        log_error("msg=\"index failed; the exact index keeps answering\" "
                  "index=%s error=%s", cfg->index, q);
        return NULL;
    }
    atomic_store(&srv->index_state, INDEX_READY);
    log_loaded(m, ix, cfg->model, v, t0);
    return NULL;
}

/* Ends the loader, cancelling a build still running: a reload brings a
 * new file whose index is loaded or built afresh, and a stop must not
 * wait minutes for an index nobody will query. */
static void
loader_join(void)
{
    if (!loader.running)
        return;
    atomic_store(&loader.cancel, 1);
    pthread_join(loader.thread, NULL);
    atomic_store(&loader.cancel, 0);
    loader.running = 0;
}

/* Maps the model and publishes it with its exact index; starts the
 * loader when an approximate index is asked for. */
static int
load(struct server *srv, struct semd_err *err)
{
    const struct config *cfg = srv->cfg;
    double t0 = now();
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    uint64_t v = 0;
    int approx = !is_exact(cfg->index);
    if (loader.running) {
        log_info("msg=\"ending the index load in progress\"");
        loader_join();
    }
    int rc = semd_model_open(&m, cfg->model, err);
    if (rc)
        return rc;
    struct semd_index_opts io = {0}; /* exact */
    if ((rc = semd_index_open(&ix, m, &io, err)) != 0) {
        semd_model_close(m);
        return rc;
    }
    atomic_store(&srv->index_state, approx ? INDEX_LOADING : INDEX_NONE);
    if ((rc = publish(srv, m, ix, &v, err)) != 0)
        return rc;
    log_loaded(m, ix, cfg->model, v, t0);
    if (!approx)
        return SEMD_OK;
    log_info("msg=\"loading index in the background\" index=%s", cfg->index);
    if (pthread_create(&loader.thread, NULL, load_approx, srv) != 0) {
        atomic_store(&srv->index_state, INDEX_FAILED);
        log_error("msg=\"cannot start the index loader\" index=%s",
                  cfg->index);
        return SEMD_OK;
    }
    loader.running = 1;
    return SEMD_OK;
}

int
cmd_serve(int argc, char **argv)
{
    struct config cfg;
    int rc = config_parse(&cfg, argc, argv);
    if (rc) {
        config_release(&cfg);
        return rc == 1 ? 0 : 2;
    }
    struct semd_err err = {0};
    if (config_load_tokens(&cfg, &err) != 0) {
        fprintf(stderr, "semd serve: %s\n", err.msg);
        config_release(&cfg);
        return 1;
    }
    log_info("msg=\"thread policy\" request_threads=%d %s", cfg.threads,
             main_thread_policy(cfg.threads));
    /* jansson's hash seed, once, before threads create objects */
    json_object_seed(0);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    main_tid = (pid_t)syscall(SYS_gettid);
    struct sigaction fwd = {.sa_handler = forward_to_main};
    sigfillset(&fwd.sa_mask);
    sigaction(SIGHUP, &fwd, NULL);
    sigaction(SIGTERM, &fwd, NULL);
    sigaction(SIGINT, &fwd, NULL);

    struct server srv = {0};
    srv.cfg = &cfg;
    srv.started = now();
    /* OpenMP's thread count is a per-thread setting: main_thread_policy
     * set it for this thread only, so each request thread applies the
     * same value on its first request (http.c) */
    srv.omp_threads = cfg.threads > 1 ? 1 : 0;
    metrics_init();
    struct http *h = NULL;
    int port = 0, status = 1;
    /* the trainer exists before request threads do; it serves the
     * snapshot DATA_DIR/CURRENT names, else the model argument */
    const char *first_model = NULL;
    uint64_t first_version = 0;
    if (cfg.train && online_new(&srv.online, &cfg, &first_model,
                                &first_version, &err) != 0) {
        fprintf(stderr, "semd serve: %s\n", err.msg);
        goto out;
    }
    /* A follower publishes what DIR/CURRENT names, and a trainer what it
     * learns, each from its own thread; /v1/ready answers 503 until the
     * first snapshot is in. Both start before the request threads, which
     * read srv.follow and srv.online. */
    if (semd_holder_new(&srv.holder, &err) != 0 ||
        batcher_start(&srv.batcher, cfg.threads, cfg.max_batch, &err) != 0 ||
        cache_new(&srv.cache, cfg.cache_size, cfg.cache_bytes, &err) != 0 ||
        (cfg.follow && follow_start(&srv.follow, &srv, &err) != 0) ||
        (srv.online &&
         online_start(srv.online, srv.holder, &srv.index_state, &err) != 0) ||
        http_start(&h, &srv, &port, &err) != 0) {
        fprintf(stderr, "semd serve: %s\n", err.msg);
        goto out;
    }
    printf("semd: listening on %s://%s%s%s:%d\n",
           cfg.tls_cert ? "https" : "http",
           strchr(cfg.host, ':') ? "[" : "", cfg.host,
           strchr(cfg.host, ':') ? "]" : "", port);
    fflush(stdout);
    log_info("msg=listening host=%s port=%d threads=%d max_connections=%u "
             "timeout_s=%u read_token=%s write_token=%s", cfg.host, port,
             cfg.threads, cfg.max_connections, cfg.timeout,
             cfg.read_token ? "set" : "none",
             cfg.write_token ? "set" : "none");
    if (!cfg.follow && !srv.online && load(&srv, &err) != 0) {
        fprintf(stderr, "semd serve: %s\n", err.msg);
        goto out;
    }
    for (;;) {
        int sig;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP && srv.follow) {
            log_info("msg=\"reading CURRENT again\"");
            follow_check(srv.follow);
            continue;
        }
        if (sig == SIGHUP && srv.online) {
            log_info("msg=\"reload ignored: the trainer publishes the "
                     "versions\"");
            continue;
        }
        if (sig == SIGHUP) {
            struct semd_err e = {0};
            log_info("msg=reloading");
            if (load(&srv, &e) != 0) {
                char q[600] = "";
                log_quote(q, sizeof q, e.msg);
                log_error("msg=\"reload failed; still serving version "
                          "%llu\" error=%s",
                          (unsigned long long)semd_holder_version(srv.holder),
                          q);
            }
            continue;
        }
        log_info("msg=\"stopping\" signal=%s",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    status = 0;
out:
    atomic_store(&srv.draining, 1);
    http_stop(h, DRAIN_MS);
    /* after the last request, which may read its state; no publish after
     * this: the holder is freed below */
    follow_stop(srv.follow);
    /* after the last request: persists what was trained */
    online_free(srv.online);
    if (loader.running)
        log_info("msg=\"ending the index load in progress\"");
    loader_join();
    batcher_stop(srv.batcher);
    cache_free(srv.cache);
    semd_holder_free(srv.holder);
    config_release(&cfg);
    if (status == 0)
        log_info("msg=stopped");
    return status;
}
