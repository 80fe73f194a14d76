/*
 * config.c - the flags of `semd serve`, in one table: name, environment
 * variable, default and help. Each flag may also come from SEMD_<FLAG>
 * (upper case, '-' as '_'); a flag on the command line wins. Token files
 * and the TLS key are read here and refused when other users could read
 * them.
 *
 * Called once by the main thread before any other thread starts.
 */
#include "serve.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum opt_kind { OPT_LISTEN, OPT_INT, OPT_SIZE, OPT_STR, OPT_BOOL, OPT_NUM };

struct opt {
    const char *name;
    enum opt_kind kind;
    const char *def;
    const char *arg;
    const char *help;
    long long min, max;
};

static const struct opt opts[] = {
    {"listen", OPT_LISTEN, "127.0.0.1:8080", "HOST:PORT",
     "address to listen on; port 0 picks a free port and prints it", 0, 0},
    {"threads", OPT_INT, "0", "N",
     "request threads, also scoring threads; 0: one per core", 0, 1024},
    {"index", OPT_STR, "Flat", "FACTORY",
     "index: Flat (exact) or a FAISS factory string such as HNSW32", 0, 0},
    {"max-body", OPT_SIZE, "1048576", "BYTES",
     "largest request body accepted (413 above)", 64, 1ll << 30},
    {"max-k", OPT_INT, "1000", "N", "largest k (neighbours per query)", 1,
     1000000},
    {"max-batch", OPT_INT, "256", "N",
     "most queries in one request and in one scoring batch", 1, 100000},
    {"max-connections", OPT_INT, "1024", "N",
     "most connections open at once; past it a request gets 503", 1,
     1000000},
    {"max-connections-per-ip", OPT_INT, "256", "N",
     "connections from one address, more closed at once (256 admits a "
     "256-connection benchmark); 0: any", 0, 1000000},
    {"timeout", OPT_INT, "30", "SECONDS",
     "a connection idle this long is closed (a stalled upload too)", 1,
     86400},
    {"request-timeout", OPT_INT, "60", "SECONDS",
     "cut off a request not in (or a reply not taken) this long after "
     "accept or the last reply", 1, 86400},
    {"max-url", OPT_SIZE, "8192", "BYTES",
     "longest request target, path and query string (414 above)", 64,
     1 << 20},
    {"max-header-bytes", OPT_SIZE, "16384", "BYTES",
     "most bytes of request header lines (431 above)", 256, 1 << 20},
    {"max-headers", OPT_INT, "64", "N",
     "most request header lines (431 above)", 4, 10000},
    {"max-expr", OPT_SIZE, "1024", "BYTES",
     "longest expression (q=, expr), e.g. king-man+woman (400 above)", 16,
     SEMD_MAX_EXPR},
    {"tls-cert", OPT_STR, "", "FILE",
     "serve HTTPS with this PEM certificate (chain); needs --tls-key", 0,
     0},
    {"tls-key", OPT_STR, "", "FILE",
     "PEM private key of --tls-cert; refused if others can read it", 0, 0},
    {"cache-size", OPT_SIZE, "100000", "N",
     "results of GET /v1/neighbors kept (LRU); 0: no cache", 0, 1ll << 32},
    {"cache-bytes", OPT_SIZE, "64M", "BYTES",
     "memory the result cache may hold, requests and answers (LRU)", 4096,
     1ll << 40},
    {"token-file", OPT_STR, "", "PATH",
     "file holding the bearer token for writes; none: writes refused", 0, 0},
    {"read-token-file", OPT_STR, "", "PATH",
     "file holding the bearer token for reads; none: reads open", 0, 0},
    {"train", OPT_BOOL, "0", "",
     "train online on text POSTed to /v1/train (needs --data-dir and "
     "--token-file)", 0, 1},
    {"data-dir", OPT_STR, "", "DIR",
     "--train: the journal and persisted snapshots (see README)", 0, 0},
    {"publish-interval", OPT_NUM, "10", "SECONDS",
     "--train: publish a new version this often while training", 0, 86400},
    {"publish-words", OPT_SIZE, "1000000", "N",
     "--train: also publish after this many words trained", 1,
     1ll << 50},
    {"persist-interval", OPT_NUM, "60", "SECONDS",
     "--train: write a snapshot to --data-dir this often (and at exit)", 0,
     86400 * 7},
    {"min-count", OPT_SIZE, "5", "N",
     "--train: a new word joins once seen this often", 1, 1ll << 40},
    {"train-threads", OPT_INT, "1", "N", "--train: trainer threads", 1, 256},
    {"window", OPT_INT, "5", "N", "--train: max distance of a context word",
     1, 100},
    {"negative", OPT_INT, "5", "N", "--train: noise words per pair", 1, 100},
    {"sample", OPT_NUM, "0.001", "P",
     "--train: sub-sampling threshold of frequent words; 0: off", 0, 1},
    {"alpha", OPT_NUM, "0.025", "RATE", "--train: starting learning rate", 0,
     1},
    {"max-backlog-records", OPT_SIZE, "10000", "N",
     "--train: posts waiting to be trained before 429", 1, 1ll << 40},
    {"max-backlog-bytes", OPT_SIZE, "256M", "BYTES",
     "--train: text waiting to be trained before 429", 1, 1ll << 50},
    {"index-rebuild-interval", OPT_NUM, "60", "SECONDS",
     "--train with an approximate --index: rebuild it for the newest "
     "version at most this often (changed rows are scanned meanwhile)", 0,
     86400 * 7},
    {"follow", OPT_STR, "", "DIR",
     "serve, read-only, the snapshots a trainer persists to DIR (no MODEL)",
     0, 0},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

static void
usage(FILE *f)
{
    fprintf(f, "usage: semd serve MODEL [FLAGS]\n"
               "       semd serve --follow DIR [FLAGS]\n\n"
               "Serves MODEL's neighbours, similarities and analogies as JSON "
               "over HTTP (see openapi.yaml).\n"
               "Every flag may also be set as an environment variable; the "
               "flag wins.\n\nflags:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char flag[64], env[64];
        snprintf(flag, sizeof flag, "--%s %s", opts[i].name, opts[i].arg);
        snprintf(env, sizeof env, "SEMD_%s", opts[i].name);
        for (char *p = env; *p; p++)
            *p = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z'
                                          ? *p - 'a' + 'A' : *p);
        fprintf(f, "  %-26s %s\n  %-26s default: %s; env %s\n", flag,
                opts[i].help, "", *opts[i].def ? opts[i].def : "(none)",
                env);
    }
    fprintf(f, "  %-26s %s\n", "--help", "this text");
    fprintf(f, "\nThe model may also be given as SEMD_MODEL. Signals: SIGHUP "
               "reloads the model and index,\nSIGTERM and SIGINT finish "
               "the requests in flight and exit.\n");
}

