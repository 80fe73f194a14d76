/*
 * follow.c - `semd serve --follow DIR`: a read-only replica of the
 * snapshots a training server persists to DIR.
 *
 * The trainer writes DIR/snapshots/v<VERSION>.semd with the model writer
 * (temp file, fsync, rename) and only then replaces DIR/CURRENT, one line
 * "v<VERSION>.semd <VERSION> <JOURNAL_SEQ>", atomically. So when CURRENT
 * names a file, that file is complete: the follower maps it (after
 * semd_model_open has checked its structure), builds or loads the index
 * asked for with --index, and publishes the bundle through the snapshot
 * holder. Requests in flight finish on the old snapshot, whose mapping
 * stays valid even after the trainer unlinks the file; no request waits
 * for a swap and none fails during one.
 *
 * Invariants: the published version only rises (the holder refuses
 * anything not newer); a CURRENT whose contents were already handled,
 * well or badly, is not handled again until it changes or SIGHUP asks
 * (so a broken snapshot is logged once, not every second).
 *
 * Threads: one follower thread does all the work. It wakes on inotify
 * events in DIR where the kernel has them, else (and also) every second.
 * The main thread starts it, pokes it on SIGHUP and stops it; request
 * threads only read the followed state under the mutex.
 */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#define POLL_MS 1000
#define CURRENT_MAX 512 /* bytes of CURRENT we accept */

struct follow {
    struct server *srv;
    char *dir;
    pthread_t thread;
    int started;
    int wake[2];       /* pipe: a byte wakes the thread, closing stops it */
    atomic_int stop;
    atomic_int recheck; /* SIGHUP: handle CURRENT even if already seen */
    int ino;           /* inotify descriptor, -1 without */
    int watching;      /* the watch on dir is in place */
    char seen[CURRENT_MAX + 1]; /* CURRENT's contents last handled */

    pthread_mutex_t mu; /* guards the fields below */
    uint64_t version;
    uint64_t journal_seq;
    char file[CURRENT_MAX + 1];
    double followed_at;
    char last_error[256];
};

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void
set_error(struct follow *f, const char *msg)
{
    char q[600] = "";
    log_quote(q, sizeof q, msg);
    log_error("msg=\"cannot follow snapshot; still serving version %llu\" "
              "error=%s", (unsigned long long)semd_holder_version(
                                  f->srv->holder), q);
    pthread_mutex_lock(&f->mu);
    snprintf(f->last_error, sizeof f->last_error, "%s", msg);
    pthread_mutex_unlock(&f->mu);
}

static int
parse_u64(const char *s, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    if (s == end)
        return -1;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Parses "NAME VERSION SEQ\n"; NAME must be a plain file name ending in
 * .semd (CURRENT never points outside DIR/snapshots). */
static int
parse_current(const char *text, char *name, size_t name_n, uint64_t *version,
              uint64_t *seq, struct semd_err *err)
{
    const char *p = text, *sp1 = strchr(p, ' ');
    const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    const char *nl = sp2 ? strchr(sp2 + 1, '\n') : NULL;
    if (!sp1 || !sp2 || !nl || nl[1] || sp1 == p ||
        (size_t)(sp1 - p) >= name_n)
        return semd_err_set(err, SEMD_EFORMAT,
                            "CURRENT must be one line 'v<VERSION>.semd "
                            "<VERSION> <JOURNAL_SEQ>', not '%.*s'",
                            (int)(strcspn(text, "\n") > 80
                                      ? 80 : strcspn(text, "\n")), text);
    memcpy(name, p, (size_t)(sp1 - p));
    name[sp1 - p] = 0;
    size_t nlen = strlen(name);
    if (strchr(name, '/') || name[0] == '.' || nlen < 6 ||
        strcmp(name + nlen - 5, ".semd"))
        return semd_err_set(err, SEMD_EFORMAT,
                            "CURRENT names '%s', not a snapshot file name "
                            "like 'v12.semd'", name);
    if (parse_u64(sp1 + 1, sp2, version) != 0 ||
        parse_u64(sp2 + 1, nl, seq) != 0)
        return semd_err_set(err, SEMD_EFORMAT,
                            "CURRENT has a version or sequence that is not "
                            "a number: '%.*s'", (int)strcspn(text, "\n"),
                            text);
    return SEMD_OK;
}

/* Reads CURRENT into buf: 1 when read, 0 when absent, -1 on error. */
static int
read_current(struct follow *f, char *buf, size_t n, struct semd_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/CURRENT", f->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        semd_err_set(err, SEMD_EIO, "cannot open '%s': %s", path,
                     strerror(errno));
        return -1;
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, n - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            semd_err_set(err, SEMD_EIO, "cannot read '%s': %s", path,
                         strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0 || (got += (size_t)r) == n - 1)
            break;
    }
    close(fd);
    buf[got] = 0;
    if (got == n - 1 || strlen(buf) != got) {
        semd_err_set(err, SEMD_EFORMAT, "'%s' is not one short line of "
                     "text", path);
        return -1;
    }
    return 1;
}

