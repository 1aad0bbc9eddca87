/*
 * retrieval.h - choose the blocks of a cache a query will attend to.
 *
 * A retrieval index (struct kvt_rindex) follows the keys of a cache, layer
 * by layer, and answers: given this layer's query vectors and a token
 * budget, which blocks hold most of the attention mass? Two modes:
 *
 *  - ClusterKV: per (layer, kv head), keys (post-RoPE, as stored) are
 *    clustered by spherical k-means (cosine). Tokens are clustered in
 *    chunks of chunk_tokens consecutive tokens, about one cluster per
 *    cluster_tokens tokens: a new token joins the nearest cluster of its
 *    chunk at once (incremental assignment), and when the chunk is full
 *    (or on kvt_rindex_refine) Lloyd iterations refine that chunk's
 *    clusters. Keys of closed chunks are not kept: only each cluster's mean
 *    key (fp16) and size, and every token's cluster. A query estimates each
 *    cluster's attention mass as size * exp(q . mean_key / sqrt(head_dim))
 *    (softmax over clusters, per q head), spreads it evenly over the
 *    cluster's tokens, and blocks are taken in order of their estimated mass
 *    (summed over heads) until the budget is full. The store moves whole
 *    blocks (all kv heads), hence block granularity.
 *  - ReKV: each frame (frame_blocks consecutive blocks) is represented by
 *    its mean key per kv head; the query vectors of a kv head's group are
 *    averaged and frames are ranked by cosine similarity (summed over kv
 *    heads); frames are taken in that order until the budget is full.
 *  - Quest (Tang et al., 2024): each frame also keeps the channel-wise
 *    largest and smallest key per kv head (fp16, rounded outward), which
 *    bound q . k for every key of the frame by q+ . max + q- . min (q+, q-
 *    the positive and negative parts of q). Per q head and query vector a
 *    softmax of those bounds over the frames, weighted by frame sizes,
 *    estimates each frame's mass; frames are ranked by the sum over all
 *    q heads and queries. Cluster means (like ReKV's frame means) blur the
 *    few tokens with outlying channels that many real attention heads
 *    look for; a bound keeps them. On SmolLM2-135M's keys it gets within a
 *    few percent of the block oracle where ClusterKV does not (see
 *    docs/retrieval.md).
 *
 * In all modes the sink (the first sink_tokens tokens) and the recent
 * window (the last recent_tokens tokens) are always selected and count
 * toward the budget.
 *
 * Data layouts:
 *  - keys: [n_kv_heads][n_tokens][head_dim] of the index dtype (the cache
 *    dtype), as given to kvt_cache_append.
 *  - queries: float32 [n_q_heads][n_queries][head_dim]. GQA: q head j reads
 *    kv head j / (n_q_heads / n_kv_heads) (consecutive groups, as in
 *    Hugging Face's repeat_kv).
 *
 * Memory per layer: 2 bytes per token and kv head (cluster ids), 2 *
 * head_dim bytes per cluster and 6 * head_dim per frame and kv head (fp16
 * mean keys, and the frame bounds; fp32 for the chunk and the frame being
 * filled), plus the keys
 * of the chunk being clustered (4 * chunk_tokens * head_dim bytes per kv
 * head, while a chunk is open). For 128k tokens, 8 kv heads of 128 dims and
 * the defaults (16-token blocks, one per frame): about 54 MB per layer (48
 * of them frames), plus 4 MB for an open chunk; frame_blocks 4 makes the
 * frames a quarter of that.
 *
 * Thread safety: calls on different layers of one index may run at once
 * (e.g. one thread per layer while indexing; kvt_rindex_refine with
 * UINT32_MAX touches every layer); calls on the same layer must not overlap
 * unless all are kvt_retrieve or read-only accessors.
 * All functions return 0 or a negative code (see kvtier.h).
 */
#ifndef KVTIER_RETRIEVAL_H
#define KVTIER_RETRIEVAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- index */

