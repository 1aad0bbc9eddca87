/*
 * rindex_internal.h - the state of a retrieval index, shared by its files.
 *
 * rindex.c     create/free/add/refine and the accessors
 * kmeans.c     spherical k-means of the chunk being filled
 * select.c     kvt_retrieve: scoring clusters or frames, choosing blocks
 * persist.c    save/load and the cache metadata blob
 * load.c       indexing a cache, loading a selection into a pool
 * attention.c  the CPU reference attention and quality figures
 *
 * Clusters of a layer are numbered chunk by chunk: chunk i (tokens
 * [i * chunk_tokens, (i + 1) * chunk_tokens)) owns clusters
 * [i * k_chunk, (i + 1) * k_chunk) with k_chunk = chunk_tokens /
 * cluster_tokens, and a token stores its cluster's number within its chunk
 * (16 bits). The last chunk may own fewer clusters while it fills.
 */
#ifndef KVTIER_RETRIEVAL_RINDEX_INTERNAL_H
#define KVTIER_RETRIEVAL_RINDEX_INTERNAL_H

#include <stdint.h>

#include "kvtier/retrieval.h"

struct rlayer {
	uint64_t n_tokens;
	uint64_t cap_tokens;
	uint16_t *assign;    /* [cap_tokens][H] cluster within the chunk */
	uint32_t n_clusters; /* per kv head */
	uint32_t cap_clusters;
	uint16_t *cmean;     /* [cap_clusters][H][d] fp16 mean keys of the
	                        clusters of closed chunks */
	uint32_t *ccount;    /* [cap_clusters][H] */
	uint32_t n_frames, cap_frames;
	uint16_t *fmean;     /* [cap_frames][H][d] fp16 unit mean keys of the
	                        complete frames */
	uint32_t *fcount;    /* [cap_frames] tokens */
	uint16_t *fhi, *flo; /* [cap_frames][H][d] fp16 channel-wise largest
	                        and smallest keys of the complete frames,
	                        rounded outward (Quest bounds) */
	float *fsum;         /* [H][d] raw key sums of the frame being filled */
	float *bhi, *blo;    /* [H][d] its channel-wise largest and smallest
	                        keys */
	/* the chunk being filled: tokens [n_tokens - pend_n, n_tokens) */
	uint32_t pend_n;
	float *pend;         /* [H][chunk_tokens][d] raw keys */
	float *pend_inv;     /* [H][chunk_tokens] 1 / |key| */
	float *csum;         /* [k_chunk][H][d] raw key sums of its clusters */
	float *usum;         /* [k_chunk][H][d] sums of unit keys */
	float *cent;         /* [k_chunk][H][d] unit centroids */
	float *fit;          /* [chunk_tokens] scratch: cosine to own centroid */
};

struct kvt_rindex {
	struct kvt_shape shape;
	struct kvt_rindex_config cfg;
	uint32_t k_chunk;    /* clusters of a full chunk */
	struct rlayer *layers;
};

/* Tokens per ReKV frame. */
static inline uint64_t rl_frame_tokens(const struct kvt_rindex *x)
{
	return (uint64_t)x->cfg.frame_blocks * x->shape.block_tokens;
}

/* Frames of the layer that are complete (all but a partial last one). */
static inline uint32_t rl_full_frames(const struct kvt_rindex *x,
				      const struct rlayer *l)
{
	return l->n_frames - (l->n_tokens % rl_frame_tokens(x) ? 1 : 0);
}

static inline uint32_t rl_chunk_c0(const struct kvt_rindex *x,
				   const struct rlayer *l)
{
	return (uint32_t)((l->n_tokens - l->pend_n) / x->cfg.chunk_tokens) *
	       x->k_chunk;
}

/* ---- rindex.c */

/* Grows a layer to hold n_tokens tokens, n_clusters clusters and n_frames
 * frames. -ENOMEM (nothing changed). */
int kvt_rl_reserve(const struct kvt_rindex *x, struct rlayer *l,
		   uint64_t n_tokens, uint32_t n_clusters, uint32_t n_frames);

/* Allocates the chunk and open-frame workspace of a layer. -ENOMEM. */
int kvt_rl_alloc_chunk(const struct kvt_rindex *x, struct rlayer *l);

/* The open frame's bounds [H][d] in fp16, rounded outward as a closed
 * frame keeps them (what Quest scores it by, on the CPU and the GPU). */
void kvt_rl_open_bounds(const struct kvt_rindex *x, const struct rlayer *l,
			uint16_t *hi, uint16_t *lo);

/* Turns the chunk's key sums into fp16 means of closed clusters and
 * clears them (the chunk is full). */
void kvt_rl_close_chunk(const struct kvt_rindex *x, struct rlayer *l);

/* ---- select.c: the block layout of a layer and the rules every mode
 * shares (kvt_retrieve, kvt_retrieve_gpu) */

struct kvt_rt_layout {
	uint64_t n;      /* tokens */
	uint32_t bt, nb; /* tokens per block, blocks */
};

/* Valid tokens of block b (the last one may be partial). */
uint32_t kvt_rt_valid(const struct kvt_rt_layout *g, uint32_t b);

/* Blocks [0, sink) and [recent_first, nb) are always selected. */
static inline uint64_t kvt_rt_sink_blocks(const struct kvt_rt_layout *g,
					  const struct kvt_retrieve_params *p)
{
	return ((uint64_t)p->sink_tokens + g->bt - 1) / g->bt;
}

static inline uint64_t kvt_rt_recent_first(const struct kvt_rt_layout *g,
					   const struct kvt_retrieve_params *p)
{
	return p->recent_tokens == 0 ? g->nb
	       : g->n > p->recent_tokens ? (g->n - p->recent_tokens) / g->bt
					 : 0;
}

/* Marks the sink and recent blocks in sel; returns their tokens. */
uint64_t kvt_rt_mark_forced(const struct kvt_rt_layout *g,
			    const struct kvt_retrieve_params *p, uint8_t *sel);

/* -EINVAL unless p suits x (heads, queries, mode). */
int kvt_rt_params_check(const struct kvt_rindex *x,
			const struct kvt_retrieve_params *p);

/* The marked blocks as a selection. -ENOMEM. */
int kvt_rt_emit(const struct kvt_rt_layout *g, const uint8_t *sel,
		uint32_t layer, struct kvt_selection *out);

/* ---- kmeans.c */

/* Joins pending token i (already in l->pend) to the chunk's clusters,
 * opening a new cluster when the chunk has fewer than ceil((i + 1) /
 * cluster_tokens). Capacity must be reserved. */
void kvt_km_add_token(const struct kvt_rindex *x, struct rlayer *l,
		      uint32_t i);

/* Lloyd iterations over the pending tokens of the chunk. */
void kvt_km_refine(const struct kvt_rindex *x, struct rlayer *l);

/* Recomputes the chunk's centroids from usum (after load). */
void kvt_km_rebuild(const struct kvt_rindex *x, struct rlayer *l);

#endif
