/*
 * cmd_model.c - `semd info` and `semd verify`: read a model file's header,
 * check its checksums.
 */
#include "semd.h"

#include "commands.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void
iso_time(uint64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: semd info MODEL [--json]\n\n"
                   "Shows rows, dimensions, dtype, source, checksum, "
                   "creation time and size.\n");
            return 0;
        } else if (!path && argv[i][0] != '-') {
            path = argv[i];
        } else {
            fprintf(stderr, "semd info: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: semd info MODEL [--json]\n");
        return 2;
    }
    struct semd_err err = {0};
    struct semd_model *m;
    if (semd_model_open(&m, path, &err) != 0) {
        fprintf(stderr, "semd info: %s\n", err.msg);
        return 1;
    }
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    char created[32], checksum[16];
    iso_time(in.created, created, sizeof created);
    snprintf(checksum, sizeof checksum, "%08x", in.checksum);
    if (json) {
        json_t *o = json_pack(
            "{s:s, s:I, s:i, s:s, s:i, s:s, s:s, s:s, s:s, s:I, s:b}",
            "path", path, "rows", (json_int_t)in.rows, "dims", (int)in.dims,
            "dtype", "f32", "format_version", (int)in.version,
            "source_format", in.source_format, "source", in.source,
            "checksum", checksum, "created", created, "size",
            (json_int_t)in.file_size, "counts_are_ranks",
            (in.flags & SEMD_MODEL_COUNTS_ARE_RANKS) != 0);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("path:           %s\n"
               "rows:           %llu\n"
               "dims:           %u\n"
               "dtype:          f32\n"
               "format version: %u\n"
               "source:         %s (%s)\n"
               "checksum:       %s\n"
               "created:        %s\n"
               "size:           %llu bytes\n"
               "counts:         %s\n",
               path, (unsigned long long)in.rows, in.dims, in.version,
               in.source, in.source_format, checksum, created,
               (unsigned long long)in.file_size,
               (in.flags & SEMD_MODEL_COUNTS_ARE_RANKS) ? "ranks"
                                                        : "frequencies");
    }
    semd_model_close(m);
    return 0;
}

int
cmd_verify(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: semd verify MODEL...\n\n"
                "Reads each model file whole and checks every section "
                "checksum.\n");
        return argc < 2 ? 2 : 0;
    }
    int status = 0;
    for (int i = 1; i < argc; i++) {
        struct semd_err err = {0};
        struct semd_model *m = NULL;
        if (semd_model_open(&m, argv[i], &err) != 0 ||
            semd_model_verify(m, &err) != 0) {
            fprintf(stderr, "semd verify: %s\n", err.msg);
            status = 1;
        } else {
            printf("%s: ok\n", argv[i]);
        }
        semd_model_close(m);
    }
    return status;
}
