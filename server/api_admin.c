/*
 * api_admin.c - the operational endpoints: health, readiness, model
 * description, metrics and reload. Handlers take a parsed request and a
 * snapshot and fill a reply; no HTTP library types, so they can be called
 * without sockets.
 *
 * Called from request threads, concurrently; they only read snapshots.
 */
#include "serve.h"

#include <stdlib.h>
#include <time.h>

static json_t *
iso_time(double t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

void
api_health(struct api_req *rq, struct api_reply *rp)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    double now = (double)t.tv_sec + t.tv_nsec / 1e9;
    reply_ok(rp, 200, json_pack("{s:s, s:f}", "status", "ok", "uptime_s",
                                now - rq->srv->started));
}

void
api_ready(struct api_req *rq, struct api_reply *rp)
{
    struct semd_snapshot *s = semd_holder_acquire(rq->srv->holder);
    if (!s) {
        if (rq->srv->cfg && rq->srv->cfg->follow)
            reply_error(rp, ERR_NOT_READY, NULL,
                        "no snapshot loaded yet from '%s' (waiting for its "
                        "CURRENT)", rq->srv->cfg->follow);
        else
            reply_error(rp, ERR_NOT_READY, NULL,
                        "the model and its index are still loading");
        return;
    }
    reply_ok(rp, 200, json_pack("{s:b, s:I}", "ready", 1, "version",
                                (json_int_t)semd_snapshot_version(s)));
    semd_snapshot_release(s);
}

void
api_model(struct api_req *rq, struct api_reply *rp)
{
    const struct semd_model *m = semd_snapshot_model(rq->snap);
    const struct semd_index *ix = semd_snapshot_index(rq->snap);
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    char checksum[16];
    snprintf(checksum, sizeof checksum, "%08x", in.checksum);
    /* the exact index answers while the one asked for is loading */
    int state = atomic_load(&rq->srv->index_state);
    /* The loader publishes the approximate index before it marks it ready:
     * a snapshot that already holds it speaks for itself. */
    if (state == INDEX_LOADING && !semd_index_is_exact(ix))
        state = INDEX_READY;
    const char *want = rq->srv->cfg && rq->srv->cfg->index
                       ? rq->srv->cfg->index : "Flat";
    json_t *o = json_pack(
        "{s:I, s:i, s:s, s:s, s:s, s:s, s:o, s:b, s:I, s:o, "
        "s:{s:s, s:b, s:s, s:s}, s:{s:s}}",
        "rows", (json_int_t)in.rows, "dims", (int)in.dims, "dtype", "f32",
        "source", in.source, "source_format", in.source_format, "checksum",
        checksum, "created", iso_time((double)in.created),
        "counts_are_ranks", (in.flags & SEMD_MODEL_COUNTS_ARE_RANKS) != 0,
        "version", (json_int_t)semd_snapshot_version(rq->snap), "loaded_at",
        iso_time(semd_snapshot_loaded_at(rq->snap)), "index", "factory",
        semd_index_factory(ix), "exact", semd_index_is_exact(ix) != 0,
        "requested", want, "state", index_state_name(state),
        "training", "state", rq->srv->online ? "on" : "off");
    if (!o) {
        reply_error(rp, ERR_INTERNAL, NULL, "cannot build the model reply");
        return;
    }
    /* a replica says what it follows and which snapshot it took last */
    if (rq->srv->follow)
        json_object_set_new(o, "follow", follow_json(rq->srv->follow));
    reply_ok(rp, 200, o);
}

void
api_metrics(struct api_req *rq, struct api_reply *rp)
{
    size_t len;
    char *text = metrics_render(rq->srv, &len);
    if (!text) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for metrics");
        return;
    }
    rp->status = 200;
    rp->text = text;
    rp->text_len = len;
    rp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

void
api_reload(struct api_req *rq, struct api_reply *rp)
{
    /* reloading maps a file and may build an index: never in a handler */
    serve_request_reload();
    reply_ok(rp, 202, json_pack("{s:b, s:I}", "accepted", 1,
                                "current_version",
                                (json_int_t)semd_holder_version(
                                    rq->srv->holder)));
}
