/*
 * web.c - GET / and the page's stylesheet and script, served from the
 * copies embedded in the binary at build time (web_assets.c), so the page
 * needs no files, no CDN and no network beyond this server.
 *
 * The page is one response: its stylesheet and script are inline (the
 * build put them there), so a browser paints it after one round trip.
 * /app.css and /app.js still serve the same files on their own.
 *
 * Each file is embedded twice, as is and gzip-compressed; a client whose
 * Accept-Encoding takes gzip gets the compressed copy with
 * "Content-Encoding: gzip". The two are different representations, so
 * each has its own ETag, and every reply says "Vary: Accept-Encoding".
 * Replies carry "Cache-Control: no-cache", so a browser revalidates and
 * gets 304 for an unchanged page; and a Content-Security-Policy that
 * allows requests to this origin only, no frames, and inline code only
 * when its SHA-256 is one the build listed: the page builds its DOM from
 * API data with textContent.
 *
 * The table is constant; handlers run on any request thread.
 */
#include "serve.h"
#include "web.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CSP                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; "             \
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "           \
    "form-action 'none'; frame-ancestors 'none'"

static const char *
content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot && !strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (dot && !strcmp(dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (dot && !strcmp(dot, ".svg"))
        return "image/svg+xml";
    return "text/html; charset=utf-8";
}

/* Whether an If-None-Match header names etag (a list or "*"). */
static int
etag_matches(const char *header, const char *etag)
{
    if (!header)
        return 0;
    if (!strcmp(header, "*"))
        return 1;
    size_t n = strlen(etag);
    for (const char *p = header; (p = strstr(p, etag)) != NULL; p += n) {
        int start = p == header || p[-1] == ' ' || p[-1] == ',' ||
                    (p - header >= 2 && p[-1] == '/' && p[-2] == 'W');
        int end = p[n] == 0 || p[n] == ',' || p[n] == ' ';
        if (start && end)
            return 1;
    }
    return 0;
}

static int
space(char c)
{
    return c == ' ' || c == '\t';
}

/* Whether a qvalue ("0", "0.5", "1.000", up to end) is above zero; one
 * that does not parse counts as zero. */
static int
qvalue_positive(const char *s, const char *end)
{
    if (s < end && *s == '1')
        return 1;
    if (s >= end || *s != '0')
        return 0;
    for (s++; s < end && !space(*s) && *s != ';'; s++)
        if (*s >= '1' && *s <= '9')
            return 1;
    return 0;
}

int
web_accepts_gzip(const char *header)
{
    if (!header)
        return 0;
    int gzip = -1, star = -1; /* -1: not named; else its q is above 0 */
    const char *p = header;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p;
        while (a < end && space(*a))
            a++;
        const char *b = a;
        while (b < end && *b != ';' && !space(*b))
            b++;
        size_t n = (size_t)(b - a);
        int ok = n > 0;
        for (const char *s = b; s < end; s++) {
            if (*s != ';')
                continue;
            const char *v = s + 1;
            while (v < end && space(*v))
                v++;
            if (end - v >= 2 && (*v == 'q' || *v == 'Q') && v[1] == '=')
                ok = qvalue_positive(v + 2, end);
        }
        if ((n == 4 && !strncasecmp(a, "gzip", 4)) ||
            (n == 6 && !strncasecmp(a, "x-gzip", 6)))
            gzip = gzip > 0 ? 1 : ok;
        else if (n == 1 && *a == '*')
            star = ok;
        p = *end ? end + 1 : end;
    }
    return gzip >= 0 ? gzip : star > 0;
}

void
api_page(struct api_req *rq, struct api_reply *rp)
{
    const struct web_asset *a = NULL;
    for (size_t i = 0; i < web_n_assets; i++)
        if (!strcmp(web_assets[i].path, rq->route->path))
            a = &web_assets[i];
    if (!a) {
        reply_error(rp, ERR_NOT_FOUND, NULL, "no page at '%s'",
                    rq->route->path);
        return;
    }
    int gz = a->gz_len < a->len && web_accepts_gzip(rq->accept_encoding);
    const char *etag = gz ? a->etag_gz : a->etag;
    int same = etag_matches(rq->if_none_match, etag);
    const unsigned char *data = gz ? a->gz : a->data;
    size_t len = same ? 0 : gz ? a->gz_len : a->len;
    rp->text = malloc(len + 1);
    if (!rp->text) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for %zu bytes",
                    len);
        return;
    }
    memcpy(rp->text, data, len);
    rp->text[len] = 0;
    rp->text_len = len;
    rp->status = same ? 304 : 200;
    rp->content_type = content_type(a->path);
    const char *h[] = {"ETag", etag,
                       "Cache-Control", "no-cache",
                       "Content-Security-Policy", a->csp ? a->csp : CSP,
                       "X-Content-Type-Options", "nosniff",
                       "Referrer-Policy", "no-referrer",
                       "Vary", "Accept-Encoding",
                       gz && !same ? "Content-Encoding" : NULL, "gzip",
                       NULL};
    _Static_assert(sizeof h <= sizeof rp->headers, "too many headers");
    memcpy(rp->headers, h, sizeof h);
}
