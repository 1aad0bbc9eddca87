/*
 * snapshot.h - save one cache to a self-describing file, inspect it, load
 * it into any store.
 *
 * File layout (little-endian; docs/snapshot-format.md has the details):
 *   header   128 bytes: "KVTSNAP\0", format version, header size, the
 *            cache configuration (model shape, cold codec settings), the
 *            block count, section count, payload and file sizes, XXH3 of
 *            the header itself
 *   sections each a 40-byte section header (type, sizes, XXH3 of the
 *            content (of a BLOCKS section: of its index, each block being
 *            covered by the XXH3 in its record), codec: none or zstd; its
 *            own checksum) and content:
 *            NAME, then BLOCKS sections of about 4 MiB (each starts with
 *            its index: one record per block (layer, index, length, codec,
 *            tokens, XXH3), then the blocks exactly as the store holds
 *            them: raw or quantized), then META sections (every
 *            metadata blob of the cache, e.g. its retrieval index, in key
 *            order, split in ~4 MiB pieces), then END (block and metadata
 *            counts, per-layer token counts). Nothing may follow END.
 * Save writes a temporary file next to PATH, fsyncs it, renames it over
 * PATH and fsyncs the directory, so a crash never leaves a partial
 * snapshot under the final name (the file is created with mode 0600).
 * Memory use is bounded by one section whatever the cache size, for
 * save, load and inspect alike, plus the largest metadata blob for save
 * and load (the blob API hands out whole blobs; at most
 * KVT_META_MAX_BYTES).
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
 * (while saving the total is an estimate and may grow). Return 0 to go
 * on, or a negative code to abort the operation with that code (a save
 * then leaves no file, a load no cache). */
typedef int (*kvt_progress_fn)(void *ctx, uint64_t done, uint64_t total);

enum kvt_snapshot_section_type {
	KVT_SNAP_NAME = 1,
	KVT_SNAP_BLOCKS = 2,
	KVT_SNAP_END = 3,
	KVT_SNAP_META = 4,
};

/* One section as read from a file (see opts.section). */
struct kvt_snapshot_section {
	uint32_t type;        /* enum kvt_snapshot_section_type */
	uint32_t codec;       /* 0: stored as is, 1: zstd */
	uint64_t offset;      /* of its section header in the file */
	uint64_t raw_bytes;   /* content bytes */
	uint64_t stored_bytes;/* content bytes in the file */
	uint64_t n_blocks;    /* BLOCKS: block records; else 0 */
};

struct kvt_snapshot_opts {
	int zstd_level;           /* save: 0 stores sections as is (default),
	                             1..22 compresses each with zstd */
	kvt_progress_fn progress; /* may be NULL */
	void *progress_ctx;
	/* inspect and load: called for every verified section; may be NULL.
	 * A nonzero return aborts with that code. */
	int (*section)(void *ctx, const struct kvt_snapshot_section *s);
	void *section_ctx;
};

struct kvt_snapshot_info {
	char name[KVT_NAME_MAX + 1];    /* the cache name stored in the file */
	struct kvt_cache_config config;
	uint32_t version;               /* format version of the file */
	uint64_t n_tokens;              /* tokens of layer 0 */
	uint64_t n_blocks;
	uint64_t n_sections;
	uint64_t payload_bytes;         /* stored block bytes */
	uint64_t n_meta;                /* metadata blobs (kvt_cache_meta_*) */
	uint64_t meta_bytes;            /* their bytes */
	uint64_t file_bytes;
};

/*
 * Saves cache `name` of st to path. The cache may be open and appended to
 * elsewhere meanwhile; the file then holds each layer as it was when the
 * save reached it (a consistent prefix per layer). Blocks on the disk tier
 * are read without being promoted to the host tier.
 * Errors: -EINVAL, KVT_ENOTFOUND, -errno from the file system (-ENOSPC,
 * -EFBIG, -EDQUOT, -EACCES...; on any error nothing is left under path
 * and no temporary file stays), KVT_ECORRUPT when a stored block fails its
 * checksum, the code a progress callback aborted with. info (may be
 * NULL) describes the file written.
 */
int kvt_snapshot_save(struct kvt_store *st, const char *name, const char *path,
		      const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info);

/*
 * Loads the snapshot at path as a new cache named as_name (NULL: the name
 * in the file). Every section is verified before its blocks are used; on
 * a disk-backed store the cache is durable when this returns. On any
 * error the store is left as it was (the blocks stream into a hidden
 * cache that is renamed only at the end, dropped on failure, and dropped
 * at the next open after a crash). info (may be NULL) describes what was
 * loaded; its version is filled on KVT_EVERSION too.
 * Errors: -EINVAL (bad as_name), KVT_EEXIST (a cache of that name
 * exists), KVT_EFORMAT (not a snapshot, truncated, trailing data, blocks
 * out of order), KVT_ECORRUPT (checksum mismatch), KVT_EVERSION,
 * KVT_ENOSPACE (the store cannot hold it), -errno.
 */
int kvt_snapshot_load(struct kvt_store *st, const char *path,
		      const char *as_name, const struct kvt_snapshot_opts *opts,
		      struct kvt_snapshot_info *info);

/* Reads and verifies a whole snapshot without a store (opts may be NULL;
 * its progress and section callbacks are used). Errors as load. */
int kvt_snapshot_inspect(const char *path, const struct kvt_snapshot_opts *opts,
			 struct kvt_snapshot_info *info);

/* Name of a section type ("name", "blocks", "meta", "end"; "?"). */
const char *kvt_snapshot_section_name(uint32_t type);

#ifdef __cplusplus
}
#endif

#endif
