/*
 * trainer.c - online training for `semd serve --train`: text posted to
 * POST /v1/train goes to a journal; one thread trains a private copy of
 * the served model on it and publishes new snapshots; snapshots persist
 * to the data directory, from which a restart resumes.
 *
 * The data directory (a contract with followers, see README):
 *   journal/              segments of the journal (core/journal.c)
 *   snapshots/v<V>.semd   complete model files, written by the model
 *                         writer (temp file, fsync, rename, dir fsync)
 *   snapshots/v<V>.semd.train
 *                         the trainer's state the file lacks (context
 *                         vectors, counts of words below --min-count;
 *                         semd_trainer_write_state), written when v<V>
 *                         is persisted, before CURRENT names it
 *   CURRENT               "v<V>.semd <V> <SEQ>\n": the newest persisted
 *                         snapshot and the last journal record it
 *                         includes, replaced atomically after the file
 *                         is durable
 *
 * Invariants:
 *  - every journal record is trained once: the trainer starts from the
 *    snapshot CURRENT names and reads the journal from its SEQ + 1; a
 *    record is trained before the next one is read.
 *  - a snapshot file holds exactly the records up to the sequence number
 *    recorded with it (published_seq): files are written by the trainer
 *    thread between two records.
 *  - CURRENT never names a file that is not durable, and the journal is
 *    trimmed only up to what CURRENT includes, so nothing acknowledged is
 *    lost.
 *  - versions only grow, also across restarts: a new version is above
 *    every file left in snapshots/.
 *
 * Publishing writes the next snapshot file without syncing it (the page
 * cache holds it; the kernel writes it back in its own time), maps it,
 * builds its index and hands the snapshot to the holder; requests in
 * flight keep theirs. Persisting syncs the newest published file and its
 * directory, writes the trainer state beside it, makes it current
 * (CURRENT) and trims the journal: only a file CURRENT names must survive
 * a power cut, and a file is complete once renamed into place. The last
 * RETAIN published snapshots stay referenced for drift queries.
 *
 * The approximate index (--index other than Flat): building one takes
 * seconds to minutes, so a publish never waits for it. A builder thread
 * (at nice 10) builds the index of the newest published version, saved
 * beside its file; that snapshot becomes the base. A version published
 * while no base exists is answered by the exact index; one published
 * after gets a delta index over the base (the base's approximate index
 * for rows that did not change since, an exact scan of the changed and
 * new rows, see semd_index_open_delta). When a build ends, the current
 * version is swapped in place (semd_holder_replace: same version, other
 * index) for the base itself, or for a delta over the new base when
 * newer versions came meanwhile. At most one build runs; versions
 * published during a build are never built (the next build takes the
 * newest), and builds start at least --index-rebuild-interval seconds
 * apart. Stopping cancels a running build between chunks of rows.
 *
 * Threads: the trainer thread alone uses the trainer, the reader and the
 * publish state; the builder thread alone builds; the base and the build
 * figures are under o->lock. Request threads append to the journal
 * (which locks inside), read the counters and the retained snapshots
 * under o->lock, and read the trainer's statistics (which it locks
 * itself).
 */
#define _GNU_SOURCE
#include "serve.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RETAIN 8     /* published snapshots kept for drift */
#define KEEP_FILES 3 /* persisted snapshot files kept */

struct online {
    const struct config *cfg;
    struct semd_holder *holder;
    char dir[PATH_MAX];
    char snapdir[PATH_MAX + 16];
    char model[PATH_MAX + 300]; /* the model served first */
    uint64_t start_version;    /* its version */
    uint64_t start_seq;        /* the journal records it includes */
    uint64_t next_version;     /* above every file in snapshots/ */

    struct semd_journal *j;
    struct semd_journal_report jrep;
    struct semd_trainer *t;
    struct semd_journal_reader *rd;
    pthread_t thread;
    int running;

    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;
    int stop;
    uint64_t kicks;        /* appends since start: wakes the thread */
    int started;           /* the journal is open */
    uint64_t replay_from, replay_to; /* records found at start to replay */
    uint64_t trained_seq;  /* newest record trained */
    uint64_t published_seq, published_version;
    uint64_t persisted_seq, persisted_version;
    double last_publish, last_persist; /* 0: never */
    uint64_t publishes, persists, skipped_records;
    char last_error[300];
    char start_state[SEMD_ERR_MSG + 16]; /* how the trainer state came */
    struct semd_snapshot *kept[RETAIN]; /* oldest first */
    size_t n_kept;

    /* the approximate index (NULL factory: exact only); see the top */
    const char *factory;
    atomic_int *index_state; /* the server's enum index_state, or NULL */
    pthread_t builder;
    int builder_running;
    pthread_cond_t build_cond;   /* wakes the builder; under lock */
    struct semd_snapshot *base;  /* newest version with its own index */
    uint64_t build_want;         /* newest published version */
    uint64_t building;           /* version being built, 0: none */
    uint64_t failed_version;     /* its build failed: not retried */
    uint64_t builds, build_failures;
    double last_build_end, last_build_seconds;
    char build_error[SEMD_ERR_MSG];

    /* the trainer thread's own */
    double publish_cost; /* seconds the last publish took */
    uint64_t words_since_publish;
    int dirty; /* trained since the last publish */
};

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void
set_error(struct online *o, const char *what, const char *msg)
{
    char q[400] = "";
    log_quote(q, sizeof q, msg);
    log_error("msg=\"%s\" error=%s", what, q);
    pthread_mutex_lock(&o->lock);
    snprintf(o->last_error, sizeof o->last_error, "%s: %s", what, msg);
    pthread_mutex_unlock(&o->lock);
}

