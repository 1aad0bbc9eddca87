/* cli_util.h - small helpers shared by the kvtier subcommands. */
#ifndef KVTIER_CLI_UTIL_H
#define KVTIER_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole file into a malloc'd buffer. Returns 0 or -errno. */
int kvt_cli_read_file(const char *path, void **data, size_t *len);

/* Writes len bytes to path.tmp and renames it over path. 0 or -errno. */
int kvt_cli_write_file(const char *path, const void *data, size_t len);

/* Parses a size like 64M, 2G, 4096 into bytes. 0 or -EINVAL. */
int kvt_cli_parse_size(const char *s, uint64_t *out);

/* Seconds on CLOCK_MONOTONIC (for timings the commands print). */
double kvt_cli_now(void);

/* Formats bytes as "12.3 MiB" into buf. Returns buf. */
const char *kvt_cli_fmt_bytes(uint64_t n, char *buf, size_t cap);

#endif
