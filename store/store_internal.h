/*
 * store_internal.h - the store's state, shared by its files.
 *
 * store.c    open/close/flush/stats/list, the catalog and restart
 * blocks.c   the block directory: which tier holds a block, host LRU,
 *            demotion to disk and promotion back
 * cache.c    caches: create/open/drop, append (tail block, recent window,
 *            cold re-encoding), read
 * gpu.c      the GPU tier's directory: reloaded copies, their pins, LRU
 *            and eviction, the in-flight GPU request
 * reload.c   kvt_cache_reload and the kvt_reload handle
 * append_device.c  kvt_cache_append_device (K/V on the GPU)
 *
 * Locking: one mutex per store; functions named *_locked expect it held.
 */
#ifndef KVTIER_STORE_INTERNAL_H
#define KVTIER_STORE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "hmap.h"
#include "kvtier/kvtier.h"
#include "tier.h"

#define KVT_NIL UINT32_MAX

struct kvt_gpu_batch;

enum {
	BLOCK_ON_GPU = 1u << KVT_TIER_GPU,  /* a decoded raw copy on the GPU */
	BLOCK_IN_HOST = 1u << KVT_TIER_HOST,
	BLOCK_ON_DISK = 1u << KVT_TIER_DISK,
};

struct block_rec {
	struct kvt_block_key key;
	struct kvt_block_meta meta;
	uint8_t where;  /* BLOCK_* bits */
	uint8_t dirty;  /* the host copy is newer than the disk (or none) */
	uint8_t used;
	uint32_t lru_prev, lru_next; /* host LRU, most recent at head */
	/* host_pins: GPU request items reading the host copy (never demoted
	 * or overwritten while > 0). gpu_pins: unreleased reloads using the
	 * GPU copy (never evicted while > 0); gpu_gen tells that copy from
	 * a later one of the same key. */
	uint16_t host_pins;
	uint8_t gpu_window; /* one of gpu_pins is the recent window's */
	uint32_t gpu_pins, gpu_gen;
	uint32_t gpu_prev, gpu_next; /* GPU LRU, most recent at head */
};

/* A GPU copy still pinned by a reload after its block was replaced or
 * deleted: it stays in the GPU tier until the last pin goes. */
struct gpu_orphan {
	struct kvt_block_key key;
	uint32_t gen, pins;
};

struct layer_state {
	uint64_t n_tokens;
	uint64_t n_cold;      /* leading blocks stored with the cold codec */
	uint8_t *tail;        /* raw block holding the partial last block */
	uint32_t tail_tokens; /* valid tokens in tail (< block_tokens) */
	/* ZipCache cold codec: saliency of tokens [scores_first, n_tokens)
	 * (NaN: none given) while their blocks are raw; n_scores 0: none. */
	float *scores;
	uint64_t scores_first;
	uint32_t n_scores, cap_scores;
	uint64_t win_first;   /* blocks below it have left the recent window */
};

struct meta_rec;

struct cache_rec {
	char name[KVT_NAME_MAX + 1];
	uint64_t id;
	struct kvt_cache_config cfg;
	struct layer_state *layers;
	uint64_t n_blocks, raw_bytes, stored_bytes;
	struct meta_rec *meta; /* metadata blobs, sorted by key (meta.c) */
	int handles;
	int dropped; /* removed from the store, freed with the last handle */
	struct cache_rec *next;
};

