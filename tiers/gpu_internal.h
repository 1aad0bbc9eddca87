/* gpu_internal.h - state of the GPU tier shared by gpu_cuda.c and gpu_reload.c. */
#ifndef KVTIER_TIERS_GPU_INTERNAL_H
#define KVTIER_TIERS_GPU_INTERNAL_H

#include "hmap.h"
#include "gpu_tier.h"

#define KVT_GPU_ALIGN 256u
#define KVT_GPU_DEFAULT_POOL (256ull << 20)

struct gpu_free_list {
	uint64_t size; /* rounded extent size */
	uint64_t *off;
	size_t n, cap;
};

struct gpu_entry {
	struct kvt_block_key key;
	struct kvt_block_meta meta;
	uint64_t off, size; /* extent in the pool, rounded size */
	int used;
};

#define GPU_N_CODECS 3 /* batches indexed by enum kvt_codec_id: raw, KIVI, ZipCache */

struct gpu_reload {
	int pending;
	uint32_t n;
	struct kvt_block_key *keys;   /* n, owned */
	uint8_t *codec_of;            /* item -> its codec */
	uint32_t *pos;                /* item -> its index in batch[codec] */
	struct kvt_gpu_batch *batch[GPU_N_CODECS];
	uint32_t cap;                 /* capacity of the batches */
	struct kvt_gpu_event *done;
	struct kvt_gpu_batch *staged; /* gather into stage (big KIVI blocks), lazily */
	uint8_t *stage;               /* device staging area: spills, big blocks */
	size_t stage_cap;
};

struct gpu_tier {
	struct kvt_tier base;
	uint8_t *pool;     /* device memory */
	uint64_t size;     /* pool bytes = budget */
	uint64_t top;      /* bump pointer */
	uint64_t used;     /* rounded bytes of live blocks */
	struct gpu_free_list *lists;
	size_t n_lists;
	struct gpu_entry *entries;
	size_t n_entries, cap_entries;
	uint32_t *free_entries;
	size_t n_free_entries;
	struct kvt_hmap index;
	struct kvt_stream *stream;
	struct gpu_reload reload;
};

static inline struct gpu_tier *gpu_of(struct kvt_tier *t)
{
	return (struct gpu_tier *)t;
}

/* Room for a new value of key (len bytes): the entry (new or the key's
 * old one, whose extent is then replaced) and where its bytes go. The
 * old value stays readable until kvt_gpu_slot_commit. */
struct gpu_slot {
	uint32_t entry;
	int fresh;          /* the entry is new */
	uint64_t off, size; /* extent for the new value */
	int new_extent;     /* off/size differ from the entry's */
};

int kvt_gpu_slot_reserve(struct gpu_tier *g, const struct kvt_block_key *key,
			 uint32_t len, struct gpu_slot *s);
void kvt_gpu_slot_commit(struct gpu_tier *g, const struct gpu_slot *s,
			 const struct kvt_block_meta *meta);
void kvt_gpu_slot_cancel(struct gpu_tier *g, const struct gpu_slot *s);

/* Removes key if present. */
void kvt_gpu_remove(struct gpu_tier *g, const struct kvt_block_key *key);

/* Frees the reload state (after any pending reload completed). */
void kvt_gpu_reload_release(struct gpu_tier *g);

#endif
