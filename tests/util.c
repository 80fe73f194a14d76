/*
 * util.c - helpers shared by the test programs (see test.h).
 */
#include "test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static void
cleanup(void)
{
    if (tmpdir[0] && !getenv("SEMD_KEEP_TMP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

const char *
t_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/semd-test-XXXXXX",
                 base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(cleanup);
    }
    return tmpdir;
}

const char *
t_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", t_tmpdir(), name);
    return b;
}

const char *
t_datadir(void)
{
    const char *d = getenv("SEMD_TEST_DATA");
    return d && *d ? d : "tests/data";
}

const char *
t_fixture(void)
{
    /* converted from tests/data/glove-20k.bin by make into the build dir */
    const char *f = getenv("SEMD_FIXTURE");
    return f && *f ? f : "build/glove-20k.semd";
}

const char *
t_semd(void)
{
    const char *s = getenv("SEMD_BIN");
    return s && *s ? s : "build/semd";
}

float
t_rand(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

const char *
t_random_model(const char *name, uint64_t rows, uint32_t dims, uint64_t seed)
{
    const char *path = t_path(name);
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts o = {"test", name, SEMD_MODEL_COUNTS_ARE_RANKS};
    if (semd_writer_open(&w, path, dims, &o, &err) != 0)
        fail_msg("writer_open: %s", err.msg);
    float *v = malloc(dims * sizeof *v);
    for (uint64_t r = 0; r < rows; r++) {
        char word[32];
        int n = snprintf(word, sizeof word, "w%llu", (unsigned long long)r);
        for (uint32_t i = 0; i < dims; i++)
            v[i] = t_rand(&seed);
        if (semd_writer_add(w, word, (size_t)n, v, 0, &err) != 0)
            fail_msg("writer_add: %s", err.msg);
    }
    free(v);
    if (semd_writer_finish(w, &err) != 0)
        fail_msg("writer_finish: %s", err.msg);
    return path;
}

void
t_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
}

char *
t_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[len] = '\0';
    if (n)
        *n = (size_t)len;
    return buf;
}

int
t_run(const char *cmd, char **out)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += k;
        if (cap - len < 2048)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

double
t_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

double
t_scale(void)
{
    const char *s = getenv("SEMD_TEST_TIME_SCALE");
    double v = s && *s ? atof(s) : 1.0;
    return v > 1.0 ? v : 1.0;
}