static int
parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
parse_size(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024, end++;
    if (*end || v > max / mul || v * mul < min || v * mul > max)
        return -1;
    *out = v * mul;
    return 0;
}

static int
set(struct config *c, const struct opt *o, const char *val, const char *from)
{
    long long v = 0;
    switch (o->kind) {
    case OPT_LISTEN: {
        const char *colon = strrchr(val, ':');
        if (!colon || colon == val || (size_t)(colon - val) >= sizeof c->host
            || parse_int(colon + 1, 0, 65535, &v) != 0)
            goto bad;
        const char *h = val;
        size_t hl = (size_t)(colon - val);
        if (h[0] == '[' && h[hl - 1] == ']')
            h++, hl -= 2;
        memcpy(c->host, h, hl);
        c->host[hl] = 0;
        c->port = (int)v;
        return 0;
    }
    case OPT_INT:
        if (parse_int(val, o->min, o->max, &v) != 0)
            goto bad;
        break;
    case OPT_SIZE:
        if (parse_size(val, o->min, o->max, &v) != 0)
            goto bad;
        break;
    case OPT_BOOL:
        if (!strcmp(val, "1") || !strcmp(val, "true") || !strcmp(val, "yes"))
            c->train = 1;
        else if (!strcmp(val, "0") || !strcmp(val, "false") ||
                 !strcmp(val, "no") || !*val)
            c->train = 0;
        else
            goto bad;
        return 0;
    case OPT_NUM: {
        char *end;
        errno = 0;
        double d = strtod(val, &end);
        if (errno || end == val || *end || !(d >= (double)o->min) ||
            !(d <= (double)o->max))
            goto bad;
        if (!strcmp(o->name, "publish-interval"))
            c->publish_interval = d;
        else if (!strcmp(o->name, "persist-interval"))
            c->persist_interval = d;
        else if (!strcmp(o->name, "index-rebuild-interval"))
            c->index_rebuild_interval = d;
        else if (!strcmp(o->name, "sample"))
            c->sample = d;
        else if (!strcmp(o->name, "alpha"))
            c->alpha = d;
        return 0;
    }
    case OPT_STR: {
        if (!strcmp(o->name, "data-dir")) {
            free(c->data_dir);
            c->data_dir = *val ? strdup(val) : NULL;
            if (*val && !c->data_dir)
                goto bad;
            return 0;
        }
        char **dst = !strcmp(o->name, "index") ? &c->index
                     : !strcmp(o->name, "token-file") ? &c->token_file
                     : !strcmp(o->name, "follow") ? &c->follow
                     : !strcmp(o->name, "tls-cert") ? &c->tls_cert
                     : !strcmp(o->name, "tls-key") ? &c->tls_key
                                                  : &c->read_token_file;
        free(*dst);
        *dst = *val ? strdup(val) : NULL;
        if (*val && !*dst)
            goto bad;
        return 0;
    }
    }
    if (!strcmp(o->name, "threads"))
        c->threads = (int)v;
    else if (!strcmp(o->name, "max-body"))
        c->max_body = (size_t)v;
    else if (!strcmp(o->name, "max-k"))
        c->max_k = (uint32_t)v;
    else if (!strcmp(o->name, "max-batch"))
        c->max_batch = (uint32_t)v;
    else if (!strcmp(o->name, "max-connections"))
        c->max_connections = (unsigned)v;
    else if (!strcmp(o->name, "max-connections-per-ip"))
        c->max_per_ip = (unsigned)v;
    else if (!strcmp(o->name, "timeout"))
        c->timeout = (unsigned)v;
    else if (!strcmp(o->name, "request-timeout"))
        c->request_timeout = (unsigned)v;
    else if (!strcmp(o->name, "max-url"))
        c->max_url = (size_t)v;
    else if (!strcmp(o->name, "max-header-bytes"))
        c->max_header_bytes = (size_t)v;
    else if (!strcmp(o->name, "max-headers"))
        c->max_headers = (unsigned)v;
    else if (!strcmp(o->name, "max-expr"))
        c->max_expr = (size_t)v;
    else if (!strcmp(o->name, "cache-size"))
        c->cache_size = (size_t)v;
    else if (!strcmp(o->name, "cache-bytes"))
        c->cache_bytes = (size_t)v;
    else if (!strcmp(o->name, "publish-words"))
        c->publish_words = (uint64_t)v;
    else if (!strcmp(o->name, "min-count"))
        c->min_count = (uint64_t)v;
    else if (!strcmp(o->name, "train-threads"))
        c->train_threads = (uint32_t)v;
    else if (!strcmp(o->name, "window"))
        c->window = (uint32_t)v;
    else if (!strcmp(o->name, "negative"))
        c->negative = (uint32_t)v;
    else if (!strcmp(o->name, "max-backlog-records"))
        c->max_backlog_records = (uint64_t)v;
    else if (!strcmp(o->name, "max-backlog-bytes"))
        c->max_backlog_bytes = (uint64_t)v;
    return 0;
bad:
    if (o->kind == OPT_INT || o->kind == OPT_SIZE)
        fprintf(stderr, "semd serve: %s: '%s' is not a number in %lld..%lld\n",
                from, val, o->min, o->max);
    else
        fprintf(stderr, "semd serve: %s: invalid value '%s' (want %s)\n",
                from, val, o->arg);
    return -1;
}

