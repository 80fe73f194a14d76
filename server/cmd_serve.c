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
 * model and index, then ready. Stop order: HTTP (drains), batcher, the
 * current snapshot.
 */
#include "serve.h"

#include "commands.h"

#include <signal.h>
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

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int
load(struct server *srv, uint64_t version, struct semd_err *err)
{
    const struct config *cfg = srv->cfg;
    double t0 = now();
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    struct semd_snapshot *s = NULL;
    int rc = semd_model_open(&m, cfg->model, err);
    if (rc)
        return rc;
    struct semd_index_opts io = {0};
    io.factory = cfg->index;
    io.progress = 1;
    if ((rc = semd_index_open(&ix, m, &io, err)) != 0) {
        semd_model_close(m);
        return rc;
    }
    if ((rc = semd_snapshot_new(&s, m, ix, version, err)) != 0) {
        semd_index_close(ix);
        semd_model_close(m);
        return rc;
    }
    if ((rc = semd_holder_publish(srv->holder, s, err)) != 0)
        return rc;
    char q[400] = "";
    log_quote(q, sizeof q, cfg->model);
    log_info("msg=\"model loaded\" model=%s rows=%llu dims=%u index=%s "
             "version=%llu ms=%.1f", q, (unsigned long long)semd_model_rows(m),
             (unsigned)semd_model_dims(m), semd_index_factory(ix),
             (unsigned long long)version, (now() - t0) * 1000.0);
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
    if (semd_holder_new(&srv.holder, &err) != 0 ||
        batcher_start(&srv.batcher, cfg.threads, cfg.max_batch, &err) != 0 ||
        http_start(&h, &srv, &port, &err) != 0) {
        fprintf(stderr, "semd serve: %s\n", err.msg);
        goto out;
    }
    printf("semd: listening on http://%s%s%s:%d\n",
           strchr(cfg.host, ':') ? "[" : "", cfg.host,
           strchr(cfg.host, ':') ? "]" : "", port);
    fflush(stdout);
    log_info("msg=listening host=%s port=%d threads=%d max_connections=%u "
             "timeout_s=%u read_token=%s write_token=%s", cfg.host, port,
             cfg.threads, cfg.max_connections, cfg.timeout,
             cfg.read_token ? "set" : "none",
             cfg.write_token ? "set" : "none");
    if (load(&srv, 1, &err) != 0) {
        fprintf(stderr, "semd serve: %s\n", err.msg);
        goto out;
    }
    for (;;) {
        int sig;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            uint64_t next = semd_holder_version(srv.holder) + 1;
            struct semd_err e = {0};
            log_info("msg=reloading version=%llu", (unsigned long long)next);
            if (load(&srv, next, &e) != 0) {
                char q[600] = "";
                log_quote(q, sizeof q, e.msg);
                log_error("msg=\"reload failed; still serving version "
                          "%llu\" error=%s",
                          (unsigned long long)(next - 1), q);
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
    batcher_stop(srv.batcher);
    semd_holder_free(srv.holder);
    config_release(&cfg);
    if (status == 0)
        log_info("msg=stopped");
    return status;
}