struct kvt_rindex_config {
	uint32_t cluster_tokens; /* tokens per cluster, 4..1024 (default 64) */
	uint32_t chunk_tokens;   /* tokens clustered together; a multiple of
	                            cluster_tokens, at most 65536 (default 1024) */
	uint32_t iters;          /* Lloyd iterations per refinement, 1..100
	                            (default 8) */
	uint32_t frame_blocks;   /* ReKV: blocks per frame, 1..4096 (default 1) */
};

/* Fills *cfg with the defaults above. */
void kvt_rindex_config_init(struct kvt_rindex_config *cfg);

struct kvt_rindex;

/*
 * Creates an empty index for caches of shape *shape. cfg NULL: defaults.
 * Errors: -EINVAL (bad shape or config), -ENOMEM. On success *out owns the
 * index; release it with kvt_rindex_free().
 */
int kvt_rindex_create(const struct kvt_shape *shape,
		      const struct kvt_rindex_config *cfg,
		      struct kvt_rindex **out);

/* Releases an index. NULL is a no-op. */
void kvt_rindex_free(struct kvt_rindex *idx);

/* The shape and configuration the index was created with. */
int kvt_rindex_get_shape(const struct kvt_rindex *idx, struct kvt_shape *shape,
			 struct kvt_rindex_config *cfg);

/*
 * Adds the next n_tokens keys of layer `layer` (see "keys" above; read
 * only during the call). Call it with the same keys given to
 * kvt_cache_append so token positions agree. Refines the current chunk
 * whenever it fills. Errors: -EINVAL (layer out of range, NULL keys),
 * -ENOMEM (the index is unchanged).
 */
int kvt_rindex_add(struct kvt_rindex *idx, uint32_t layer, const void *keys,
		   uint32_t n_tokens);

/*
 * Runs the Lloyd iterations on the chunk being filled of layer `layer`
 * (all layers when layer is UINT32_MAX) without closing it. A no-op for an
 * empty chunk. Errors: -EINVAL.
 */
int kvt_rindex_refine(struct kvt_rindex *idx, uint32_t layer);

/*
 * Adds to idx every token the cache holds beyond those already indexed,
 * reading the keys from the cache (decoded when quantized), layer by
 * layer. Errors: KVT_ESHAPE (the cache's shape differs from the index's),
 * KVT_ECORRUPT (the index holds more tokens of a layer than the cache: it
 * was made for another cache), errors of kvt_cache_read, -ENOMEM.
 */
int kvt_rindex_update_from_cache(struct kvt_rindex *idx,
				 struct kvt_cache *cache);

/* kvt_rindex_create with the cache's shape, then kvt_rindex_update_from_cache. */
int kvt_rindex_build_from_cache(struct kvt_cache *cache,
				const struct kvt_rindex_config *cfg,
				struct kvt_rindex **out);

struct kvt_rindex_layer_info {
	uint64_t n_tokens;    /* tokens indexed */
	uint32_t n_clusters;  /* clusters per kv head (same for every head) */
	uint32_t n_frames;    /* ReKV frames */
	uint32_t pending;     /* tokens of the chunk being filled */
};

int kvt_rindex_layer_info(const struct kvt_rindex *idx, uint32_t layer,
			  struct kvt_rindex_layer_info *out);

/*
 * Cluster ids of tokens [first, first + n) of one (layer, kv head) into
 * ids. Errors: -EINVAL, KVT_ENOTFOUND (range past the indexed tokens).
 */
int kvt_rindex_get_assign(const struct kvt_rindex *idx, uint32_t layer,
			  uint32_t head, uint64_t first, uint32_t n,
			  uint32_t *ids);

/*
 * Size of cluster `cluster` of (layer, head) and its mean key (head_dim
 * floats into mean, may be NULL; zeros for an empty cluster). Clusters of
 * closed chunks keep their mean in fp16.
 * Errors: -EINVAL, KVT_ENOTFOUND.
 */
