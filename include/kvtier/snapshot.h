/*
 * snapshot.h - save one cache to a self-describing file, inspect it, load
 * it into any store.
 *
 * File layout (little-endian; docs/snapshot-format.md has the details):
 *   header   "KVTSNAP\0", version, the cache configuration, XXH3 of itself
 *   sections each: a 40-byte section header (type, sizes, XXH3 of the
 *            uncompressed content, zstd or not) and its content:
 *            NAME, then BLOCKS sections of about 4 MiB (stored blocks
 *            exactly as the store holds them: raw or quantized), then END
 *            (block count, per-layer token counts). Nothing may follow END.
 * Save writes PATH.tmp, fsyncs it and renames it over PATH, so a crash
 * never leaves a partial snapshot under the final name. Memory use is
 * bounded by one section whatever the cache size.
 */
#ifndef KVTIER_SNAPSHOT_H
#define KVTIER_SNAPSHOT_H

#include <stdint.h>

#include "kvtier/kvtier.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KVT_SNAPSHOT_VERSION 1

/* Called after each section with the bytes done and the total expected
 * (the total is an estimate while saving). */
typedef void (*kvt_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct kvt_snapshot_opts {
	int zstd_level;           /* 0: sections stored as is (default) */
	kvt_progress_fn progress; /* may be NULL */
	void *progress_ctx;
};

struct kvt_snapshot_info {
	char name[KVT_NAME_MAX + 1];    /* the cache name stored in the file */
	struct kvt_cache_config config;
	uint32_t version;
	uint64_t n_tokens;              /* tokens of layer 0 */
	uint64_t n_blocks;
	uint64_t n_sections;
	uint64_t payload_bytes;         /* stored block bytes */
	uint64_t file_bytes;
};

/*
 * Saves cache `name` of st to path. The cache may be open elsewhere;
 * tokens appended while the save runs may or may not be included.
 * Errors: KVT_ENOTFOUND, -errno from the file system (-ENOSPC: nothing
 * is left under path), KVT_ECORRUPT when a stored block fails its checksum.
 */
int kvt_snapshot_save(struct kvt_store *st, const char *name, const char *path,
		      const struct kvt_snapshot_opts *opts);

/*
 * Loads the snapshot at path as a new cache named as_name (NULL: the name
 * in the file). Every section is verified; on any error the store is left
 * as it was. info (may be NULL) describes what was loaded.
 * Errors: KVT_EEXIST (a cache of that name exists), KVT_EFORMAT (not a
 * snapshot, truncated, trailing data), KVT_ECORRUPT (checksum mismatch),
 * KVT_EVERSION, KVT_ENOSPACE, -errno.
 */
int kvt_snapshot_load(struct kvt_store *st, const char *path,
		      const char *as_name, const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info);

/* Reads and verifies a whole snapshot without a store. Errors as load. */
int kvt_snapshot_inspect(const char *path, struct kvt_snapshot_info *info);

#ifdef __cplusplus
}
#endif

#endif
