/*
 * daemon.c - the end-to-end test harness (daemon.h): `semd serve` as a
 * child process, a small HTTP/1.1 client, JSON path look-up.
 *
 * No daemon outlives the test program. Each one is registered in a table
 * of lock-free atomic pids from fork until t_daemon_stop() has seen it
 * end; an atexit() handler kills and collects what is left (a failed
 * cmocka assertion leaves its test early, the program still exits
 * normally), a handler for SIGINT, SIGTERM, SIGQUIT, SIGHUP and SIGABRT
 * kills them (kill() and atomic loads only, async-signal-safe) before the
 * signal takes its course, and a child forked from the main thread asks
 * the kernel for SIGKILL when the test program dies (a sanitizer's exit
 * runs no atexit handlers; SIGKILL runs nothing). A pid leaves the table
 * before it is reaped, so the handlers never signal a reused pid.
 *
 * Threads: the client functions and the JSON helpers are safe from any
 * thread; the hook pointer is atomic. Start and stop daemons from the main
 * thread (the parent-death signal is tied to the forking thread, so it is
 * only asked for there).
 */
#define _GNU_SOURCE /* pipe2, strcasestr, memmem */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LIVE 64

/* ------------------------------------------------------------- the reaper */

static _Atomic pid_t live[MAX_LIVE];
static int reaper_installed; /* main thread only */

static void
track(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        pid_t none = 0;
        if (atomic_compare_exchange_strong(&live[i], &none, pid))
            return;
    }
    /* still killed with the test program, through the parent-death
     * signal */
    print_error("daemon.c: more than %d daemons at once\n", MAX_LIVE);
}

static void
untrack(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        pid_t p = pid;
        if (atomic_compare_exchange_strong(&live[i], &p, 0))
            return;
    }
}

static void
reap_all(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        pid_t p = atomic_exchange(&live[i], 0);
        if (p > 0) {
            kill(p, SIGKILL);
            waitpid(p, NULL, 0);
        }
    }
}

static void
on_fatal(int sig)
{
    int saved = errno;
    for (int i = 0; i < MAX_LIVE; i++) {
        pid_t p = atomic_load(&live[i]);
        if (p > 0)
            kill(p, SIGKILL);
    }
    errno = saved;
    /* SA_RESETHAND put the default action back: take it */
    raise(sig);
}

static void
install_reaper(void)
{
    if (reaper_installed)
        return;
    reaper_installed = 1;
    atexit(reap_all);
    const int sigs[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa = {0};
        /* a handler the test installed itself stays */
        if (sigaction(sigs[i], NULL, &old) != 0 ||
            old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
            continue;
        sa.sa_handler = on_fatal;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

static int
exit_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* Whether pid has ended; collects it (after untracking) when it has, its
 * exit code in *code. */
static int
ended(pid_t pid, int *code)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno != ECHILD)
            return 0;
        /* collected elsewhere (the atexit reaper) */
        untrack(pid);
        *code = -1;
        return 1;
    }
    if (si.si_pid != pid)
        return 0;
    untrack(pid);
    int st = 0;
    waitpid(pid, &st, 0);
    *code = exit_code(st);
    return 1;
}

static void
kill_and_collect(pid_t pid)
{
    int code;
    kill(pid, SIGKILL);
    while (!ended(pid, &code))
        usleep(5 * 1000);
}

/* ------------------------------------------------------------- the daemon */

/* Reads the daemon's stdout until the line that names its port. Returns
 * the port, 0 when the daemon closed its stdout (it is ending), -1 when
 * the deadline passed. */
