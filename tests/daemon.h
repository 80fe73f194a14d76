/*
 * daemon.h - the end-to-end test harness: runs the built `semd serve` as a
 * child process on 127.0.0.1 port 0 and talks plain HTTP/1.1 to it over
 * loopback.
 *
 * Every daemon started here is registered until t_daemon_stop() collects
 * it; a failing assertion, exit(), a fatal signal or the death of the test
 * program never leaves one running (see daemon.c).
 *
 * Threads: t_request() and the t_json_* helpers may be called from any
 * thread; start and stop a daemon from the test's main thread.
 */
#ifndef SEMD_TEST_DAEMON_H
#define SEMD_TEST_DAEMON_H

#include "test.h"

#include <jansson.h>
#include <limits.h>
#include <sys/types.h>

struct t_daemon {
    pid_t pid;           /* 0 once stopped (or never started) */
    int port;            /* what the daemon printed it listens on */
    char log[PATH_MAX];  /* its stderr, appended to across restarts */
    /* in: set before t_daemon_start() to return once /v1/health answers
     * rather than /v1/ready (a follower is not ready before its first
     * snapshot) */
    int live_only;
};

/* Runs `semd serve ARGS... --listen 127.0.0.1:0` (args: what follows
 * "serve", NULL-terminated, the model included), its stderr appended to
 * t_path(name), and waits until /v1/ready (or, with d->live_only,
 * /v1/health) answers 200. Waits scale with t_scale().
 * Returns 0 with d->pid and d->port set; the exit status (128 + signal
 * when killed) when the daemon stopped by itself, e.g. on refused flags;
 * -1 when it did not get there in time (it is killed then, and the log
 * path printed). */
int t_daemon_start(struct t_daemon *d, const char *name,
                   const char *const *args);

/* Sends sig and waits for the daemon to end. Returns its exit status
 * (128 + signal when a signal ended it), or -1 when it was not running
 * or did not end within 20 s (scaled) and had to be killed. */
int t_daemon_stop(struct t_daemon *d, int sig);

struct t_resp {
    int status;   /* from the status line */
    char *head;   /* status line and headers, without the blank line */
    char *body;   /* NUL-terminated, len bytes before the NUL */
    size_t len;
    json_t *json; /* the body parsed when its type is JSON, else NULL */
};

/* One request on its own connection ("Connection: close"): method,
 * target, Content-Type ctype (NULL: none), n bytes of body (NULL: no body
 * and no Content-Length), extra header lines "K: v\r\n" (NULL: none).
 * Returns 0 with *r filled (t_resp_free() it), or -1 when no whole
 * response came back; *r is zeroed then, so freeing it is harmless. */
int t_request(int port, const char *method, const char *target,
              const char *ctype, const char *body, size_t n,
              const char *headers, struct t_resp *r);

/* t_request() of GET target without body or extra headers. */
int t_get(int port, const char *target, struct t_resp *r);

/* Frees what *r holds and zeroes it. */
void t_resp_free(struct t_resp *r);

/* Lower level, for tests of the protocol itself: a connected socket to
 * 127.0.0.1:port (-1 on failure); all n bytes sent (0) or -1; one
 * response read from fd (0, or -1 when the connection closed or timed
 * out first); raw request bytes sent on a new connection and the reply
 * read. */
int t_dial(int port);
int t_send_all(int fd, const void *p, size_t n);
int t_read_resp(int fd, struct t_resp *r);
int t_raw(int port, const void *req, size_t n, struct t_resp *r);

/* Called with every response t_request() and t_raw() receive (method and
 * target taken from the request line). NULL turns it off. The hook may
 * run on several threads at once. */
typedef void t_resp_hook(const char *method, const char *target,
                         const struct t_resp *r);
void t_set_resp_hook(t_resp_hook *hook);

/* Appends every response t_request() and t_raw() receive from now on, and
 * each one passed to t_record(), to path as one JSON line for the contract
 * test (tests/contract/validate.mjs): method, path (the target without its
 * query), status, content type and body (the parsed JSON, else the text).
 * NULL stops and closes the file. Returns 0, or -1 when path cannot be
 * opened. Any thread may record; lines never interleave. */
int t_record_responses(const char *path);
void t_record(const char *method, const char *target,
              const struct t_resp *r);

/* Runs the contract checker (tests/contract/validate.mjs) over what
 * t_record_responses() recorded last, against openapi.yaml. Returns its
 * exit status (0: every response valid and every route reached; -1: no
 * recording), its output in *out (free() it). */
int t_contract_check(char **out);

/* For a program that reaches only some routes: stops recording, runs the
 * checker and fails the test on any invalid response, or when a route in
 * must_reach ("METHOD /path" strings ending in NULL; NULL for none) was
 * not reached; other routes are left to test_http, which reaches them
 * all. Returns how many responses were checked. */
unsigned t_contract_partial(const char *const *must_reach);

/* cmocka group fixtures for such a program: record every response into
 * t_path("contract.jsonl"), and stop recording. */
int t_group_record(void **state);
int t_group_stop_recording(void **state);

/* The value at a dotted path such as "result.neighbors.0.word" (a
 * numeric part indexes an array; "neighbors[0]" works too), or NULL.
 * Borrowed from v. */
json_t *t_json_at(json_t *v, const char *path);

/* The string at path, or "(none)": never NULL, for messages. */
const char *t_json_str(json_t *v, const char *path);

/* Writes token (verbatim, add "\n" if wanted) to t_path(name) with the
 * given mode; returns the path, valid for the next 16 calls. */
const char *t_token_file(const char *name, const char *token, mode_t mode);

#endif