struct kvt_store {
	pthread_mutex_t lock;
	struct kvt_store_config cfg;
	char *data_dir;
	int lock_fd;    /* flock on data_dir/lock, or -1 */
	struct kvt_tier *tier[KVT_TIER_COUNT]; /* NULL when absent */
	struct cache_rec *caches;
	uint64_t next_id;
	/* block directory */
	struct block_rec *blocks;
	size_t n_recs, cap_recs;
	uint32_t *free_recs;
	size_t n_free_recs;
	struct kvt_hmap dir;
	uint32_t lru_head, lru_tail;
	uint64_t raw_bytes, stored_bytes;
	uint64_t demotions, promotions;
	/* GPU directory (gpu.c) */
	uint32_t gpu_head, gpu_tail;
	uint32_t gpu_gen;
	struct gpu_orphan *gpu_orphans;
	size_t n_gpu_orphans, cap_gpu_orphans;
	struct kvt_reload *gpu_inflight; /* whose GPU request is pending */
	/* host memory of the last released reload, kept for the next one
	 * (fresh pages cost more to fault in than the decode itself) */
	uint8_t *reload_spare;
	size_t reload_spare_len;
	/* kvt_cache_append_device's gather tables (window blocks, twins and
	 * tails; spill chunks) and pinned staging, kept between calls */
	struct kvt_gpu_batch *dev_batch, *dev_chunk;
	uint32_t dev_batch_cap, dev_chunk_cap;
	uint8_t *dev_stage;
	size_t dev_stage_len;
	/* catalog names of metadata without a cache, found at open */
	char **meta_orphans;
	size_t n_meta_orphans;
};

struct kvt_cache {
	struct kvt_store *st;
	struct cache_rec *rec;
};

/* One block of a reload (reload.c). */
struct reload_item {
	struct kvt_block_key key;
	uint32_t gen;  /* generation of the GPU copy it pins; 0: none */
	int32_t gpu;   /* its index in the GPU request; -1: not in it */
};

struct kvt_reload {
	struct kvt_store *st;
	struct cache_rec *c;
	size_t n;
	struct reload_item *items;
	struct kvt_reload_block *out;
	uint8_t *host;       /* blocks decoded on the host path */
	size_t host_len;     /* bytes of host */
	uint32_t n_gpu;      /* items of the GPU request */
	uint32_t *gpu_item;  /* GPU request index -> item */
	int *gpu_res;        /* the GPU request's per-item results */
	int pending;         /* the GPU request is in flight */
	int status;          /* first per-block failure, 0 */
};

/* ---- blocks.c */

/* Stores a block (replacing any previous version) on the fastest tier
 * with room, demoting least recently used host blocks to disk if needed.
 * Errors: KVT_ENOSPACE when no tier can take it, -errno. */
int kvt_block_put_locked(struct kvt_store *st, const struct kvt_block_key *key,
			 const void *data, const struct kvt_block_meta *meta);

/* Reads a block (cap bytes at dst) and its meta; promotes disk blocks to
 * the host tier when there is room. KVT_ENOTFOUND, KVT_ECORRUPT, -ENOBUFS. */
int kvt_block_get_locked(struct kvt_store *st, const struct kvt_block_key *key,
			 void *dst, size_t cap, struct kvt_block_meta *meta);

/* Reads up to KVT_PEEK_BATCH blocks, each into dsts[i] (cap bytes),
 * without promotion or LRU update (bulk readers such as snapshot save,
 * which must not evict the working set): host copies directly, the
 * disk-only ones in one batched read. Returns 0 or the first failure
 * (KVT_ENOTFOUND, KVT_ECORRUPT, -ENOBUFS, -EIO). */
#define KVT_PEEK_BATCH 64
int kvt_block_peek_many_locked(struct kvt_store *st, size_t n,
			       const struct kvt_block_key *keys,
			       void *const *dsts, size_t cap);

/* Meta of a stored block, or KVT_ENOTFOUND. */
int kvt_block_stat_locked(struct kvt_store *st, const struct kvt_block_key *key,
			  struct kvt_block_meta *meta);

/* Removes a block from every tier. KVT_ENOTFOUND when absent. */
int kvt_block_del_locked(struct kvt_store *st, const struct kvt_block_key *key);

/* Registers a block found on a persistent tier at open. */
int kvt_block_adopt_locked(struct kvt_store *st, const struct kvt_block_key *key,
			   const struct kvt_block_meta *meta, unsigned where);

/* Writes every dirty host block to the disk tier (no-op without one). */
int kvt_blocks_flush_locked(struct kvt_store *st);

/* Releases the directory. */
void kvt_blocks_free(struct kvt_store *st);

