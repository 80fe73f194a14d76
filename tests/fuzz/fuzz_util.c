/*
 * fuzz_util.c - the temporary directory and file helpers of fuzz.h.
 *
 * The directory is made once per process and removed by an atexit
 * handler; libFuzzer's -fork and -jobs modes start separate processes, so
 * each gets its own. Single-threaded.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[512];

static void
remove_dir(void)
{
    if (dir[0]) {
        fuzz_empty_dir(dir);
        rmdir(dir);
    }
}

const char *
fuzz_tmpdir(void)
{
    if (dir[0])
        return dir;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
                       access("/dev/shm", W_OK) == 0
                   ? "/dev/shm"
                   : "/tmp";
    snprintf(dir, sizeof dir, "%s/semd-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fuzz: cannot make a directory in %s: %s\n", base,
                strerror(errno));
        abort();
    }
    atexit(remove_dir);
    return dir;
}

const char *
fuzz_path(const char *name)
{
    static char buf[4][768];
    static unsigned next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", fuzz_tmpdir(), name);
    return p;
}

void
fuzz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", path,
                strerror(errno));
        abort();
    }
    const char *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fprintf(stderr, "fuzz: cannot write %s: %s\n", path,
                    strerror(errno));
            abort();
        }
        p += k;
        n -= (size_t)k;
    }
    close(fd);
}

void
fuzz_empty_dir(const char *d)
{
    DIR *dd = opendir(d);
    if (!dd)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(dd)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            fuzz_empty_dir(p);
            rmdir(p);
        } else {
            unlink(p);
        }
    }
    closedir(dd);
}

void
fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: property broken: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}
