/*
 * fuzz_convert.c - one converter's reader (`semd convert --from ...`) on
 * any bytes, through the reader's own entry point writing a real model
 * file. Built once per format with FUZZ_FORMAT set to wink, w2vtext,
 * w2vbin, glove, fasttext or safetensors.
 *
 * safetensors needs a vocabulary beside the tensor file, so its input is
 * split: a little-endian u16 n, n bytes of vocabulary (tokenizer.json,
 * vocab.json or one token per line), then the safetensors file.
 *
 * Properties: a conversion either fails with a message, leaving no output
 * file, or writes a model that opens and verifies.
 */
#include "fuzz.h"

#include "convert.h"
#include "semd.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FUZZ_FORMAT
#error "FUZZ_FORMAT names the reader: wink, w2vtext, w2vbin, glove, ..."
#endif

static int
run(const struct conv_opts *o, struct semd_err *err)
{
    static const char *const fmt = FUZZ_FORMAT;
    if (!strcmp(fmt, "safetensors"))
        return fmt_safetensors_convert(o, err);
    struct src s;
    int rc = src_open(&s, o->in, err);
    if (rc != 0)
        return rc;
    if (!strcmp(fmt, "wink"))
        rc = fmt_wink_convert(&s, o, err);
    else if (!strcmp(fmt, "w2vbin"))
        rc = fmt_w2vbin_convert(&s, o, err);
    else if (!strcmp(fmt, "glove"))
        rc = fmt_text_convert(&s, o, TEXT_NO_HEADER, "glove-text", err);
    else if (!strcmp(fmt, "fasttext"))
        rc = fmt_text_convert(&s, o, TEXT_HEADER, "fasttext-vec", err);
    else
        rc = fmt_text_convert(&s, o, TEXT_HEADER, "word2vec-text", err);
    src_close(&s);
    return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conv_opts o = {0};
    o.in = fuzz_path("input");
    o.out = fuzz_path("out.semd");
    if (!strcmp(FUZZ_FORMAT, "safetensors")) {
        if (size < 2)
            return 0;
        size_t n = (size_t)data[0] | (size_t)data[1] << 8;
        if (n > size - 2)
            n = size - 2;
        o.vocab = fuzz_path("vocab");
        fuzz_write(o.vocab, data + 2, n);
        data += 2 + n;
        size -= 2 + n;
    }
    fuzz_write(o.in, data, size);
    unlink(o.out);

    struct semd_err err = {0};
    int rc = run(&o, &err);
    struct stat st;
    if (rc != 0) {
        if (rc >= 0 || !err.msg[0])
            fuzz_fail("convert failed with %d and message '%s'", rc,
                      err.msg);
        if (stat(o.out, &st) == 0)
            fuzz_fail("a failed conversion left %s behind", o.out);
        return 0;
    }
    struct semd_model *m;
    if (semd_model_open(&m, o.out, &err) != 0)
        fuzz_fail("converted model does not open: %s", err.msg);
    if (semd_model_verify(m, &err) != 0)
        fuzz_fail("converted model does not verify: %s", err.msg);
    semd_model_close(m);
    return 0;
}