/* Makes the blocks keys[0..n) resident on the host tier when it has room:
 * those only on disk are read in batches (one batched read each) and
 * promoted. where[i] (may be NULL) gets the tier holding block i then.
 * KVT_ENOTFOUND (an unknown key; nothing read), KVT_ECORRUPT, -EIO, -ENOMEM. */
int kvt_blocks_prefetch_locked(struct kvt_store *st,
			       const struct kvt_block_key *keys, size_t n,
			       uint8_t *where);

/* Where a host-resident block's bytes live (for zero-copy sharing).
 * -ENOTSUP when the block is not on an addressable tier. */
int kvt_block_locate_locked(struct kvt_store *st,
			    const struct kvt_block_key *key,
			    struct kvt_block_loc *loc,
			    struct kvt_block_meta *meta);

/* The record of key (its index in *idx, may be NULL), or NULL. */
struct block_rec *kvt_block_rec_locked(struct kvt_store *st,
				       const struct kvt_block_key *key,
				       uint32_t *idx);

/* ---- gpu.c */

/* Completes the pending GPU request, if any: per-item results into its
 * reload, host pins dropped, failed copies forgotten. Call before any
 * operation on the GPU tier and before a host-pinned block changes. */
void kvt_gpu_settle_locked(struct kvt_store *st);

/* The GPU copy of record i is out of date (block replaced or deleted):
 * dropped, or kept as an orphan while a reload pins it. */
void kvt_gpu_forget_locked(struct kvt_store *st, uint32_t i);

/* Record i got a fresh GPU copy, pinned once. Returns its generation. */
uint32_t kvt_gpu_adopt_locked(struct kvt_store *st, uint32_t i);

/* Pins record i's current GPU copy once more (most recently used). */
void kvt_gpu_pin_locked(struct kvt_store *st, uint32_t i);

/* Drops one pin of the GPU copy (key, gen), wherever it is now. */
void kvt_gpu_unpin_locked(struct kvt_store *st, const struct kvt_block_key *key,
			  uint32_t gen);

/* Evicts unpinned GPU copies, oldest first, until `need` more bytes fit
 * in the GPU tier's budget. KVT_ENOSPACE when they cannot. */
int kvt_gpu_make_room_locked(struct kvt_store *st, uint64_t need);

/* Evicts the oldest unpinned GPU copy. KVT_ENOSPACE when none. */
int kvt_gpu_evict_one_locked(struct kvt_store *st);

/* A new full raw block of a cache's recent window (data: its bytes):
 * copied to the GPU tier too, pinned by the window, when gpu_recent is on
 * and evicting unpinned copies makes room; otherwise nothing happens. */
void kvt_gpu_window_add_locked(struct kvt_store *st,
			       const struct kvt_block_key *key, const void *data,
			       const struct kvt_block_meta *meta);

/* The block left the recent window: its GPU copy, if any, loses the
 * window's pin (and may be evicted like a reloaded one). */
void kvt_gpu_window_leave_locked(struct kvt_store *st,
				 const struct kvt_block_key *key);

/* Releases the GPU directory's own allocations. */
void kvt_gpu_dir_free(struct kvt_store *st);

/* Frees the spare host buffer kept between reloads (reload.c). */
void kvt_reload_spare_free(struct kvt_store *st);

/* ---- store.c */

struct cache_rec *kvt_store_find_locked(struct kvt_store *st, const char *name);
struct cache_rec *kvt_store_find_id_locked(struct kvt_store *st, uint64_t id);

/* The 64-byte catalog record of a cache (id + configuration). decode:
 * KVT_ECORRUPT, KVT_EVERSION. */
void kvt_catalog_encode(const struct cache_rec *c, uint8_t *out);
int kvt_catalog_decode(const uint8_t *s, size_t len, struct cache_rec *c);

/* Persists a cache's description (no-op without a disk tier). */
int kvt_catalog_put_locked(struct kvt_store *st, const struct cache_rec *c);
int kvt_catalog_del_locked(struct kvt_store *st, const char *name);