int
config_parse(struct config *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    /* defaults, then the environment, then the flags */
    for (size_t i = 0; i < N_OPTS; i++)
        if (set(c, &opts[i], opts[i].def, "default") != 0)
            return 2;
    for (size_t i = 0; i < N_OPTS; i++) {
        char env[64];
        snprintf(env, sizeof env, "SEMD_%s", opts[i].name);
        for (char *p = env; *p; p++)
            *p = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z'
                                          ? *p - 'a' + 'A' : *p);
        const char *v = getenv(env);
        if (v && set(c, &opts[i], v, env) != 0)
            return 2;
    }
    c->model = getenv("SEMD_MODEL");
    if (c->model && !*c->model)
        c->model = NULL;
    int have_model = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (a[0] != '-' || !a[1]) {
            if (have_model) {
                fprintf(stderr, "semd serve: unexpected argument '%s'\n", a);
                return 2;
            }
            c->model = a;
            have_model = 1;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = NULL;
        for (size_t k = 0; k < N_OPTS; k++)
            if (strlen(opts[k].name) == nl && !strncmp(opts[k].name, name, nl))
                o = &opts[k];
        if (!o) {
            fprintf(stderr, "semd serve: unknown flag '%s' (see --help)\n", a);
            return 2;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val && o->kind == OPT_BOOL)
            val = "1";
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "semd serve: --%s needs a value (%s)\n",
                        o->name, o->arg);
                return 2;
            }
            val = argv[++i];
        }
        char from[80];
        snprintf(from, sizeof from, "--%s", o->name);
        if (set(c, o, val, from) != 0)
            return 2;
    }
    if (c->follow && have_model) {
        fprintf(stderr, "semd serve: give a MODEL or --follow DIR, not "
                        "both ('%s' and '%s')\n", c->model, c->follow);
        return 2;
    }
    /* a follower's model is whatever DIR/CURRENT names; an image's
     * SEMD_MODEL default does not apply */
    if (c->follow)
        c->model = NULL;
    if (!c->model && !c->follow) {
        fprintf(stderr, "semd serve: no model given\n");
        usage(stderr);
        return 2;
    }
    if (c->train && (!c->data_dir || !c->token_file)) {
        fprintf(stderr, "semd serve: --train needs --data-dir DIR and "
                        "--token-file FILE\n");
        return 2;
    }
    if (!c->tls_cert != !c->tls_key) {
        fprintf(stderr, "semd serve: HTTPS needs both --tls-cert FILE and "
                        "--tls-key FILE (only --%s given)\n",
                c->tls_cert ? "tls-cert" : "tls-key");
        return 2;
    }
    if (c->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
    }
    return 0;
}