static int
read_port(int fd, double deadline)
{
    char buf[1024];
    size_t len = 0;
    for (;;) {
        buf[len] = 0;
        char *nl;
        while ((nl = strchr(buf, '\n'))) {
            int port;
            if (sscanf(buf, "semd: listening on http://127.0.0.1:%d",
                       &port) == 1)
                return port;
            len -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len + 1);
        }
        if (len == sizeof buf - 1)
            len = 0; /* a line this long is not the one */
        double left = deadline - t_now();
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int k = poll(&p, 1, (int)(left * 1000) + 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        ssize_t got = read(fd, buf + len, sizeof buf - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 0;
        len += (size_t)got;
    }
}

int
t_daemon_start(struct t_daemon *d, const char *name,
               const char *const *args)
{
    install_reaper();
    d->pid = 0;
    d->port = 0;
    snprintf(d->log, sizeof d->log, "%s", t_path(name));
    size_t n = 0;
    while (args && args[n])
        n++;
    const char **argv = calloc(n + 5, sizeof *argv);
    if (!argv)
        fail_msg("out of memory");
    argv[0] = t_semd();
    argv[1] = "serve";
    for (size_t i = 0; i < n; i++)
        argv[2 + i] = args[i];
    argv[n + 2] = "--listen";
    argv[n + 3] = "127.0.0.1:0";

    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        fail_msg("pipe: %s", strerror(errno));
    /* opened before fork: the child only calls async-signal-safe
     * functions */
    int logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                     0600);
    if (logfd < 0)
        fail_msg("cannot open %s: %s", d->log, strerror(errno));
    pid_t parent = getpid();
    int main_thread = (pid_t)syscall(SYS_gettid) == parent;
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        if (main_thread && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 ||
                            getppid() != parent))
            _exit(127);
        dup2(out[1], 1);
        dup2(logfd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    track(pid);
    close(out[1]);
    close(logfd);
    free(argv);

    double wait_s = 60 * t_scale();
    double deadline = t_now() + wait_s;
    int port = read_port(out[0], deadline);
    close(out[0]);
    int code;
    if (port == 0) {
        /* stdout closed: it is ending, e.g. on refused flags */
        while (!ended(pid, &code)) {
            if (t_now() > deadline) {
                kill_and_collect(pid);
                return -1;
            }
            usleep(5 * 1000);
        }
        return code ? code : -1;
    }
    if (port < 0) {
        print_error("semd serve printed no port in %.0f s; log in %s\n",
                    wait_s, d->log);
        kill_and_collect(pid);
        return -1;
    }
    const char *probe = d->live_only ? "/v1/health" : "/v1/ready";
    while (t_now() < deadline) {
        if (ended(pid, &code)) {
            print_error("semd serve ended (%d) before %s answered; log in "
                        "%s\n", code, probe, d->log);
            return code ? code : -1;
        }
        struct t_resp r;
        if (t_request(port, "GET", probe, NULL, NULL, 0, NULL, &r) == 0) {
            int st = r.status;
            t_resp_free(&r);
            if (st == 200) {
                d->pid = pid;
                d->port = port;
                return 0;
            }
        }
        usleep(20 * 1000);
    }
    print_error("semd serve: %s did not answer 200 in %.0f s; log in %s\n",
                probe, wait_s, d->log);
    kill_and_collect(pid);
    return -1;
}

int
t_daemon_stop(struct t_daemon *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    pid_t pid = d->pid;
    d->pid = 0;
    kill(pid, sig);
    int code;
    for (double t0 = t_now(); t_now() - t0 < 20 * t_scale();) {
        if (ended(pid, &code))
            return code;
        usleep(10 * 1000);
    }
    print_error("semd serve (pid %d) did not end on signal %d; killed; log "
                "in %s\n", (int)pid, sig, d->log);
    kill_and_collect(pid);
    return -1;
}

/* ------------------------------------------------------------- the client */

static const char *header(const char *head, const char *name);

static _Atomic(t_resp_hook *) resp_hook;
static FILE *recording; /* under record_lock */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;
static char record_path[PATH_MAX]; /* the last one opened */

int
t_record_responses(const char *path)
{
    FILE *f = path ? fopen(path, "w") : NULL;
    if (path && !f)
        return -1;
    if (path)
        snprintf(record_path, sizeof record_path, "%s", path);
    pthread_mutex_lock(&record_lock);
    FILE *old = recording;
    recording = f;
    pthread_mutex_unlock(&record_lock);
    if (old)
        fclose(old);
    return 0;
}

int
t_contract_check(char **out)
{
    *out = NULL;
    if (!record_path[0])
        return -1;
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "node '%s/../contract/validate.mjs' '%s/../../openapi.yaml' "
             "'%s' 2>&1", t_datadir(), t_datadir(), record_path);
    return t_run(cmd, out);
}

unsigned
t_contract_partial(const char *const *must_reach)
{
    t_record_responses(NULL);
    char *out = NULL;
    int rc = t_contract_check(&out);
    unsigned checked = 0, total = 0, unreached = 0;
    const char *sum = out ? strstr(out, "contract: ") : NULL;
    if (!sum || sscanf(sum, "contract: %u of %u responses valid", &checked,
                       &total) != 2)
        fail_msg("the contract checker failed (%d): %s", rc,
                 out ? out : "");
    static const char reach[] = "contract: FAIL no recorded request reached ";
    for (char *l = strstr(out, "contract: FAIL"); l;
         l = strstr(l + 1, "contract: FAIL")) {
        if (strncmp(l, reach, sizeof reach - 1))
            fail_msg("%s", out);
        const char *route = l + sizeof reach - 1;
        size_t n = strcspn(route, "\n");
        for (const char *const *m = must_reach; m && *m; m++)
            if (strlen(*m) == n && !strncmp(route, *m, n))
                fail_msg("%s", out);
        unreached++;
    }
    print_message("contract: %u of %u responses valid (%u routes left to "
                  "test_http)\n", checked, total, unreached);
    if (checked != total || (rc != 0 && rc != 1))
        fail_msg("%s", out);
    free(out);
    return total;
}

