/*
 * web.h - the page's files as embedded at build time (the generated
 * web_assets.c, made by server/web/embed.sh from server/web/).
 */
#ifndef SEMD_WEB_H
#define SEMD_WEB_H

#include <stddef.h>

struct web_asset {
    const char *path;          /* the URL path it is served at */
    const unsigned char *data; /* len bytes, then a NUL */
    size_t len;
    const char *etag;          /* quoted: checksum and length */
};

extern const struct web_asset web_assets[];
extern const size_t web_n_assets;

#endif