/* "v<digits>.semd" exactly: its version, else 0. */
static uint64_t
file_version(const char *name)
{
    if (name[0] != 'v' || name[1] < '0' || name[1] > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(name + 1, &end, 10);
    if (errno || strcmp(end, ".semd"))
        return 0;
    return (uint64_t)v;
}

static int
fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Reads CURRENT: 0 and the three fields, 1 when there is none, -1 when it
 * is damaged (message in err). */
static int
read_current(struct online *o, char *name, size_t n, uint64_t *version,
             uint64_t *seq, struct semd_err *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/CURRENT", o->dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        semd_err_set(err, SEMD_EIO, "cannot open '%s': %s", path,
                     strerror(errno));
        return -1;
    }
    char line[512], fname[256];
    unsigned long long v, s;
    int ok = fgets(line, sizeof line, f) &&
             sscanf(line, "%255s %llu %llu", fname, &v, &s) == 3 &&
             file_version(fname) == v && v > 0;
    fclose(f);
    if (!ok) {
        semd_err_set(err, SEMD_EFORMAT, "'%s' is not \"v<V>.semd <V> "
                     "<SEQ>\"", path);
        return -1;
    }
    snprintf(name, n, "%s", fname);
    *version = v;
    *seq = s;
    return 0;
}

/* The journal position a snapshot file records in its source field. */
static int
source_seq(const struct semd_model *m, uint64_t *seq)
{
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    const char *p = strstr(in.source, "journal_seq=");
    if (!p)
        return -1;
    *seq = strtoull(p + 12, NULL, 10);
    return 0;
}

/* The newest file in snapshots/ that opens and records its journal
 * position: what a damaged CURRENT falls back to. 0 when none. */
static uint64_t
newest_valid(struct online *o, uint64_t *seq)
{
    DIR *d = opendir(o->snapdir);
    if (!d)
        return 0;
    uint64_t best = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t v = file_version(e->d_name), s;
        if (v <= best)
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", o->snapdir, e->d_name);
        struct semd_model *m;
        if (semd_model_open(&m, path, NULL) != 0)
            continue;
        if (source_seq(m, &s) == 0) {
            best = v;
            *seq = s;
        }
        semd_model_close(m);
    }
    closedir(d);
    return best;
}

/* Highest version among the files in snapshots/. */
static uint64_t
max_file_version(const char *dir)
{
    DIR *d = opendir(dir);
    uint64_t max = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t v = file_version(e->d_name);
        if (v > max)
            max = v;
    }
    closedir(d);
    return max;
}

