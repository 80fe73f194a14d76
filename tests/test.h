/*
 * test.h - what every test file includes: cmocka, and small helpers from
 * util.c for temporary directories and generated models.
 *
 * Each tests/test_<module>.c is one cmocka program; tests/run.sh runs them
 * all with a timeout and prints the totals.
 */
#ifndef SEMD_TEST_H
#define SEMD_TEST_H

/* cmocka needs these before its header */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "semd.h"

/* A fresh temporary directory for this test program, removed at exit
 * unless SEMD_KEEP_TMP is set. Path borrowed. */
const char *t_tmpdir(void);

/* t_tmpdir()/name in a static rotating buffer (8 slots). */
const char *t_path(const char *name);

/* The directory holding the committed fixtures (tests/data). */
const char *t_datadir(void);

/* Path of the 20k-word GloVe fixture model ($SEMD_FIXTURE), which make
 * converts from the committed tests/data/glove-20k.bin. */
const char *t_fixture(void);

/* Writes a model of rows x dims with words "w0", "w1", ... and vectors from
 * a fixed-seed generator; returns its path (static rotating buffer). */
const char *t_random_model(const char *name, uint64_t rows, uint32_t dims,
                           uint64_t seed);

/* Deterministic uniform float in [-1, 1) from a 64-bit state. */
float t_rand(uint64_t *state);

/* Writes n bytes to path; fails the test on error. */
void t_write_file(const char *path, const void *data, size_t n);

/* Reads a whole file (NUL-terminated, *n its size); free() it. */
char *t_read_file(const char *path, size_t *n);

/* Runs a shell command, returns its exit status; output to *out (free()
 * it) when out is not NULL. */
int t_run(const char *cmd, char **out);

/* Path of the built semd binary. */
const char *t_semd(void);

/* Monotonic clock in seconds. */
double t_now(void);

/* How much longer than usual a wait may take: $SEMD_TEST_TIME_SCALE
 * (the sanitizer targets set it), at least 1. Multiply waits by it. */
double t_scale(void);

#endif
