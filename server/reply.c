/*
 * reply.c - every response body: the success envelope
 * {"result":..., "time_ms":..., "version":...} and the error body
 * {"error":{"code","message",...}}, built in one place from one table of
 * error codes and statuses (the shapes openapi.yaml defines). Internal
 * errors (500) carry a generic message and the request id; the detail
 * goes to the log under that id. 503 (not ready, shutting down) is a
 * state, not a fault: its message stays.
 *
 * Pure functions of their arguments: called from any thread.
 */
#include "serve.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *code;
    int status;
} errors[ERR_COUNT] = {
    [ERR_BAD_REQUEST] = {"bad_request", 400},
    [ERR_INVALID_JSON] = {"invalid_json", 400},
    [ERR_UNKNOWN_WORD] = {"unknown_word", 404},
    [ERR_NOT_FOUND] = {"not_found", 404},
    [ERR_METHOD] = {"method_not_allowed", 405},
    [ERR_TOO_LARGE] = {"payload_too_large", 413},
    [ERR_MEDIA_TYPE] = {"unsupported_media_type", 415},
    [ERR_UNAUTHORIZED] = {"unauthorized", 401},
    [ERR_FORBIDDEN] = {"forbidden", 403},
    [ERR_NOT_READY] = {"not_ready", 503},
    [ERR_OVERLOADED] = {"overloaded", 429},
    [ERR_SHUTTING_DOWN] = {"shutting_down", 503},
    [ERR_INTERNAL] = {"internal", 500},
    [ERR_URI_TOO_LONG] = {"uri_too_long", 414},
    [ERR_HEADERS_TOO_LARGE] = {"headers_too_large", 431},
    [ERR_BUSY] = {"too_many_connections", 503},
    [ERR_NOT_SUPPORTED] = {"not_supported", 409},
};

int
reply_status(enum api_error e)
{
    return errors[e].status;
}

const char *
reply_code(enum api_error e)
{
    return errors[e].code;
}

void
reply_ok(struct api_reply *rp, int status, json_t *result)
{
    json_decref(rp->result);
    json_decref(rp->error);
    rp->error = NULL;
    rp->status = status;
    rp->result = result ? result : json_null();
}

/* Messages quote what the client sent, which need not be UTF-8 (or was cut
 * in the middle of a character); JSON must be UTF-8, so every byte that
 * does not begin a valid sequence becomes '?'. */
static void
utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = 0, k = 1;
        uint32_t cp = 0, min = 0;
        if (*p < 0x80) {
            p++;
            continue;
        }
        if ((*p & 0xE0) == 0xC0) {
            n = 1, cp = *p & 0x1F, min = 0x80;
        } else if ((*p & 0xF0) == 0xE0) {
            n = 2, cp = *p & 0x0F, min = 0x800;
        } else if ((*p & 0xF8) == 0xF0) {
            n = 3, cp = *p & 0x07, min = 0x10000;
        }
        for (; n && k <= n && (p[k] & 0xC0) == 0x80; k++)
            cp = (cp << 6) | (p[k] & 0x3F);
        if (n == 0 || k != n + 1 || cp < min || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            *p++ = '?';
            continue;
        }
        p += n + 1;
    }
}

void
reply_error(struct api_reply *rp, enum api_error e, json_t *words,
            const char *fmt, ...)
{
    char msg[SEMD_ERR_MSG + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_scrub(msg);
    json_decref(rp->result);
    json_decref(rp->error);
    rp->result = NULL;
    rp->status = errors[e].status;
    rp->error = json_pack("{s:s, s:s}", "code", errors[e].code, "message",
                          msg);
    if (rp->error && words)
        json_object_set_new(rp->error, "words", words);
    else
        json_decref(words);
}

void
reply_semd(struct api_reply *rp, int code, const struct semd_err *err,
           json_t *words)
{
    const char *msg = err && err->msg[0] ? err->msg : semd_strerror(code);
    switch (code) {
    case SEMD_EINVAL:
        reply_error(rp, ERR_BAD_REQUEST, words, "%s", msg);
        break;
    case SEMD_ENOWORD:
        reply_error(rp, ERR_UNKNOWN_WORD, words, "%s", msg);
        break;
    case SEMD_EBUSY:
        reply_error(rp, ERR_OVERLOADED, words, "%s", msg);
        break;
    case SEMD_ESHUTDOWN:
        reply_error(rp, ERR_SHUTTING_DOWN, words, "%s", msg);
        break;
    default:
        reply_error(rp, ERR_INTERNAL, words, "%s (%s)", msg,
                    semd_strerror(code));
        break;
    }
}

char *
reply_body(struct api_reply *rp, const char *request_id, double time_ms,
           uint64_t version, size_t *len, const char **content_type)
{
    if (rp->text) {
        char *t = rp->text;
        *len = rp->text_len;
        *content_type = rp->content_type ? rp->content_type : "text/plain";
        rp->text = NULL;
        return t;
    }
    json_t *o;
    if (rp->error || !(rp->result || rp->result_text)) {
        if (!rp->error)
            reply_error(rp, ERR_INTERNAL, NULL, "handler gave no reply");
        if (rp->status == 500) {
            /* the detail was logged by the caller with this id */
            json_object_set_new(rp->error, "message",
                                json_sprintf("internal error; see the "
                                             "server log for request %s",
                                             request_id));
        }
        json_object_set_new(rp->error, "request_id", json_string(request_id));
        o = json_pack("{s:O}", "error", rp->error);
    } else if (rp->result_text) {
        /* the same envelope, around a result serialised before */
        double t = (double)(long long)(time_ms * 1000.0) / 1000.0;
        char tail[96], num[40];
        snprintf(num, sizeof num, "%.9g", t);
        if (!strpbrk(num, ".eEn"))
            strcat(num, ".0");
        int tn = version ? snprintf(tail, sizeof tail,
                                    ",\"time_ms\":%s,\"version\":%llu}", num,
                                    (unsigned long long)version)
                         : snprintf(tail, sizeof tail,
                                    ",\"time_ms\":%s,\"version\":null}",
                                    num);
        size_t n = 10 + rp->result_len + (size_t)tn;
        char *s = malloc(n + 1);
        if (!s)
            return NULL;
        memcpy(s, "{\"result\":", 10);
        memcpy(s + 10, rp->result_text, rp->result_len);
        memcpy(s + 10 + rp->result_len, tail, (size_t)tn + 1);
        *len = n;
        *content_type = "application/json";
        return s;
    } else {
        o = json_pack("{s:O, s:f}", "result", rp->result, "time_ms",
                      (double)(long long)(time_ms * 1000.0) / 1000.0);
        if (o)
            json_object_set_new(o, "version",
                                version ? json_integer((json_int_t)version)
                                        : json_null());
    }
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                               JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!s)
        return NULL;
    *len = strlen(s);
    *content_type = "application/json";
    return s;
}

void
reply_release(struct api_reply *rp)
{
    json_decref(rp->result);
    json_decref(rp->error);
    free(rp->text);
    free(rp->result_text);
    memset(rp, 0, sizeof *rp);
}