int
online_new(struct online **out, const struct config *cfg, const char **model,
           uint64_t *version, struct semd_err *err)
{
    struct online *o = calloc(1, sizeof *o);
    if (!o)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    o->cfg = cfg;
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    pthread_cond_init(&o->build_cond, NULL);
    if (cfg->index && *cfg->index && strcmp(cfg->index, "Flat") != 0)
        o->factory = cfg->index;
    if (strlen(cfg->data_dir) >= sizeof o->dir - 32) {
        online_free(o);
        return semd_err_set(err, SEMD_EINVAL, "data directory '%s' is too "
                            "long", cfg->data_dir);
    }
    snprintf(o->dir, sizeof o->dir, "%s", cfg->data_dir);
    snprintf(o->snapdir, sizeof o->snapdir, "%s/snapshots", o->dir);
    if ((mkdir(o->dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(o->snapdir, 0755) != 0 && errno != EEXIST)) {
        int rc = semd_err_set(err, SEMD_EIO, "cannot create '%s': %s",
                              o->snapdir, strerror(errno));
        online_free(o);
        return rc;
    }
    char name[256];
    uint64_t v = 0, seq = 0;
    struct semd_err e = {0};
    int rc = read_current(o, name, sizeof name, &v, &seq, &e);
    if (rc == 0) {
        snprintf(o->model, sizeof o->model, "%s/%s", o->snapdir, name);
        struct semd_model *m;
        if (semd_model_open(&m, o->model, &e) != 0)
            rc = -1;
        else
            semd_model_close(m);
    }
    if (rc < 0) {
        /* a damaged CURRENT or its file: the newest file that opens */
        char q[600] = "";
        log_quote(q, sizeof q, e.msg);
        v = newest_valid(o, &seq);
        log_error("msg=\"CURRENT unusable; falling back\" error=%s "
                  "fallback_version=%" PRIu64, q, v);
        if (v)
            snprintf(o->model, sizeof o->model, "%s/v%" PRIu64 ".semd",
                     o->snapdir, v);
    }
    if (!v) {
        snprintf(o->model, sizeof o->model, "%s", cfg->model);
        v = 1;
        seq = 0;
    }
    o->start_version = o->published_version = o->persisted_version = v;
    o->start_seq = o->trained_seq = o->published_seq = o->persisted_seq =
        seq;
    o->next_version = max_file_version(o->snapdir);
    if (o->next_version < v)
        o->next_version = v;
    o->next_version++;
    *model = o->model;
    *version = v;
    *out = o;
    return SEMD_OK;
}

static void
keep(struct online *o, struct semd_snapshot *s)
{
    pthread_mutex_lock(&o->lock);
    if (o->n_kept == RETAIN) {
        semd_snapshot_release(o->kept[0]);
        memmove(o->kept, o->kept + 1, (RETAIN - 1) * sizeof o->kept[0]);
        o->n_kept--;
    }
    o->kept[o->n_kept++] = s;
    pthread_mutex_unlock(&o->lock);
}

/* Writes the trainer's state as the next version, maps it and makes it
 * current. Trainer thread only. */
static int
publish(struct online *o, struct semd_err *err)
{
    uint64_t v = o->next_version;
    uint64_t hv = semd_holder_version(o->holder);
    if (v <= hv)
        v = hv + 1;
    char path[PATH_MAX + 64], source[64];
    snprintf(path, sizeof path, "%s/v%" PRIu64 ".semd", o->snapdir, v);
    snprintf(source, sizeof source, "semd serve --train journal_seq=%" PRIu64,
             o->trained_seq);
    /* synced when persisted, if ever: most versions never are */
    struct semd_writer_opts wo = {"semd-train", source, SEMD_WRITER_NO_SYNC};
    double t0 = now();
    int rc = semd_trainer_write(o->t, path, &wo, err);
    if (rc)
        return rc;
    double t1 = now();
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    struct semd_snapshot *s = NULL;
    struct semd_index_opts io = {0};
    io.factory = "Flat";
    if ((rc = semd_model_open(&m, path, err)) != 0)
        goto fail;
    /* the newest built approximate index answers the rows it knows */
    pthread_mutex_lock(&o->lock);
    struct semd_snapshot *base = semd_snapshot_acquire(o->base);
    pthread_mutex_unlock(&o->lock);
    rc = base ? semd_index_open_delta(&ix, m, base, err)
              : semd_index_open(&ix, m, &io, err);
    semd_snapshot_release(base);
    if (rc)
        goto fail;
    if ((rc = semd_snapshot_new(&s, m, ix, v, err)) != 0)
        goto fail;
    m = NULL;
    ix = NULL;
    semd_snapshot_acquire(s);
    if ((rc = semd_holder_publish(o->holder, s, err)) != 0) {
        semd_snapshot_release(s);
        return rc;
    }
    keep(o, s);
    o->next_version = v + 1;
    o->dirty = 0;
    o->words_since_publish = 0;
    o->publish_cost = now() - t0;
    pthread_mutex_lock(&o->lock);
    o->published_version = v;
    o->published_seq = o->trained_seq;
    o->last_publish = now();
    o->publishes++;
    if (o->factory) {
        o->build_want = v;
        pthread_cond_signal(&o->build_cond);
    }
    pthread_mutex_unlock(&o->lock);
    log_info("msg=published version=%" PRIu64 " journal_seq=%" PRIu64
             " rows=%" PRIu64 " index=%s delta_rows=%" PRIu64
             " write_ms=%.1f index_ms=%.1f", v, o->trained_seq,
             semd_trainer_rows(o->t),
             semd_index_factory(semd_snapshot_index(s)),
             semd_index_delta_rows(semd_snapshot_index(s)),
             (t1 - t0) * 1000.0, (now() - t1) * 1000.0);
    return SEMD_OK;
fail:
    semd_index_close(ix);
    semd_model_close(m);
    return rc;
}

/* Removes snapshot files (and indexes saved beside them) except the
 * KEEP_FILES newest persisted ones and those published since. */
static void
remove_old(struct online *o, uint64_t persisted)
{
    DIR *d = opendir(o->snapdir);
    if (!d)
        return;
    uint64_t newest[KEEP_FILES] = {0}; /* descending */
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t v = file_version(e->d_name);
        if (!v || v > persisted)
            continue;
        for (int i = 0; i < KEEP_FILES; i++)
            if (v > newest[i]) {
                memmove(newest + i + 1, newest + i,
                        (KEEP_FILES - 1 - (size_t)i) * sizeof newest[0]);
                newest[i] = v;
                break;
            }
    }
    uint64_t keep_from = newest[KEEP_FILES - 1];
    rewinddir(d);
    while ((e = readdir(d))) {
        if (e->d_name[0] != 'v')
            continue;
        /* the version before ".semd" of "v<V>.semd" and "v<V>.semd.*" */
        char base[256];
        snprintf(base, sizeof base, "%s", e->d_name);
        char *dot = strstr(base, ".semd");
        if (!dot)
            continue;
        dot[5] = 0;
        uint64_t v = file_version(base);
        if (!v || v > persisted || v >= keep_from || v == persisted)
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", o->snapdir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* Writes the trainer's state beside v<V>.semd, the newest published
 * version, which nothing has been trained after. Trainer thread only. */
static int
write_state(struct online *o, uint64_t v, struct semd_err *err)
{
    pthread_mutex_lock(&o->lock);
    struct semd_snapshot *s = o->n_kept ? o->kept[o->n_kept - 1] : NULL;
    s = s && semd_snapshot_version(s) == v ? semd_snapshot_acquire(s)
                                           : NULL;
    pthread_mutex_unlock(&o->lock);
    if (!s)
        return semd_err_set(err, SEMD_EINVAL, "version %" PRIu64 " is not "
                            "the newest published one", v);
    struct semd_model_info in;
    semd_model_get_info(semd_snapshot_model(s), &in);
    semd_snapshot_release(s);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/v%" PRIu64 ".semd.train", o->snapdir, v);
    return semd_trainer_write_state(o->t, path, in.checksum, err);
}

/* A publish writes a whole model file: the next one waits at least four
 * times as long as the last one took, so that publishing takes at most a
 * fifth of the trainer's time while posts keep coming (a large model on
 * a busy machine), whatever --publish-interval and --publish-words say. */
static double
publish_gap(const struct online *o, int by_words)
{
    double g = 4 * o->publish_cost;
    return by_words || g > o->cfg->publish_interval
               ? g : o->cfg->publish_interval;
}

/* Makes the newest published snapshot current in CURRENT and trims the
 * journal; what was trained since is published first (at once when
 * force is set, as at shutdown; else only when the publish gap allows,
 * and the persist waits for its next turn otherwise: the trainer state
 * written beside the file must be the file's). Trainer thread only. */
static int
persist(struct online *o, int force, struct semd_err *err)
{
    if (o->dirty) {
        pthread_mutex_lock(&o->lock);
        double last = o->last_publish;
        pthread_mutex_unlock(&o->lock);
        if (!force && now() - last < publish_gap(o, 0))
            return SEMD_OK;
        int rc = publish(o, err);
        if (rc)
            return rc;
    }
    pthread_mutex_lock(&o->lock);
    uint64_t v = o->published_version, seq = o->published_seq;
    int fresh = seq > o->persisted_seq || v != o->persisted_version;
    pthread_mutex_unlock(&o->lock);
    if (!fresh || v == o->start_version)
        return SEMD_OK; /* nothing new, or the MODEL argument itself */
    /* published without a sync: durable now, before CURRENT names it */
    char vpath[PATH_MAX + 64];
    snprintf(vpath, sizeof vpath, "%s/v%" PRIu64 ".semd", o->snapdir, v);
    int vfd = open(vpath, O_RDONLY | O_CLOEXEC);
    if (vfd < 0 || fsync(vfd) != 0 || fsync_dir(o->snapdir) != 0) {
        int e = errno;
        if (vfd >= 0)
            close(vfd);
        return semd_err_set(err, SEMD_EIO, "cannot sync '%s': %s", vpath,
                            strerror(e));
    }
    close(vfd);
    /* nothing was trained since v was published (persist publishes what
     * is dirty first), so the trainer's state is v's */
    int rc = write_state(o, v, err);
    if (rc)
        return rc;
    char tmp[PATH_MAX + 32], path[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s/CURRENT.tmp", o->dir);
    snprintf(path, sizeof path, "%s/CURRENT", o->dir);
    char line[128];
    int n = snprintf(line, sizeof line, "v%" PRIu64 ".semd %" PRIu64
                     " %" PRIu64 "\n", v, v, seq);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return semd_err_set(err, SEMD_EIO, "cannot create '%s': %s", tmp,
                            strerror(errno));
    if (write(fd, line, (size_t)n) != n || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return semd_err_set(err, SEMD_EIO, "cannot write '%s': %s", tmp,
                            strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0 || fsync_dir(o->dir) != 0)
        return semd_err_set(err, SEMD_EIO, "cannot replace '%s': %s", path,
                            strerror(errno));
    pthread_mutex_lock(&o->lock);
    o->persisted_version = v;
    o->persisted_seq = seq;
    o->last_persist = now();
    o->persists++;
    pthread_mutex_unlock(&o->lock);
    log_info("msg=persisted version=%" PRIu64 " journal_seq=%" PRIu64, v,
             seq);
    uint64_t removed = 0;
    struct semd_err e = {0};
    if (semd_journal_trim(o->j, seq, &removed, &e) != 0)
        set_error(o, "journal trim failed", e.msg);
    remove_old(o, v);
    return SEMD_OK;
}

static void
maybe_publish(struct online *o)
{
    if (!o->dirty)
        return;
    pthread_mutex_lock(&o->lock);
    double last = o->last_publish ? o->last_publish : 0;
    pthread_mutex_unlock(&o->lock);
    int by_words = o->words_since_publish >= o->cfg->publish_words;
    if (now() - last < publish_gap(o, by_words))
        return;
    struct semd_err e = {0};
    if (publish(o, &e) != 0) {
        set_error(o, "publish failed", e.msg);
        o->words_since_publish = 0; /* retry at the next interval */
        pthread_mutex_lock(&o->lock);
        o->last_publish = now();
        pthread_mutex_unlock(&o->lock);
    }
}

static void
maybe_persist(struct online *o, double *last_try)
{
    pthread_mutex_lock(&o->lock);
    int behind = o->trained_seq > o->persisted_seq;
    pthread_mutex_unlock(&o->lock);
    if (!behind || now() - *last_try < o->cfg->persist_interval)
        return;
    if (o->dirty) {
        /* due, but after the next publish (called just before this) */
        pthread_mutex_lock(&o->lock);
        double last = o->last_publish;
        pthread_mutex_unlock(&o->lock);
        if (now() - last < publish_gap(o, 0))
            return;
    }
    *last_try = now();
    struct semd_err e = {0};
    if (persist(o, 0, &e) != 0)
        set_error(o, "persist failed", e.msg);
}

/* Seconds until the next publish or persist is due; -1: none pending. */
static double
next_due(struct online *o, double last_try)
{
    double t = -1, n = now();
    pthread_mutex_lock(&o->lock);
    int behind = o->trained_seq > o->persisted_seq;
    double lp = o->last_publish;
    pthread_mutex_unlock(&o->lock);
    if (o->dirty)
        t = lp + publish_gap(o, o->words_since_publish >=
                                    o->cfg->publish_words) - n;
    if (behind) {
        double p = last_try + o->cfg->persist_interval - n;
        if (o->dirty && p < t)
            p = t; /* it follows the publish */
        if (t < 0 || p < t)
            t = p;
    }
    return t < 0 && (o->dirty || behind) ? 0 : t;
}

static int
stopping(struct online *o)
{
    pthread_mutex_lock(&o->lock);
    int s = o->stop;
    pthread_mutex_unlock(&o->lock);
    return s;
}

static void
train_record(struct online *o, const struct semd_journal_rec *rec)
{
    struct semd_train_stats a, b;
    struct semd_err e = {0};
    semd_trainer_stats(o->t, &a);
    if (semd_trainer_feed(o->t, rec->data, rec->len, &e) != 0) {
        /* a record that cannot be trained must not stall the rest */
        char what[80];
        snprintf(what, sizeof what, "record %" PRIu64 " skipped", rec->seq);
        set_error(o, what, e.msg);
        pthread_mutex_lock(&o->lock);
        o->skipped_records++;
        pthread_mutex_unlock(&o->lock);
    }
    semd_trainer_stats(o->t, &b);
    o->words_since_publish += b.words_trained - a.words_trained;
    o->dirty = 1;
    pthread_mutex_lock(&o->lock);
    o->trained_seq = rec->seq;
    pthread_mutex_unlock(&o->lock);
    semd_journal_consume(o->j, rec->seq);
}

static void *
run(void *arg)
{
    struct online *o = arg;
    double last_try = now();
    int read_failed = 0;
    for (;;) {
        pthread_mutex_lock(&o->lock);
        uint64_t seen = o->kicks;
        pthread_mutex_unlock(&o->lock);
        for (;;) {
            if (stopping(o))
                goto out;
            struct semd_journal_rec rec;
            struct semd_err e = {0};
            int rc = semd_journal_reader_next(o->rd, &rec, &e);
            if (rc < 0) {
                set_error(o, "journal read failed", e.msg);
                read_failed = 1;
                break; /* retried after a pause */
            }
            if (rc == 0)
                break;
            train_record(o, &rec);
            maybe_publish(o);
            maybe_persist(o, &last_try);
        }
        maybe_publish(o);
        maybe_persist(o, &last_try);
        double wait = next_due(o, last_try);
        if (read_failed && (wait < 0 || wait > 1))
            wait = 1;
        read_failed = 0;
        pthread_mutex_lock(&o->lock);
        if (!o->stop && o->kicks == seen) {
            if (wait < 0) {
                pthread_cond_wait(&o->cond, &o->lock);
            } else {
                if (wait < 0 || wait > 1)
                    wait = 1;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                long long ns = (long long)ts.tv_nsec +
                               (long long)(wait * 1e9) + 1000000;
                ts.tv_sec += (time_t)(ns / 1000000000);
                ts.tv_nsec = (long)(ns % 1000000000);
                pthread_cond_timedwait(&o->cond, &o->lock, &ts);
            }
        }
        pthread_mutex_unlock(&o->lock);
    }
out:
    /* records not yet read stay in the journal for the next start */
    {
        struct semd_err e = {0};
        if (persist(o, 1, &e) != 0)
            set_error(o, "persist at shutdown failed", e.msg);
    }
    return NULL;
}

/* ------------------------------------------------ the approximate index */

static int
build_cancelled(void *arg)
{
    return stopping(arg);
}

/* Makes the current version answer through base b: b itself when it is
 * the current version, else a delta index over b of the current
 * version's file, mapped again (the pages are shared). Retries while the
 * trainer publishes newer versions meanwhile. Builder thread. */
static void
swap_in(struct online *o, struct semd_snapshot *b)
{
    for (int tries = 0; tries < 100 && !stopping(o); tries++) {
        struct semd_snapshot *cur = semd_holder_acquire(o->holder);
        if (!cur)
            return;
        uint64_t cv = semd_snapshot_version(cur);
        const struct semd_index *cix = semd_snapshot_index(cur);
        struct semd_err e = {0};
        int rc;
        if (cv == semd_snapshot_version(b)) {
            semd_snapshot_release(cur);
            rc = semd_holder_replace(o->holder, semd_snapshot_acquire(b),
                                     &e);
        } else if (cv < semd_snapshot_version(b) ||
                   semd_index_delta_base(cix) == b) {
            /* older (cannot be) or already over b: nothing to do */
            semd_snapshot_release(cur);
            return;
        } else {
            struct semd_model *m = NULL;
            struct semd_index *ix = NULL;
            struct semd_snapshot *s = NULL;
            rc = semd_model_open(&m, semd_model_path(
                                         semd_snapshot_model(cur)), &e);
            semd_snapshot_release(cur);
            if (rc == 0 &&
                (rc = semd_index_open_delta(&ix, m, b, &e)) == 0 &&
                (rc = semd_snapshot_new(&s, m, ix, cv, &e)) == 0) {
                m = NULL;
                ix = NULL;
                rc = semd_holder_replace(o->holder, s, &e);
            }
            semd_index_close(ix);
            semd_model_close(m);
        }
        if (rc == 0) {
            const struct semd_index *nix;
            struct semd_snapshot *now_s = semd_holder_acquire(o->holder);
            nix = semd_snapshot_index(now_s);
            log_info("msg=\"index swapped in\" version=%" PRIu64
                     " index=%s delta_rows=%" PRIu64,
                     semd_snapshot_version(now_s), semd_index_factory(nix),
                     semd_index_delta_rows(nix));
            /* ready from the first build on: the delta index answers
             * through it too (/v1/model and /metrics name which) */
            if (o->index_state)
                atomic_store(o->index_state, INDEX_READY);
            semd_snapshot_release(now_s);
            return;
        }
        if (rc != SEMD_EBUSY) {
            set_error(o, "index swap failed", e.msg);
            return;
        }
        /* a newer version came in between: answer that one */
    }
}

/* Builds the approximate index of the current version; 0 and *out (a
 * snapshot of a second mapping of its file with the index), else the
 * error. Builder thread. */
static int
build_one(struct online *o, struct semd_snapshot **out, struct semd_err *err)
{
    struct semd_snapshot *cur = semd_holder_acquire(o->holder);
    if (!cur)
        return semd_err_set(err, SEMD_EINVAL, "no snapshot to index");
    uint64_t v = semd_snapshot_version(cur);
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    struct semd_index_opts io = {0};
    io.factory = o->factory;
    io.cancel = build_cancelled;
    io.cancel_arg = o;
    pthread_mutex_lock(&o->lock);
    o->building = v;
    pthread_mutex_unlock(&o->lock);
    int rc = semd_model_open(&m, semd_model_path(semd_snapshot_model(cur)),
                             err);
    semd_snapshot_release(cur);
    if (rc == 0 && (rc = semd_index_open(&ix, m, &io, err)) == 0 &&
        (rc = semd_snapshot_new(out, m, ix, v, err)) == 0)
        return SEMD_OK;
    semd_index_close(ix);
    semd_model_close(m);
    return rc;
}

/* The builder thread; see the top of the file. */
static void *
build_main(void *arg)
{
    struct online *o = arg;
    /* requests and training come first; FAISS's threads inherit it */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10) != 0)
        log_info("msg=\"index builder keeps normal priority\"");
    pthread_mutex_lock(&o->lock);
    for (;;) {
        if (o->stop)
            break;
        uint64_t have = o->base ? semd_snapshot_version(o->base) : 0;
        double wait = o->last_build_end
                          ? o->last_build_end +
                                o->cfg->index_rebuild_interval - now()
                          : 0;
        if (o->build_want <= have || o->build_want == o->failed_version) {
            pthread_cond_wait(&o->build_cond, &o->lock);
            continue;
        }
        if (wait > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long long ns = (long long)ts.tv_nsec + (long long)(wait * 1e9);
            ts.tv_sec += (time_t)(ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&o->build_cond, &o->lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&o->lock);
        double t0 = now();
        struct semd_snapshot *b = NULL;
        struct semd_err e = {0};
        int rc = build_one(o, &b, &e);
        pthread_mutex_lock(&o->lock);
        if (rc)
            o->failed_version = o->building;
        o->building = 0;
        o->last_build_end = now();
        o->last_build_seconds = o->last_build_end - t0;
        if (rc == SEMD_ESHUTDOWN && o->stop)
            break;
        if (rc) {
            o->build_failures++;
            snprintf(o->build_error, sizeof o->build_error, "%s", e.msg);
            /* an older build still answers, if there is one */
            if (o->index_state && !o->base)
                atomic_store(o->index_state, INDEX_FAILED);
            pthread_mutex_unlock(&o->lock);
            char q[600] = "";
            log_quote(q, sizeof q, e.msg);
            log_error("msg=\"index build failed; the exact index keeps "
                      "answering changed rows\" index=%s error=%s",
                      o->factory, q);
            pthread_mutex_lock(&o->lock);
            continue;
        }
        o->builds++;
        o->build_error[0] = 0;
        struct semd_snapshot *old = o->base;
        o->base = b;
        double secs = o->last_build_seconds;
        pthread_mutex_unlock(&o->lock);
        semd_snapshot_release(old);
        log_info("msg=\"index built\" index=%s version=%" PRIu64
                 " loaded=%d seconds=%.1f", o->factory,
                 semd_snapshot_version(b),
                 semd_index_loaded(semd_snapshot_index(b)), secs);
        swap_in(o, b);
        pthread_mutex_lock(&o->lock);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

static json_t *
index_json(struct online *o)
{
    /* under o->lock */
    struct semd_snapshot *cur = semd_holder_acquire(o->holder);
    const struct semd_index *ix = cur ? semd_snapshot_index(cur) : NULL;
    json_t *j = json_pack(
        "{s:s, s:s?, s:I, s:o, s:o, s:I, s:I, s:f, s:s?}", "requested",
        o->factory ? o->factory : "Flat", "serving",
        ix ? semd_index_factory(ix) : NULL, "delta_rows",
        (json_int_t)(ix ? semd_index_delta_rows(ix) : 0), "built_version",
        o->base ? json_integer((json_int_t)semd_snapshot_version(o->base))
                : json_null(),
        "building_version",
        o->building ? json_integer((json_int_t)o->building) : json_null(),
        "builds", (json_int_t)o->builds, "build_failures",
        (json_int_t)o->build_failures, "last_build_seconds",
        o->last_build_seconds, "build_error",
        o->build_error[0] ? o->build_error : NULL);
    semd_snapshot_release(cur);
    return j;
}

/* The state persisted beside the first model, if any: context vectors and
 * counts below --min-count go on where they were. Without it (the MODEL
 * argument, or a file whose state is missing or damaged) the contexts
 * start at zero and those counts at nothing; said in GET /v1/train. */
static void
restore_state(struct online *o, const struct semd_model *m)
{
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    char path[PATH_MAX + 320];
    snprintf(path, sizeof path, "%s.train", o->model);
    struct semd_err e = {0};
    int rc = semd_trainer_read_state(o->t, path, in.checksum, &e);
    if (rc == 0)
        snprintf(o->start_state, sizeof o->start_state, "restored");
    else if (rc == SEMD_ENOWORD)
        snprintf(o->start_state, sizeof o->start_state, "none");
    else
        snprintf(o->start_state, sizeof o->start_state, "damaged: %s",
                 e.msg);
    if (rc && rc != SEMD_ENOWORD) {
        char q[600] = "";
        log_quote(q, sizeof q, e.msg);
        log_error("msg=\"trainer state unusable; context vectors start at "
                  "zero\" error=%s", q);
    } else {
        log_info("msg=\"trainer state\" state=%s", o->start_state);
    }
}

int
online_start(struct online *o, struct semd_holder *holder,
             atomic_int *index_state, struct semd_err *err)
{
    o->holder = holder;
    o->index_state = index_state;
    if (o->factory && index_state)
        atomic_store(index_state, INDEX_LOADING);
    /* the first snapshot, exact: trained versions follow it */
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    struct semd_snapshot *first = NULL;
    struct semd_index_opts io = {0};
    io.factory = "Flat";
    double t0 = now();
    int rc = semd_model_open(&m, o->model, err);
    if (rc)
        return rc;
    if ((rc = semd_index_open(&ix, m, &io, err)) != 0 ||
        (rc = semd_snapshot_new(&first, m, ix, o->start_version, err)) != 0) {
        semd_index_close(ix);
        semd_model_close(m);
        return rc;
    }
    char jdir[PATH_MAX + 16];
    snprintf(jdir, sizeof jdir, "%s/journal", o->dir);
    rc = semd_journal_open(&o->j, jdir, NULL, &o->jrep, err);
    if (rc) {
        semd_snapshot_release(first);
        return rc;
    }
    if (o->jrep.damaged_records) {
        char dq[600] = "";
        log_quote(dq, sizeof dq, o->jrep.message);
        log_error("msg=\"journal damage skipped\" damaged_records=%" PRIu64
                  " damaged_bytes=%" PRIu64 " first=%s",
                  o->jrep.damaged_records, o->jrep.damaged_bytes, dq);
    }
    struct semd_train_opts to;
    semd_train_opts_init(&to);
    to.window = o->cfg->window;
    to.negative = o->cfg->negative;
    to.sample = o->cfg->sample;
    to.alpha = o->cfg->alpha;
    to.min_count = o->cfg->min_count;
    to.threads = o->cfg->train_threads;
    rc = semd_trainer_new(&o->t, &to, semd_snapshot_model(first), err);
    if (rc) {
        semd_snapshot_release(first);
        return rc;
    }
    restore_state(o, semd_snapshot_model(first));

    uint64_t from = o->start_seq + 1;
    if (o->jrep.first_seq > from) {
        log_error("msg=\"journal records missing\" wanted_from=%" PRIu64
                  " first=%" PRIu64, from, o->jrep.first_seq);
        from = o->jrep.first_seq;
    }
    if ((rc = semd_journal_reader_open(&o->rd, o->j, from, err)) != 0) {
        semd_snapshot_release(first);
        return rc;
    }
    semd_journal_consume(o->j, from - 1);
    pthread_mutex_lock(&o->lock);
    if (o->jrep.last_seq >= from) {
        o->replay_from = from;
        o->replay_to = o->jrep.last_seq;
    }
    o->started = 1;
    pthread_mutex_unlock(&o->lock);
    /* ready only now: a post is taken as soon as a query is answered */
    keep(o, semd_snapshot_acquire(first));
    if ((rc = semd_holder_publish(holder, first, err)) != 0)
        return rc;
    char q[PATH_MAX + 80] = "";
    log_quote(q, sizeof q, o->model);
    log_info("msg=\"model loaded\" model=%s version=%" PRIu64 " ms=%.1f", q,
             o->start_version, (now() - t0) * 1000.0);
    log_info("msg=\"training on\" data_dir=%s version=%" PRIu64
             " journal_seq=%" PRIu64 " replay=%" PRIu64 " rows=%" PRIu64,
             o->dir, o->start_version, o->start_seq,
             o->replay_to ? o->replay_to - o->replay_from + 1 : 0,
             semd_trainer_rows(o->t));
    if (pthread_create(&o->thread, NULL, run, o) != 0)
        return semd_err_set(err, SEMD_ENOMEM, "cannot start the trainer "
                            "thread");
    o->running = 1;
    if (o->factory) {
        /* the first version's index too: saved beside the file, it loads */
        pthread_mutex_lock(&o->lock);
        o->build_want = o->start_version;
        pthread_mutex_unlock(&o->lock);
        if (pthread_create(&o->builder, NULL, build_main, o) != 0)
            return semd_err_set(err, SEMD_ENOMEM, "cannot start the index "
                                "builder thread");
        o->builder_running = 1;
        log_info("msg=\"building the index in the background\" index=%s",
                 o->factory);
    }
    return SEMD_OK;
}

void
online_free(struct online *o)
{
    if (!o)
        return;
    if (o->running || o->builder_running) {
        pthread_mutex_lock(&o->lock);
        o->stop = 1;
        pthread_cond_signal(&o->cond);
        pthread_cond_signal(&o->build_cond);
        pthread_mutex_unlock(&o->lock);
    }
    /* the builder first: a running build stops between chunks */
    if (o->builder_running)
        pthread_join(o->builder, NULL);
    if (o->running)
        pthread_join(o->thread, NULL);
    semd_snapshot_release(o->base);
    semd_journal_reader_close(o->rd);
    semd_trainer_free(o->t);
    semd_journal_close(o->j);
    for (size_t i = 0; i < o->n_kept; i++)
        semd_snapshot_release(o->kept[i]);
    pthread_cond_destroy(&o->cond);
    pthread_cond_destroy(&o->build_cond);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

int
online_post(struct online *o, const char *text, size_t len, uint64_t *seq,
            uint64_t *queued_records, unsigned *retry_after,
            struct semd_err *err)
{
    pthread_mutex_lock(&o->lock);
    int started = o->started;
    pthread_mutex_unlock(&o->lock);
    if (!started)
        return semd_err_set(err, SEMD_EBUSY, "the trainer is still "
                            "starting");
    if (len > o->cfg->max_backlog_bytes)
        return semd_err_set(err, SEMD_EINVAL, "text of %zu bytes is over "
                            "the backlog bound of %" PRIu64 " bytes", len,
                            o->cfg->max_backlog_bytes);
    uint64_t recs, bytes;
    semd_journal_backlog(o->j, &recs, &bytes);
    if (recs > 0 && (recs + 1 > o->cfg->max_backlog_records ||
                     bytes + len > o->cfg->max_backlog_bytes)) {
        struct semd_train_stats st;
        semd_trainer_stats(o->t, &st);
        /* about six bytes a word; at least a second, at most a minute */
        double s = st.words_per_sec > 0
                       ? (double)bytes / 6.0 / st.words_per_sec : 1;
        *retry_after = s < 1 ? 1 : s > 60 ? 60 : (unsigned)s + 1;
        *queued_records = recs;
        return 1;
    }
    int rc = semd_journal_append(o->j, text, len, seq, err);
    if (rc)
        return rc;
    pthread_mutex_lock(&o->lock);
    o->kicks++;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
    semd_journal_backlog(o->j, &recs, &bytes);
    *queued_records = recs;
    return 0;
}

static json_t *
iso_or_null(double t)
{
    if (!t)
        return json_null();
    char buf[40];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ",
             (int)((t - (double)tt) * 1000.0) % 1000);
    return json_string(buf);
}

json_t *
online_status(struct online *o)
{
    if (!o)
        return json_pack("{s:b}", "enabled", 0);
    uint64_t recs = 0, bytes = 0;
    struct semd_train_stats st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&o->lock);
    int started = o->started;
    pthread_mutex_unlock(&o->lock);
    if (started) {
        semd_journal_backlog(o->j, &recs, &bytes);
        semd_trainer_stats(o->t, &st);
    }
    uint64_t last_seq = started ? semd_journal_last_seq(o->j) : 0;
    json_t *versions = json_array();
    pthread_mutex_lock(&o->lock);
    for (size_t i = 0; i < o->n_kept; i++)
        json_array_append_new(versions, json_integer(
            (json_int_t)semd_snapshot_version(o->kept[i])));
    json_t *r = json_pack(
        "{s:b, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I, "
        "s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}, "
        "s:{s:s, s:I, s:I, s:I, s:I}, s:o, s:o, s:I, s:I, s:o, s:s?}",
        "enabled", 1, "version", (json_int_t)semd_holder_version(o->holder),
        "queued_records", (json_int_t)recs, "queued_bytes",
        (json_int_t)bytes, "words_trained", (json_int_t)st.words_trained,
        "words_per_sec", st.words_per_sec, "loss", st.loss, "alpha",
        st.alpha, "rows", (json_int_t)st.rows, "new_words",
        (json_int_t)st.new_rows, "skipped_records",
        (json_int_t)o->skipped_records, "journal", "last_seq",
        (json_int_t)last_seq, "trained_seq", (json_int_t)o->trained_seq,
        "published_seq", (json_int_t)o->published_seq, "persisted_seq",
        (json_int_t)o->persisted_seq, "persisted_version",
        (json_int_t)o->persisted_version, "damaged_records",
        (json_int_t)o->jrep.damaged_records, "damaged_bytes",
        (json_int_t)o->jrep.damaged_bytes, "damage",
        o->jrep.message[0] ? o->jrep.message : NULL, "start",
        "trainer_state", o->start_state, "version",
        (json_int_t)o->start_version, "included_seq",
        (json_int_t)o->start_seq, "replay_from", (json_int_t)o->replay_from,
        "replay_to", (json_int_t)o->replay_to, "last_publish",
        iso_or_null(o->last_publish), "last_persist",
        iso_or_null(o->last_persist), "publishes", (json_int_t)o->publishes,
        "persists", (json_int_t)o->persists, "retained_versions", versions,
        "last_error", o->last_error[0] ? o->last_error : NULL);
    if (r && started)
        json_object_set_new(r, "index", index_json(o));
    pthread_mutex_unlock(&o->lock);
    return r;
}

char *
online_metrics(struct online *o)
{
    if (!o)
        return NULL;
    uint64_t recs = 0, bytes = 0;
    struct semd_train_stats st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&o->lock);
    int started = o->started;
    uint64_t trained = o->trained_seq, persisted = o->persisted_seq;
    double lp = o->last_publish, ls = o->last_persist;
    uint64_t pubs = o->publishes, pers = o->persists;
    pthread_mutex_unlock(&o->lock);
    if (started) {
        semd_journal_backlog(o->j, &recs, &bytes);
        semd_trainer_stats(o->t, &st);
    }
    char *out = NULL;
    if (asprintf(&out,
                 "# HELP semd_train_queued_records Posts waiting to be "
                 "trained.\n# TYPE semd_train_queued_records gauge\n"
                 "semd_train_queued_records %" PRIu64 "\n"
                 "# HELP semd_train_queued_bytes Text waiting to be trained."
                 "\n# TYPE semd_train_queued_bytes gauge\n"
                 "semd_train_queued_bytes %" PRIu64 "\n"
                 "# HELP semd_train_words_total Words trained.\n"
                 "# TYPE semd_train_words_total counter\n"
                 "semd_train_words_total %" PRIu64 "\n"
                 "# HELP semd_train_words_per_second Training speed of the "
                 "last post.\n# TYPE semd_train_words_per_second gauge\n"
                 "semd_train_words_per_second %.1f\n"
                 "# HELP semd_train_loss Running mean SGNS loss per pair.\n"
                 "# TYPE semd_train_loss gauge\nsemd_train_loss %.6f\n"
                 "# HELP semd_train_vocabulary_rows Rows of the trained "
                 "vocabulary.\n# TYPE semd_train_vocabulary_rows gauge\n"
                 "semd_train_vocabulary_rows %" PRIu64 "\n"
                 "# HELP semd_train_journal_seq Journal positions: trained "
                 "and persisted.\n# TYPE semd_train_journal_seq gauge\n"
                 "semd_train_journal_seq{stage=\"trained\"} %" PRIu64 "\n"
                 "semd_train_journal_seq{stage=\"persisted\"} %" PRIu64 "\n"
                 "# HELP semd_train_publishes_total Snapshots published.\n"
                 "# TYPE semd_train_publishes_total counter\n"
                 "semd_train_publishes_total %" PRIu64 "\n"
                 "# HELP semd_train_persists_total Snapshots persisted.\n"
                 "# TYPE semd_train_persists_total counter\n"
                 "semd_train_persists_total %" PRIu64 "\n"
                 "# HELP semd_train_last_publish_seconds When a snapshot "
                 "was last published (0: never).\n"
                 "# TYPE semd_train_last_publish_seconds gauge\n"
                 "semd_train_last_publish_seconds %.3f\n"
                 "# HELP semd_train_last_persist_seconds When a snapshot "
                 "was last persisted (0: never).\n"
                 "# TYPE semd_train_last_persist_seconds gauge\n"
                 "semd_train_last_persist_seconds %.3f\n",
                 recs, bytes, st.words_trained, st.words_per_sec, st.loss,
                 st.rows, trained, persisted, pubs, pers, lp, ls) < 0)
        return NULL;
    return out;
}

struct semd_snapshot *
online_version(struct online *o, uint64_t v)
{
    struct semd_snapshot *s = NULL;
    if (!o)
        return NULL;
    pthread_mutex_lock(&o->lock);
    for (size_t i = 0; i < o->n_kept; i++)
        if (semd_snapshot_version(o->kept[i]) == v)
            s = semd_snapshot_acquire(o->kept[i]);
    pthread_mutex_unlock(&o->lock);
    return s;
}

uint64_t
online_oldest_version(struct online *o)
{
    if (!o)
        return 0;
    pthread_mutex_lock(&o->lock);
    uint64_t v = o->n_kept ? semd_snapshot_version(o->kept[0]) : 0;
    pthread_mutex_unlock(&o->lock);
    return v;
}