int kvt_rindex_get_cluster(const struct kvt_rindex *idx, uint32_t layer,
			   uint32_t head, uint32_t cluster, uint32_t *size,
			   float *mean);

/*
 * Channel-wise largest (hi) and smallest (lo) key of frame `frame` of
 * (layer, head), head_dim floats each (either may be NULL). Complete
 * frames keep them in fp16, rounded outward; the open frame exactly.
 * Errors: -EINVAL, KVT_ENOTFOUND (no such frame).
 */
int kvt_rindex_get_frame_bounds(const struct kvt_rindex *idx, uint32_t layer,
				uint32_t head, uint32_t frame, float *hi,
				float *lo);

/* ---------------------------------------------------------------- persistence */

#define KVT_RINDEX_VERSION 2 /* 2: frame key bounds (Quest) */
#define KVT_RINDEX_META_KEY "kvt.rindex" /* metadata key used by persist */

/*
 * Serialises the index (versioned, XXH3-checksummed, little-endian) into a
 * malloc'd buffer *buf of *len bytes that the caller frees. -ENOMEM.
 */
int kvt_rindex_save(const struct kvt_rindex *idx, void **buf, size_t *len);

/*
 * Rebuilds an index from kvt_rindex_save output. Errors: KVT_EFORMAT (not
 * an index, truncated), KVT_EVERSION, KVT_ECORRUPT (checksum mismatch or
 * inconsistent content), -ENOMEM.
 */
int kvt_rindex_load(const void *buf, size_t len, struct kvt_rindex **out);

/*
 * Stores the index with the cache as metadata blobs (durable with a disk
 * tier): the kvt_rindex_save bytes in pieces of at most 64 MiB under
 * KVT_RINDEX_META_KEY ".0", ".1", ..., then KVT_RINDEX_META_KEY, a small
 * header with their length and checksum, replacing any earlier index.
 * A crash part way leaves an index that kvt_rindex_open refuses with
 * KVT_ECORRUPT (rebuild it with kvt_rindex_build_from_cache), never a mix.
 * Errors: KVT_ESHAPE, those of kvt_cache_meta_put.
 */
int kvt_rindex_persist(const struct kvt_rindex *idx, struct kvt_cache *cache);

/*
 * Loads the index stored with the cache. It may cover fewer tokens than
 * the cache holds; kvt_rindex_update_from_cache catches up. Errors:
 * KVT_ENOTFOUND (none stored), KVT_ESHAPE (stored for another shape),
 * those of kvt_rindex_load and kvt_cache_meta_get.
 */
int kvt_rindex_open(struct kvt_cache *cache, struct kvt_rindex **out);

/* ---------------------------------------------------------------- selection */

enum kvt_retrieval_mode {
	KVT_RETRIEVE_CLUSTERKV = 0,
	KVT_RETRIEVE_REKV = 1,
	KVT_RETRIEVE_RECENT = 2, /* baseline: sink, then the newest blocks */
	KVT_RETRIEVE_QUEST = 3,  /* frame key bounds (see the top) */
	KVT_RETRIEVE_N_MODES = 4
};

/* "clusterkv", "rekv", "recent", "quest"; "?" otherwise. */
const char *kvt_retrieval_mode_name(enum kvt_retrieval_mode mode);

struct kvt_retrieve_params {
	enum kvt_retrieval_mode mode;
	uint32_t n_q_heads;     /* a multiple of n_kv_heads, at most 4096 */
	uint32_t n_queries;     /* query vectors per q head, 1..4096 (default 1) */
	uint64_t budget_tokens; /* tokens of the selected blocks, at most */
	uint32_t sink_tokens;   /* always selected (default 16) */
	uint32_t recent_tokens; /* newest tokens, always selected (default 128) */
};

/* Defaults: ClusterKV, 1 query, sink 16, recent 128; n_q_heads and
 * budget_tokens are left 0 and must be set. */
void kvt_retrieve_params_init(struct kvt_retrieve_params *p);

