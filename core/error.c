/*
 * error.c - error codes to text, and filling struct semd_err.
 * Thread-safe: no state.
 */
#include "semd.h"

#include <stdarg.h>
#include <stdio.h>

const char *
semd_strerror(int code)
{
    switch (code) {
    case SEMD_OK: return "success";
    case SEMD_EINVAL: return "invalid argument";
    case SEMD_ENOMEM: return "out of memory";
    case SEMD_ENOWORD: return "word not in vocabulary";
    case SEMD_EIO: return "input/output error";
    case SEMD_EFORMAT: return "malformed file";
    case SEMD_ECORRUPT: return "checksum mismatch";
    case SEMD_EINDEX: return "index failure";
    case SEMD_EBUSY: return "busy";
    case SEMD_ESHUTDOWN: return "shutting down";
    }
    return "unknown error";
}

int
semd_err_set(struct semd_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