/* Maps the snapshot CURRENT names, indexes it and publishes it. */
static int
follow_one(struct follow *f, const char *name, uint64_t version, uint64_t seq,
           struct semd_err *err)
{
    struct server *srv = f->srv;
    double t0 = now();
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/snapshots/%s", f->dir, name)
        >= sizeof path)
        return semd_err_set(err, SEMD_EINVAL, "snapshot path too long in "
                            "'%s'", f->dir);
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    struct semd_snapshot *s = NULL;
    int rc = semd_model_open(&m, path, err);
    if (rc)
        return rc;
    struct semd_index_opts io = {0};
    io.factory = srv->cfg->index;
    if ((rc = semd_index_open(&ix, m, &io, err)) != 0) {
        semd_model_close(m);
        return rc;
    }
    if ((rc = semd_snapshot_new(&s, m, ix, version, err)) != 0) {
        semd_index_close(ix);
        semd_model_close(m);
        return rc;
    }
    int exact = semd_index_is_exact(ix) != 0;
    /* what the log line needs, read while s is surely alive */
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    char factory[128];
    snprintf(factory, sizeof factory, "%s", semd_index_factory(ix));
    /* under the mutex, so that /v1/model never shows the new version
     * with the old file (publishing is only a pointer swap) */
    pthread_mutex_lock(&f->mu);
    if ((rc = semd_holder_publish(srv->holder, s, err)) != 0) {
        pthread_mutex_unlock(&f->mu);
        return rc;
    }
    atomic_store(&srv->index_state, exact ? INDEX_NONE : INDEX_READY);
    f->version = version;
    f->journal_seq = seq;
    snprintf(f->file, sizeof f->file, "%s", name);
    f->followed_at = now();
    f->last_error[0] = 0;
    pthread_mutex_unlock(&f->mu);
    char q[PATH_MAX + 8] = "";
    log_quote(q, sizeof q, path);
    log_info("msg=\"snapshot followed\" model=%s rows=%llu dims=%u "
             "index=%s version=%llu journal_seq=%llu ms=%.1f", q,
             (unsigned long long)rows, (unsigned)dims, factory,
             (unsigned long long)version, (unsigned long long)seq,
             (now() - t0) * 1000.0);
    return SEMD_OK;
}

static void
check(struct follow *f)
{
    char text[CURRENT_MAX + 1];
    struct semd_err err = {0};
    int r = read_current(f, text, sizeof text, &err);
    if (r == 0)
        return;
    if (r < 0)
        snprintf(text, sizeof text, "error: %.400s", err.msg);
    int again = atomic_exchange(&f->recheck, 0);
    if (!again && !strcmp(text, f->seen))
        return;
    snprintf(f->seen, sizeof f->seen, "%s", text);
    if (r < 0) {
        set_error(f, err.msg);
        return;
    }
    char name[CURRENT_MAX + 1];
    uint64_t version = 0, seq = 0;
    if (parse_current(text, name, sizeof name, &version, &seq, &err) != 0) {
        set_error(f, err.msg);
        return;
    }
    uint64_t have = semd_holder_version(f->srv->holder);
    if (version <= have) {
        if (version < have) {
            char msg[200];
            snprintf(msg, sizeof msg, "CURRENT names version %llu, older "
                     "than the %llu being served", (unsigned long long)version,
                     (unsigned long long)have);
            set_error(f, msg);
        }
        return;
    }
    if (follow_one(f, name, version, seq, &err) != 0)
        set_error(f, err.msg);
}