struct kvt_selection {
	uint32_t layer;
	uint32_t block_tokens;
	uint32_t n_blocks;
	uint32_t *blocks;  /* n_blocks block indices, ascending; malloc'd */
	uint32_t *n_valid; /* valid tokens of each selected block */
	uint64_t n_tokens; /* sum of n_valid: tokens selected (<= budget) */
	uint64_t total_tokens; /* tokens indexed in the layer */
};

/*
 * Selects the blocks of layer `layer` for queries q (see "queries" above).
 * When the layer holds no more than budget_tokens tokens every block is
 * selected. On success *out holds the selection; release it with
 * kvt_selection_free(). Errors: -EINVAL (layer, n_q_heads not a multiple of
 * n_kv_heads, n_queries, mode, NULL q, or a budget smaller than the blocks
 * of the sink and the recent window), KVT_ENOTFOUND (nothing indexed in the
 * layer), -ENOMEM.
 */
int kvt_retrieve(struct kvt_rindex *idx, uint32_t layer,
		 const struct kvt_retrieve_params *p, const float *q,
		 struct kvt_selection *out);

/* Frees the arrays of a selection and zeroes it. NULL is a no-op. */
void kvt_selection_free(struct kvt_selection *sel);

/* ---------------------------------------------------------------- on the GPU */

/*
 * A copy of an index in GPU memory (Quest frame bounds; ClusterKV cluster
 * means, sizes and per-token cluster ids), and selection run there
 * (kernels/select.cu: logits, per-row softmax, block masses, an exact
 * radix top-k in one thread block). Without CUDA, or without a usable
 * device, kvt_rindex_gpu_create returns KVT_ENOGPU and callers use
 * kvt_retrieve. The object owns a CUDA stream and device memory; one call
 * at a time per object.
 * Errors of create: -EINVAL, KVT_ENOGPU, -ENOMEM, KVT_ECUDA. On success
 * *out is released with kvt_rindex_gpu_free (NULL is a no-op).
 */
struct kvt_rindex_gpu;

int kvt_rindex_gpu_create(const struct kvt_rindex *idx,
			  struct kvt_rindex_gpu **out);
void kvt_rindex_gpu_free(struct kvt_rindex_gpu *g);

/*
 * kvt_retrieve in mode KVT_RETRIEVE_QUEST or KVT_RETRIEVE_CLUSTERKV with
 * the scoring and the top-k on the GPU: first uploads what the layer's
 * index gained since the last call (closed frames / clusters and tokens
 * once; the open frame's bounds, the open chunk's clusters and ids every
 * call), then q (host memory, kvt_retrieve's layout). Same rules and
 * result as kvt_retrieve, except that blocks whose scores differ only in
 * the last bits (another summation order, the device's expf, the open
 * chunk's means rounded to fp16) may be swapped. Synchronous. idx must be
 * the index g was made for (same shape), its layer not changed during the
 * call.
 * Errors: those of kvt_retrieve; -EOPNOTSUPP (ReKV or the recent
 * baseline), -EINVAL (also: n_q_heads x n_queries over 65535), -ENOMEM
 * (device or host memory), KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_retrieve_gpu(struct kvt_rindex_gpu *g, const struct kvt_rindex *idx,
		     uint32_t layer, const struct kvt_retrieve_params *p,
		     const float *q, struct kvt_selection *out);

/* ---------------------------------------------------------------- loading */

/*
 * A block table for an attention kernel: the i-th selected block is raw
 * (K[head][token][dim] then V, the cache dtype) in slot slot[i] of a pool
 * of slot_bytes-sized slots; its first token is position block[i] *
 * block_tokens of the sequence and n_valid[i] of its tokens are valid.
 */
struct kvt_block_table {
	uint32_t n_blocks;
	uint32_t block_tokens;
	size_t slot_bytes;   /* kvt_block_bytes() of the cache */
	uint32_t *block;     /* malloc'd, n_blocks each */
	uint32_t *slot;
	uint32_t *n_valid;
};