int
t_group_record(void **state)
{
    (void)state;
    return t_record_responses(t_path("contract.jsonl"));
}

int
t_group_stop_recording(void **state)
{
    (void)state;
    t_record_responses(NULL);
    return 0;
}

void
t_record(const char *method, const char *target, const struct t_resp *r)
{
    char path[2048], ctype[128] = "";
    snprintf(path, sizeof path, "%.*s", (int)strcspn(target, "?"), target);
    const char *ct = r->head ? header(r->head, "Content-Type:") : NULL;
    if (ct)
        snprintf(ctype, sizeof ctype, "%.*s", (int)strcspn(ct, "\r"), ct);
    json_t *body = r->json ? json_incref(r->json)
                           : json_string(r->body ? r->body : "");
    if (!body)
        body = json_string("(a body that is not UTF-8)");
    json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:o}", "method", method,
                          "path", path, "status", r->status, "content_type",
                          ctype, "body", body);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pthread_mutex_lock(&record_lock);
    if (recording && line) {
        fprintf(recording, "%s\n", line);
        fflush(recording);
    }
    pthread_mutex_unlock(&record_lock);
    free(line);
}

void
t_set_resp_hook(t_resp_hook *hook)
{
    atomic_store(&resp_hook, hook);
}

void
t_resp_free(struct t_resp *r)
{
    free(r->head);
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

int
t_dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    double s = 10 * t_scale();
    struct timeval tv = {(time_t)s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

int
t_send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Decodes a chunked body of n bytes at p into out (which may be p itself,
 * or NULL to check only). Returns the decoded length once the last chunk
 * and the trailers are all there, -1 before. */
static long
dechunk(const char *p, size_t n, char *out)
{
    size_t i = 0, o = 0;
    for (;;) {
        const char *eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol)
            return -1;
        unsigned long size = strtoul(p + i, NULL, 16);
        i = (size_t)(eol - p) + 2;
        if (size == 0)
            break;
        if (n - i < size + 2)
            return -1;
        if (out)
            memmove(out + o, p + i, size);
        o += size;
        i += size + 2;
    }
    /* trailers, up to an empty line */
    for (;;) {
        const char *eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol)
            return -1;
        if (eol == p + i)
            return (long)o;
        i = (size_t)(eol - p) + 2;
    }
}

/* The value of header name (with its colon) in head, or NULL; the value
 * runs to the next CR. */
static const char *
header(const char *head, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s", name);
    const char *h = strcasestr(head, pat);
    if (!h)
        return NULL;
    h += strlen(pat);
    while (*h == ' ' || *h == '\t')
        h++;
    return h;
}

/* One response from fd; no_body for the reply to HEAD. */
static int
read_resp(int fd, struct t_resp *r, int no_body)
{
    size_t cap = 8192, len = 0, hl = 0; /* hl: header bytes, CRLFCRLF on */
    char *buf = malloc(cap);
    long clen = -1;
    int chunked = 0, to_eof = 0, have_head = 0;
    memset(r, 0, sizeof *r);
    if (!buf)
        return -1;
    for (;;) {
        if (have_head) {
            size_t got = len - hl - 4;
            if (clen >= 0 && got >= (size_t)clen)
                break;
            if (chunked && dechunk(buf + hl + 4, got, NULL) >= 0)
                break;
        }
        if (cap - len < 4096) {
            char *b = realloc(buf, cap *= 2);
            if (!b)
                goto fail;
            buf = b;
        }
        ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0 && have_head && to_eof)
            break;
        if (k <= 0)
            goto fail;
        len += (size_t)k;
        buf[len] = 0;
        char *end;
        while (!have_head && (end = memmem(buf, len, "\r\n\r\n", 4))) {
            hl = (size_t)(end - buf);
            if (len < 12 || strncmp(buf, "HTTP/1.", 7))
                goto fail;
            int status = atoi(buf + 9);
            if (status >= 100 && status < 200) {
                /* 100 Continue: the real response follows */
                len -= hl + 4;
                memmove(buf, end + 4, len + 1);
                continue;
            }
            have_head = 1;
            r->status = status;
            *end = 0; /* head as a string for the look-ups below */
            const char *cl = header(buf, "Content-Length:");
            const char *te = header(buf, "Transfer-Encoding:");
            chunked = te && !strncasecmp(te, "chunked", 7);
            if (no_body || status == 204 || status == 304)
                clen = 0;
            else if (cl && !chunked)
                clen = strtol(cl, NULL, 10);
            to_eof = clen < 0 && !chunked;
            r->head = strdup(buf);
            *end = '\r';
        }
    }
    size_t blen = len - hl - 4;
    if (chunked) {
        long d = dechunk(buf + hl + 4, blen, buf + hl + 4);
        blen = (size_t)d;
    } else if (clen >= 0) {
        blen = (size_t)clen;
    }
    r->len = blen;
    r->body = malloc(blen + 1);
    if (!r->head || !r->body)
        goto fail;
    memcpy(r->body, buf + hl + 4, blen);
    r->body[blen] = 0;
    free(buf);
    const char *ct = header(r->head, "Content-Type:");
    char type[128] = "";
    if (ct)
        snprintf(type, sizeof type, "%.*s", (int)strcspn(ct, "\r"), ct);
    if (strcasestr(type, "json"))
        r->json = json_loadb(r->body, r->len, 0, NULL);
    return 0;
