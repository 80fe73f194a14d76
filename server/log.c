/*
 * log.c - logfmt lines on stderr: ts=... level=... msg="..." key=value...
 * One fprintf per line, so lines from different threads never interleave
 * (stdio locks the stream per call). Callers never pass tokens or query
 * strings: those may hold secrets.
 *
 * Called from any thread.
 */
#include "serve.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

void
log_quote(char *buf, size_t n, const char *s)
{
    /* bare when it has no space, quote, '=' or control byte */
    int bare = *s != 0;
    for (const char *p = s; *p && bare; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\')
            bare = 0;
    size_t len = strlen(buf);
    if (bare) {
        snprintf(buf + len, n - len, "%s", s);
        return;
    }
    if (len + 1 < n)
        buf[len++] = '"';
    for (const char *p = s; *p && len + 3 < n; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)ch;
        } else if (ch < ' ') {
            buf[len++] = ' ';
        } else {
            buf[len++] = (char)ch;
        }
    }
    if (len + 1 < n)
        buf[len++] = '"';
    buf[len < n ? len : n - 1] = 0;
}

/* Checked like printf, with the arguments in ap: the compiler checks each
 * caller's format against its arguments, and knows fmt here is one. */
static void vlog(const char *level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
vlog(const char *level, const char *fmt, va_list ap)
{
    char ts[40], line[2048];
    struct timespec t;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &t);
    gmtime_r(&t.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", t.tv_nsec / 1000000);
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "ts=%s level=%s %s\n", ts, level, line);
}

void
log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("info", fmt, ap);
    va_end(ap);
}

void
log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error", fmt, ap);
    va_end(ap);
}
