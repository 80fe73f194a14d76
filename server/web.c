/*
 * web.c - GET / and the page's stylesheet and script, served from the
 * copies embedded in the binary at build time (web_assets.c), so the page
 * needs no files, no CDN and no network beyond this server.
 *
 * Replies carry an ETag (checksum and length of the file, fixed for a
 * build) and "Cache-Control: no-cache", so a browser revalidates and gets
 * 304 for an unchanged page; and a Content-Security-Policy that allows
 * scripts, styles and requests from this origin only, no inline code,
 * no frames: the page builds its DOM from API data with textContent.
 *
 * The table is constant; handlers run on any request thread.
 */
#include "serve.h"
#include "web.h"

#include <stdlib.h>
#include <string.h>

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
    int same = etag_matches(rq->if_none_match, a->etag);
    size_t len = same ? 0 : a->len;
    rp->text = malloc(len + 1);
    if (!rp->text) {
        reply_error(rp, ERR_INTERNAL, NULL, "out of memory for %zu bytes",
                    len);
        return;
    }
    memcpy(rp->text, a->data, len);
    rp->text[len] = 0;
    rp->text_len = len;
    rp->status = same ? 304 : 200;
    rp->content_type = content_type(a->path);
    const char *h[] = {"ETag", a->etag,
                       "Cache-Control", "no-cache",
                       "Content-Security-Policy", CSP,
                       "X-Content-Type-Options", "nosniff",
                       "Referrer-Policy", "no-referrer",
                       NULL};
    memcpy(rp->headers, h, sizeof h);
}