fail:
    free(buf);
    t_resp_free(r);
    return -1;
}

int
t_read_resp(int fd, struct t_resp *r)
{
    return read_resp(fd, r, 0);
}

int
t_raw(int port, const void *req, size_t n, struct t_resp *r)
{
    char method[16] = "", target[2048] = "", line[2100];
    const char *c = req;
    size_t ll = 0;
    while (ll < n && ll < sizeof line - 1 && c[ll] != '\r' && c[ll] != '\n')
        ll++;
    memcpy(line, c, ll);
    line[ll] = 0;
    sscanf(line, "%15s %2047s", method, target);
    memset(r, 0, sizeof *r);
    int fd = t_dial(port);
    if (fd < 0)
        return -1;
    /* a server may answer and close before it has read everything (413):
     * the reply still counts */
    t_send_all(fd, req, n);
    int rc = read_resp(fd, r, !strcmp(method, "HEAD"));
    close(fd);
    t_resp_hook *hook = atomic_load(&resp_hook);
    if (rc == 0) {
        t_record(method, target, r);
        if (hook)
            hook(method, target, r);
    }
    return rc;
}

int
t_request(int port, const char *method, const char *target,
          const char *ctype, const char *body, size_t n,
          const char *headers, struct t_resp *r)
{
    size_t cap = strlen(method) + strlen(target) + 256 +
                 (ctype ? strlen(ctype) : 0) +
                 (headers ? strlen(headers) : 0) + (body ? n : 0);
    char *req = malloc(cap);
    memset(r, 0, sizeof *r);
    if (!req)
        return -1;
    int k = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n%s%s%s%s",
                     method, target, ctype ? "Content-Type: " : "",
                     ctype ? ctype : "", ctype ? "\r\n" : "",
                     headers ? headers : "");
    size_t len = (size_t)k;
    if (body)
        len += (size_t)snprintf(req + len, cap - len,
                                "Content-Length: %zu\r\n", n);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    if (body) {
        memcpy(req + len, body, n);
        len += n;
    }
    int rc = t_raw(port, req, len, r);
    free(req);
    return rc;
}

int
t_get(int port, const char *target, struct t_resp *r)
{
    return t_request(port, "GET", target, NULL, NULL, 0, NULL, r);
}

/* ------------------------------------------------------------------ JSON */

json_t *
t_json_at(json_t *v, const char *path)
{
    char key[256];
    const char *p = path;
    while (v && *p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (*p == '[') {
            char *e;
            long i = strtol(p + 1, &e, 10);
            if (*e != ']' || i < 0 || e == p + 1)
                return NULL;
            v = json_array_get(v, (size_t)i);
            p = e + 1;
            continue;
        }
        size_t n = strcspn(p, ".[");
        if (json_is_array(v)) {
            char *e;
            long i = strtol(p, &e, 10);
            if (e != p + n || i < 0 || n == 0)
                return NULL;
            v = json_array_get(v, (size_t)i);
        } else {
            if (n >= sizeof key)
                return NULL;
            memcpy(key, p, n);
            key[n] = 0;
            v = json_object_get(v, key);
        }
        p += n;
    }
    return v;
}

const char *
t_json_str(json_t *v, const char *path)
{
    const char *s = json_string_value(t_json_at(v, path));
    return s ? s : "(none)";
}

const char *
t_token_file(const char *name, const char *token, mode_t mode)
{
    static char paths[16][PATH_MAX];
    static atomic_uint next;
    char *p = paths[atomic_fetch_add(&next, 1) % 16];
    snprintf(p, PATH_MAX, "%s", t_path(name));
    t_write_file(p, token, strlen(token));
    if (chmod(p, mode) != 0)
        fail_msg("chmod %s: %s", p, strerror(errno));
    return p;
}
