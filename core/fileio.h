/*
 * fileio.h - whole-buffer positioned reads and writes, and directory
 * fsync, for the files core/ writes durably (model files, the journal).
 */
#ifndef SEMD_FILEIO_H
#define SEMD_FILEIO_H

#include <stddef.h>
#include <stdint.h>

/* Reads exactly n bytes at off: 0, or -1 with errno set (a short file
 * gives -1). Retries on EINTR. */
int fio_pread_full(int fd, void *buf, size_t n, uint64_t off);

/* Writes exactly n bytes at off: 0, or -1 with errno set. */
int fio_pwrite_full(int fd, const void *buf, size_t n, uint64_t off);

/* fsyncs the directory dir, so that a rename or create in it is durable. */
int fio_fsync_dir(const char *dir);

#endif