/*
 * Makes the selected blocks resident on the fastest tier of the store
 * (kvt_cache_prefetch: one batched read for blocks on disk), then copies
 * them, decoded to raw, into pool (pool_len bytes, at least sel->n_blocks *
 * kvt_block_bytes()) in selection order, and fills *table. Release it
 * with kvt_block_table_free(). Errors: -ENOBUFS (pool too small),
 * KVT_ENOTFOUND (a block past the cache), KVT_ECORRUPT, -EINVAL, -ENOMEM.
 */
int kvt_retrieve_load(struct kvt_cache *cache, const struct kvt_selection *sel,
		      void *pool, size_t pool_len, struct kvt_block_table *table);

/* Frees the arrays of a table and zeroes it. NULL is a no-op. */
void kvt_block_table_free(struct kvt_block_table *table);

/* ---------------------------------------------------------------- reference attention */

/*
 * CPU reference attention softmax(q K^T / sqrt(head_dim)) V of every query
 * over all n_tokens tokens of k and v ([n_kv_heads][n_tokens][head_dim] of
 * shape->dtype), no causal mask. out: float32 [n_q_heads][n_queries][head_dim].
 * Errors: -EINVAL (n_q_heads not a multiple of n_kv_heads, NULL buffers,
 * n_tokens 0), -ENOMEM.
 */
int kvt_attn_full(const struct kvt_shape *shape, uint32_t n_q_heads,
		  uint32_t n_queries, const float *q, const void *k,
		  const void *v, uint64_t n_tokens, float *out);

/* The same over the valid tokens of the blocks of a block table, read from
 * pool. Errors: as kvt_attn_full; -EINVAL for an empty table. */
int kvt_attn_blocks(const struct kvt_shape *shape, uint32_t n_q_heads,
		    uint32_t n_queries, const float *q, const void *pool,
		    const struct kvt_block_table *table, float *out);

/*
 * True attention probability of every token (layouts as kvt_attn_full),
 * averaged over all q heads and queries, into mass[n_tokens] (sums to 1).
 * What an oracle selection would rank blocks by. Errors: as kvt_attn_full.
 */
int kvt_attn_token_mass(const struct kvt_shape *shape, uint32_t n_q_heads,
			uint32_t n_queries, const float *q, const void *k,
			uint64_t n_tokens, double *mass);

/*
 * kvt_attn_blocks on the GPU, over the blocks of a finished reload
 * (kvt_reload_wait's entries: GPU-tier blocks are read where they are,
 * host ones copied to the device first): q and out as kvt_attn_full's,
 * host memory. A reference for checking quality where the blocks live, not
 * a fast kernel. Synchronous. Errors: -EINVAL (bad arguments, an entry
 * that failed or does not match the shape), KVT_ENOGPU (no usable GPU),
 * -ENOMEM, KVT_ECUDA.
 */
int kvt_attn_reload_gpu(const struct kvt_shape *shape, uint32_t n_q_heads,
			uint32_t n_queries, const float *q,
			const struct kvt_reload_block *blocks, size_t n,
			float *out);

struct kvt_attn_quality {
	double mass_recall; /* true attention probability of the selected
	                       tokens, averaged over q heads and queries */
	double min_recall;  /* the smallest of those */
	double rel_error;   /* ||o_sel - o_full|| / ||o_full||, L2 over all q
	                       heads and queries */
};

/*
 * Quality of a selection of the first n_tokens tokens of k, v (layouts as
 * kvt_attn_full): attention restricted to the selected tokens against full
 * attention. Errors: as kvt_attn_full; -EINVAL when sel selects a block
 * past n_tokens.
 */
int kvt_attn_quality(const struct kvt_shape *shape, uint32_t n_q_heads,
		     uint32_t n_queries, const float *q, const void *k,
		     const void *v, uint64_t n_tokens,
		     const struct kvt_selection *sel,
		     struct kvt_attn_quality *out);

#ifdef __cplusplus
}
#endif

#endif /* KVTIER_RETRIEVAL_H */
