/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of model file sections.
 * Uses the SSE4.2 instruction where the processor has it.
 */
#ifndef SEMD_CRC32C_H
#define SEMD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc over n bytes; start with crc = 0. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t n);

#endif