/* Puts the inotify watch on dir once it exists (the trainer may create
 * it after the follower starts). */
static void
watch(struct follow *f)
{
    if (f->ino < 0 || f->watching)
        return;
    if (inotify_add_watch(f->ino, f->dir, IN_MOVED_TO | IN_CLOSE_WRITE |
                                          IN_CREATE | IN_DELETE_SELF |
                                          IN_MOVE_SELF) >= 0)
        f->watching = 1;
}

static void *
run(void *arg)
{
    struct follow *f = arg;
    while (!atomic_load(&f->stop)) {
        watch(f);
        check(f);
        struct pollfd p[2] = {{f->wake[0], POLLIN, 0}, {f->ino, POLLIN, 0}};
        int n = poll(p, f->watching ? 2 : 1, POLL_MS);
        if (n <= 0)
            continue;
        char buf[4096]
            __attribute__((aligned(__alignof__(struct inotify_event))));
        if (p[0].revents)
            while (read(f->wake[0], buf, sizeof buf) > 0)
                ;
        if (f->watching && p[1].revents) {
            ssize_t got = read(f->ino, buf, sizeof buf);
            for (ssize_t off = 0; got > 0 && off < got;) {
                const struct inotify_event *e = (const void *)(buf + off);
                /* the directory went away: watch it again when it is back */
                if (e->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                    f->watching = 0;
                off += (ssize_t)(sizeof *e + e->len);
            }
        }
    }
    return NULL;
}

static int
nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
           fcntl(fd, F_SETFD, FD_CLOEXEC) != 0;
}

int
follow_start(struct follow **out, struct server *srv, struct semd_err *err)
{
    struct follow *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(srv->cfg->follow))) {
        free(f);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    f->srv = srv;
    f->wake[0] = f->wake[1] = -1;
    pthread_mutex_init(&f->mu, NULL);
    f->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (pipe(f->wake) != 0 || nonblock(f->wake[0]) ||
        nonblock(f->wake[1])) {
        semd_err_set(err, SEMD_EIO, "cannot create a pipe: %s",
                     strerror(errno));
        follow_stop(f);
        return SEMD_EIO;
    }
    char q[PATH_MAX + 8] = "";
    log_quote(q, sizeof q, f->dir);
    log_info("msg=following dir=%s inotify=%s", q, f->ino >= 0 ? "yes" : "no");
    int rc = pthread_create(&f->thread, NULL, run, f);
    if (rc != 0) {
        semd_err_set(err, SEMD_ENOMEM, "cannot start the follower thread: %s",
                     strerror(rc));
        follow_stop(f);
        return SEMD_ENOMEM;
    }
    f->started = 1;
    *out = f;
    return SEMD_OK;
}

void
follow_check(struct follow *f)
{
    if (!f)
        return;
    atomic_store(&f->recheck, 1);
    ssize_t w = write(f->wake[1], "", 1);
    (void)w; /* a full pipe already wakes the thread */
}

void
follow_stop(struct follow *f)
{
    if (!f)
        return;
    atomic_store(&f->stop, 1);
    if (f->started) {
        ssize_t w = write(f->wake[1], "", 1);
        (void)w;
        pthread_join(f->thread, NULL);
    }
    if (f->ino >= 0)
        close(f->ino);
    if (f->wake[0] >= 0)
        close(f->wake[0]);
    if (f->wake[1] >= 0)
        close(f->wake[1]);
    pthread_mutex_destroy(&f->mu);
    free(f->dir);
    free(f);
}

json_t *
follow_json(struct follow *f)
{
    pthread_mutex_lock(&f->mu);
    json_t *o = json_pack("{s:s, s:I, s:I, s:s?, s:s?}", "dir", f->dir,
                          "version", (json_int_t)f->version, "journal_seq",
                          (json_int_t)f->journal_seq, "file",
                          f->file[0] ? f->file : NULL, "last_error",
                          f->last_error[0] ? f->last_error : NULL);
    pthread_mutex_unlock(&f->mu);
    return o;
}
