/* status.c -- status codes, error sentences and the version: the bottom layer every
 * other kernel file may call, so the tokenizer and the sampler link without model.o. */
#include "sb_internal.h"
#include <stdio.h>

#define SB_VERSION "0.1.0"

int sb_fail(sb_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

const char *sb_version(void) { return SB_VERSION; }

const char *sb_status_name(int code) {
    switch (code) {
    case SB_OK: return "ok";
    case SB_ERR_IO: return "i/o error";
    case SB_ERR_FORMAT: return "unknown file format";
    case SB_ERR_TRUNCATED: return "truncated file";
    case SB_ERR_CONFIG: return "impossible model shape";
    case SB_ERR_NOMEM: return "out of memory";
    case SB_ERR_ARG: return "bad argument";
    case SB_ERR_MISMATCH: return "tokenizer does not match model";
    case SB_ERR_PROMPT: return "bad prompt";
    case SB_ERR_MODEL_CHANGED: return "the model file changed or was truncated while in use";
    default: return "unknown error";
    }
}