static int
read_token(const char *path, char **out, struct semd_err *err)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f)
        return semd_err_set(err, SEMD_EIO, "cannot open token file '%s': %s",
                            path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return semd_err_set(err, SEMD_EIO, "token file '%s' is not a file",
                            path);
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        fclose(f);
        return semd_err_set(err, SEMD_EINVAL,
                            "token file '%s' is readable by other users "
                            "(mode %04o): anyone on this machine could use "
                            "the token; chmod 600 it",
                            path, (unsigned)(st.st_mode & 07777));
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int more = !feof(f) && fgetc(f) != EOF;
    fclose(f);
    if (more)
        return semd_err_set(err, SEMD_EINVAL,
                            "token file '%s' is longer than %zu bytes", path,
                            sizeof buf - 1);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = 0;
    if (n < 8 || strlen(buf) != n)
        return semd_err_set(err, SEMD_EINVAL,
                            "token file '%s' must hold one token of at least "
                            "8 bytes", path);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] <= ' ' || (unsigned char)buf[i] >= 127)
            return semd_err_set(err, SEMD_EINVAL,
                                "token file '%s' holds a space or a "
                                "non-printable byte", path);
    *out = strdup(buf);
    return *out ? SEMD_OK : semd_err_set(err, SEMD_ENOMEM, "out of memory");
}

int
config_load_tokens(struct config *c, struct semd_err *err)
{
    int rc;
    if (c->token_file && (rc = read_token(c->token_file, &c->write_token,
                                          err)) != 0)
        return rc;
    if (c->read_token_file && (rc = read_token(c->read_token_file,
                                               &c->read_token, err)) != 0)
        return rc;
    return SEMD_OK;
}

/* The whole of a PEM file, NUL-terminated, in *out. A key (secret set)
 * must be readable and writable by its owner only. */
static int
read_pem(const char *path, const char *flag, int secret, char **out,
         struct semd_err *err)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f)
        return semd_err_set(err, SEMD_EIO, "cannot open %s '%s': %s", flag,
                            path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return semd_err_set(err, SEMD_EIO, "%s '%s' is not a file", flag,
                            path);
    }
    if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        fclose(f);
        return semd_err_set(err, SEMD_EINVAL,
                            "%s '%s' can be read or changed by other users "
                            "(mode %04o): the private key would no longer "
                            "be private; chmod 600 it",
                            flag, path, (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > (1 << 20)) {
        fclose(f);
        return semd_err_set(err, SEMD_EINVAL,
                            "%s '%s' is %lld bytes, more than a PEM file "
                            "of 1 MiB", flag, path, (long long)st.st_size);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    buf[n] = 0;
    if (bad || !strstr(buf, "-----BEGIN ") || strlen(buf) != n) {
        if (secret)
            memset(buf, 0, n);
        free(buf);
        return semd_err_set(err, SEMD_EINVAL,
                            "%s '%s' holds no PEM block (\"-----BEGIN "
                            "...\")", flag, path);
    }
    *out = buf;
    return SEMD_OK;
}

int
config_read_tls(const struct config *c, char **cert, char **key,
                struct semd_err *err)
{
    *cert = *key = NULL;
    if (!c->tls_cert)
        return SEMD_OK;
    int rc = read_pem(c->tls_cert, "--tls-cert", 0, cert, err);
    if (rc == 0 && (rc = read_pem(c->tls_key, "--tls-key", 1, key,
                                  err)) != 0) {
        free(*cert);
        *cert = NULL;
    }
    return rc;
}

void
config_release(struct config *c)
{
    free(c->index);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->token_file);
    free(c->read_token_file);
    free(c->data_dir);
    free(c->follow);
    if (c->write_token) {
        memset(c->write_token, 0, strlen(c->write_token));
        free(c->write_token);
    }
    if (c->read_token) {
        memset(c->read_token, 0, strlen(c->read_token));
        free(c->read_token);
    }
    memset(c, 0, sizeof *c);
}
