/*
 * config.h - kvtierd settings from a config file and command-line flags.
 *
 * The config file holds `key = value` lines; '#' starts a comment. Every
 * key is also a flag (`--key value` or `--key=value`, '_' or '-' alike);
 * flags win over the file. Keys: socket, data_dir, host_bytes, gpu_bytes,
 * disk_bytes, zstd_level, log_level, allow_uid, allow_gid (repeatable),
 * max_clients, max_frame, max_inline, max_open_caches, max_inflight,
 * frame_timeout_ms.
 * Byte sizes take a K, M, G or T suffix (powers of 1024).
 */
#ifndef KVTIER_DAEMON_CONFIG_H
#define KVTIER_DAEMON_CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "log.h"
#include "server.h"
#include "wire.h"

struct kvtd_options {
	char socket[108];
	char data_dir[PATH_MAX];
	struct kvt_store_config store;
	struct kvt_server_config server;
	struct kvt_log log;
	int foreground;
};

/* Defaults: the default socket path, memory-only store, info logging. */
void kvtd_options_init(struct kvtd_options *o);

/* Sets one key. Returns 0, -EINVAL (bad value) or -ENOENT (unknown key). */
int kvtd_options_set(struct kvtd_options *o, const char *key, const char *value);

/* Applies a config file; on error *line gets the failing line number
 * (0 when the file could not be read). Returns 0 or the error of
 * kvtd_options_set / -errno. */
int kvtd_options_load(struct kvtd_options *o, const char *path, int *line);

/* Parses "123", "64K", "1G" ... into *out. Returns 0 or -EINVAL. */
int kvtd_parse_bytes(const char *s, uint64_t *out);

#endif
