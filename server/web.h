/*
 * web.h - the page's files as embedded at build time (the generated
 * web_assets.c, made by server/web/embed.sh from server/web/): each in
 * full and gzip-compressed, the page with its stylesheet and script
 * inline.
 */
#ifndef SEMD_WEB_H
#define SEMD_WEB_H

#include <stddef.h>

struct web_asset {
    const char *path;          /* the URL path it is served at */
    const unsigned char *data; /* len bytes, then a NUL */
    size_t len;
    const unsigned char *gz;   /* the same, gzip-compressed: gz_len bytes */
    size_t gz_len;
    const char *etag;          /* quoted: checksum and length */
    const char *etag_gz;       /* the same with "-gz": another encoding is
                                  another representation */
    const char *csp;           /* the page's Content-Security-Policy, with
                                  the hashes of its inline blocks; NULL:
                                  the default */
};

extern const struct web_asset web_assets[];
extern const size_t web_n_assets;

/* Whether an Accept-Encoding header (may be NULL) accepts gzip: "gzip" or
 * "x-gzip" with a nonzero q, or "*" with a nonzero q when gzip is not
 * named. Case-insensitive, as RFC 9110 says. */
int web_accepts_gzip(const char *header);

#endif
