/*
 * fuzz.h - what the libFuzzer targets in tests/fuzz/ share: a private
 * temporary directory (on /dev/shm when there is one, so the files a target
 * writes for every input cost no disk I/O) and a helper that writes an
 * input to a file there.
 *
 * Each fuzz_<name>.c defines LLVMFuzzerTestOneInput and is linked with
 * -fsanitize=fuzzer,address,undefined. A target checks properties the code
 * promises (a converted model verifies, tokens decode to the input) and
 * calls fuzz_fail, which aborts so libFuzzer keeps the input, when one does
 * not hold. Single-threaded, as libFuzzer runs a target.
 */
#ifndef SEMD_FUZZ_H
#define SEMD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The target's temporary directory, created on first use and removed at
 * exit. Path borrowed. */
const char *fuzz_tmpdir(void);

/* fuzz_tmpdir()/name in a static buffer (one per call site is enough: the
 * targets keep at most four paths at a time, the buffer rotates). */
const char *fuzz_path(const char *name);

/* Writes n bytes to path, replacing it; aborts when it cannot (the
 * machine, not the input, is at fault). */
void fuzz_write(const char *path, const void *data, size_t n);

/* Removes every entry of dir (not dir itself); dir need not exist. */
void fuzz_empty_dir(const char *dir);

/* Reports a broken property with the input's own words and aborts. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                    noreturn));

#endif
