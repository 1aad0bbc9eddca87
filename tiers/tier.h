/*
 * tier.h - the contract every storage tier implements (gpu, host, disk).
 *
 * A tier is a table of operations plus its own state: implementations embed
 * struct kvt_tier as their first member. Tiers store opaque byte strings
 * (encoded blocks) under a block key; they know nothing of codecs. The store
 * (store/) composes tiers and decides what lives where.
 *
 * Keyed operations, rather than raw slot alloc/write, let each tier keep its
 * own index (a hash for memory tiers, LMDB for disk) and let a persistent
 * tier rebuild the store's directory after a restart (iter + catalog).
 *
 * Thread safety: a tier is NOT thread-safe; the store calls it under its
 * lock. All ops return 0 or a negative code (see kvtier.h).
 */
#ifndef KVTIER_TIERS_TIER_H
#define KVTIER_TIERS_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kvt_block_key {
	uint64_t cache_id;
	uint32_t layer;
	uint32_t block;
};

/* What a tier records next to each stored byte string. */
struct kvt_block_meta {
	uint32_t len;       /* bytes stored (the encoded block) */
	uint32_t raw_len;   /* bytes of the block raw, for statistics */
	uint8_t codec;      /* enum kvt_codec_id of the payload */
	uint8_t flags;      /* store-defined */
	uint16_t n_tokens;  /* valid tokens in the block */
	uint32_t reserved;
	uint64_t checksum;  /* XXH3-64 of the len stored bytes */
};

/* Where a block lives in an addressable tier (host memfd arena, GPU pool). */
struct kvt_block_loc {
	void *ptr;        /* address in this process; valid until the block is
	                     deleted or replaced */
	int fd;           /* memfd of the arena holding it, or -1 */
	uint64_t offset;  /* offset of ptr in that fd's mapping */
	uint32_t len;
};

struct kvt_tier;

typedef int (*kvt_tier_iter_fn)(void *ctx, const struct kvt_block_key *key,
				const struct kvt_block_meta *meta);
typedef int (*kvt_catalog_iter_fn)(void *ctx, const char *name,
				   const void *rec, size_t len);

struct kvt_tier_ops {
	const char *name;

	/* Stores len bytes under key, replacing any previous value. meta->len
	 * must equal len. The tier copies data. Errors: KVT_ENOSPACE (budget
	 * or device full; the tier is unchanged), -ENOSPC, -EIO, -ENOMEM. */
	int (*put)(struct kvt_tier *t, const struct kvt_block_key *key,
		   const void *data, const struct kvt_block_meta *meta);

	/* Copies the value of key into dst (cap bytes) and its meta into
	 * *meta (may be NULL). Verifies the checksum when the tier can be
	 * corrupted underneath (disk). Errors: KVT_ENOTFOUND, -ENOBUFS,
	 * KVT_ECORRUPT, -EIO. */
	int (*get)(struct kvt_tier *t, const struct kvt_block_key *key,
		   void *dst, size_t cap, struct kvt_block_meta *meta);

	/* Batched get: results[i] gets the status of item i; returns 0 when
	 * all succeeded, else the first failure. May be NULL: the store then
	 * loops over get. */
	int (*get_many)(struct kvt_tier *t, size_t n,
			const struct kvt_block_key *keys, void *const *dsts,
			const size_t *caps, int *results);

	/* Batched put: one write for many blocks where the tier can (disk).
	 * results[i] gets item i's status; returns 0 when all succeeded, else
	 * the first failure (items before it may be stored). May be NULL: the
	 * store then loops over put. */
	int (*put_many)(struct kvt_tier *t, size_t n,
			const struct kvt_block_key *keys, const void *const *datas,
			const struct kvt_block_meta *metas, int *results);

	/* Metadata of key without reading the data. KVT_ENOTFOUND. */
	int (*stat)(struct kvt_tier *t, const struct kvt_block_key *key,
		    struct kvt_block_meta *meta);

	/* Removes key. KVT_ENOTFOUND when absent. */
	int (*del)(struct kvt_tier *t, const struct kvt_block_key *key);

	/* Calls fn for every stored block (order unspecified); a non-zero
	 * return from fn stops the walk and is returned. fn must not modify
	 * the tier. */
	int (*iter)(struct kvt_tier *t, kvt_tier_iter_fn fn, void *ctx);

	/* Capacity and use. */
	int (*usage)(struct kvt_tier *t, struct kvt_tier_usage *out);

	/* Optional (NULL when not addressable): where key's bytes live. */
	int (*locate)(struct kvt_tier *t, const struct kvt_block_key *key,
		      struct kvt_block_loc *loc);

	/* Optional: make every completed put durable. */
	int (*sync)(struct kvt_tier *t);

	/* Optional, persistent tiers only: a small catalog of named records
	 * (the store keeps cache descriptions there). */
	int (*catalog_put)(struct kvt_tier *t, const char *name,
			   const void *rec, size_t len);
	int (*catalog_del)(struct kvt_tier *t, const char *name);
	int (*catalog_iter)(struct kvt_tier *t, kvt_catalog_iter_fn fn,
			    void *ctx);

	/* Releases the tier and everything it holds in memory (persistent
	 * data stays). NULL-safe via kvt_tier_destroy. */
	void (*destroy)(struct kvt_tier *t);
};

struct kvt_tier {
	const struct kvt_tier_ops *ops;
	enum kvt_tier_kind kind;
};

static inline void kvt_tier_destroy(struct kvt_tier *t)
{
	if (t)
		t->ops->destroy(t);
}

/* ---- constructors (each in its own file under tiers/) */

/* Host tier: fixed-size slots carved from memfd-backed arenas (shareable
 * with other processes), pinned with cudaHostRegister when CUDA is present,
 * else mlock is attempted. budget = 0 means unlimited. */
int kvt_host_tier_create(uint64_t budget, struct kvt_tier **out);

/* Disk tier in directory dir (created if missing): LMDB index + io_uring
 * segment files. zstd_level 0 stores payloads as given. budget 0: no limit
 * beyond the file system. Errors: -errno, KVT_ECORRUPT, KVT_EVERSION. */
int kvt_disk_tier_create(const char *dir, uint64_t budget, int zstd_level,
			 struct kvt_tier **out);

/* GPU tier: one cudaMalloc'd pool of budget bytes (0: 256 MiB). locate()
 * gives device addresses (fd -1). Batched asynchronous reload: gpu_tier.h.
 * KVT_ENOGPU without CUDA or device, -ENOMEM when the device is full. */
int kvt_gpu_tier_create(uint64_t budget, struct kvt_tier **out);

#ifdef __cplusplus
}
#endif

#endif /* KVTIER_TIERS_TIER_H */