/* ---- cache.c */

/* Allocates the per-layer state of a cache record. -ENOMEM. */
int kvt_cache_rec_init(struct cache_rec *c);
void kvt_cache_rec_free(struct cache_rec *c);

/* Writes the partial tail blocks of c to the store (for durability). */
int kvt_cache_flush_tails_locked(struct kvt_store *st, struct cache_rec *c);

/* Rebuilds token counts and tails of c from its stored blocks (restart). */
int kvt_cache_recover_locked(struct kvt_store *st, struct cache_rec *c);

/* The pieces of kvt_cache_append that append_device.c reuses: a full
 * or flushed raw block stored (window: it stays in the recent window, so
 * it gets a GPU copy), tokens copied into a tail, the rollback of a failed
 * append to `saved`, the ZipCache scores of n tokens (NULL: none), and the
 * work after a successful append (cold re-encoding, window trim). */
int kvt_cache_put_raw_locked(struct kvt_store *st, struct cache_rec *c,
			     uint32_t layer, uint64_t block, const void *raw,
			     uint32_t n_tokens, int window);
void kvt_cache_tail_copy(const struct kvt_shape *s, uint8_t *tail, uint32_t at,
			 const uint8_t *k, const uint8_t *v, uint32_t total,
			 uint32_t from, uint32_t n);
void kvt_cache_rollback_locked(struct kvt_store *st, struct cache_rec *c,
			       uint32_t layer, uint64_t first_new, uint64_t end,
			       const struct layer_state *saved,
			       const uint8_t *saved_tail);
int kvt_cache_scores_push(const struct cache_rec *c, struct layer_state *ls,
			  uint32_t n, const float *scores);
void kvt_cache_appended_locked(struct kvt_store *st, struct cache_rec *c,
			       uint32_t layer);

/* ---- append_device.c */

/* Frees the staging kept between kvt_cache_append_device calls. */
void kvt_append_device_free(struct kvt_store *st);

/* ---- meta.c */

/* Frees the in-memory metadata of c. */
void kvt_meta_free_all(struct cache_rec *c);
/* Restart: takes the catalog record `name` ("<cache>/<key>") as metadata
 * of its cache, or remembers it for deletion when there is no such cache. */
int kvt_meta_adopt_locked(struct kvt_store *st, const char *name,
			  const void *rec, size_t len);
/* Deletes the catalog records remembered by kvt_meta_adopt_locked. */
int kvt_meta_reclaim_locked(struct kvt_store *st);
/* Deletes the persisted metadata of c (its cache record is already gone). */
int kvt_meta_drop_locked(struct kvt_store *st, struct cache_rec *c);
/* Moves c's persisted metadata from old_name to c->name. */
int kvt_meta_rename_locked(struct kvt_store *st, struct cache_rec *c,
			   const char *old_name);

/* kvt_cache_create for internal names (a leading '.', which the public
 * call refuses). */
int kvt_cache_create_hidden(struct kvt_store *st, const char *name,
			    const struct kvt_cache_config *cfg,
			    struct kvt_cache **out);

/* Renames a cache (public name rules). KVT_EEXIST, -EINVAL. */
int kvt_cache_rename_locked(struct kvt_store *st, struct cache_rec *c,
			    const char *name);

/* Block b of a layer as a raw block into raw (scratch: kvt_block_bytes()
 * bytes of room), the partial tail from memory; checksum verified,
 * decoded. KVT_ECORRUPT, -EIO, -ENOBUFS. */
int kvt_cache_fetch_raw_locked(struct kvt_store *st, struct cache_rec *c,
			       uint32_t layer, uint64_t b, uint8_t *raw,
			       uint8_t *scratch, uint32_t *n_tokens);

/* Checks a cache configuration (shape, codec against the block shape). */
int kvt_cache_config_check(const struct kvt_cache_config *cfg);

/* The cold codec's parameters as applied to one block. */
void kvt_cache_block_codec(const struct kvt_cache_config *cfg,
			   struct kvt_codec_params *p);

#endif
