/*
 * kvt_kernels.h - GPU kernels and CUDA runtime helpers, with no CUDA types.
 *
 * Without CUDA (or without a device) every function that touches the GPU
 * returns KVT_ENOGPU; the pure host helpers (kvt_kivi_geom_*) work in every
 * build. CUDA failures map to kvtier codes, never abort: -ENOMEM (device or
 * pinned allocation failed), -EINVAL (bad argument), KVT_ENOGPU (no usable
 * device or driver), KVT_ECUDA (anything else, including a failed kernel).
 *
 * Streams are opaque struct kvt_stream pointers (a cudaStream_t
 * underneath); NULL is the legacy default stream. Every kernel entry point
 * only enqueues work on its stream and returns: its results are valid once
 * the stream has passed that point (kvt_stream_sync, or an event recorded
 * after it). Pointers called "device" must be device memory or mapped pinned
 * host memory seen through its device address (kvt_gpu_host_device_ptr).
 *
 * Batched operations (gather, KIVI quantize/dequantize) take a struct
 * kvt_gpu_batch: a table of up to `cap` items in pinned host memory that the
 * caller fills, uploaded to the device with the launch. A batch must not be
 * refilled, nor its results read, until the stream of the last operation
 * that used it has passed it.
 */
#ifndef KVTIER_KERNELS_H
#define KVTIER_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kvt_stream;

/* ---------------------------------------------------------------- runtime */

/* 0 when a CUDA device is usable, KVT_ENOGPU otherwise. */
int kvt_gpu_available(void);

/* Registers host memory [ptr, ptr+len) as pinned and mapped for the GPU.
 * KVT_ENOGPU without CUDA; KVT_ECUDA on failure. */
int kvt_gpu_host_register(void *ptr, size_t len);

/* Undoes kvt_gpu_host_register. */
int kvt_gpu_host_unregister(void *ptr);

/* A non-blocking stream of the current device; destroy with
 * kvt_stream_destroy (NULL is a no-op). */
int kvt_stream_create(struct kvt_stream **out);
void kvt_stream_destroy(struct kvt_stream *s);

/* Waits until all work queued on s is done; returns the first error of
 * that work (KVT_ECUDA) or 0. */
int kvt_stream_sync(struct kvt_stream *s);

/* 0 when all work on s is done, -EAGAIN while some is pending. */
int kvt_stream_query(struct kvt_stream *s);

/* Device memory: cudaMalloc / cudaFree. -ENOMEM when the device is full. */
int kvt_gpu_malloc(size_t len, void **dev);
void kvt_gpu_free(void *dev);

/* Pinned host memory, mapped into the device address space
 * (cudaHostAlloc with cudaHostAllocMapped | Portable). */
int kvt_gpu_host_alloc(size_t len, void **host);
void kvt_gpu_host_free(void *host);

/* The device address of pinned mapped host memory (allocated with
 * kvt_gpu_host_alloc or registered with kvt_gpu_host_register), interior
 * pointers included. -EINVAL when host is not mapped. */
int kvt_gpu_host_device_ptr(const void *host, void **dev);

/* cudaMemcpyAsync / cudaMemsetAsync with the direction inferred from the
 * pointers (unified addressing). Pageable host memory makes the copy
 * synchronous with respect to the host. */
int kvt_gpu_copy_async(void *dst, const void *src, size_t len,
		       struct kvt_stream *s);
int kvt_gpu_memset_async(void *dev, int byte, size_t len, struct kvt_stream *s);

/* Events, for polling one piece of work without draining a stream. */
struct kvt_gpu_event;
int kvt_gpu_event_create(struct kvt_gpu_event **out);
void kvt_gpu_event_destroy(struct kvt_gpu_event *e);
int kvt_gpu_event_record(struct kvt_gpu_event *e, struct kvt_stream *s);
/* 0 when done, -EAGAIN while pending, KVT_ECUDA when the work failed. */
int kvt_gpu_event_query(struct kvt_gpu_event *e);
int kvt_gpu_event_sync(struct kvt_gpu_event *e);
/* Milliseconds between two completed events. */
int kvt_gpu_event_elapsed(struct kvt_gpu_event *start,
			  struct kvt_gpu_event *end, float *ms);

/* ---------------------------------------------------------------- batches */

/* One item of a batched transfer: device addresses; len is used by the
 * gather only (the KIVI operations take sizes from their geometry). */
struct kvt_gpu_item {
	const void *src;
	void *dst;
	uint64_t len;
};

struct kvt_gpu_batch;

/* A batch of up to cap items (1 .. 1<<24). Errors: -EINVAL, -ENOMEM,
 * KVT_ENOGPU. */
int kvt_gpu_batch_create(uint32_t cap, struct kvt_gpu_batch **out);
void kvt_gpu_batch_free(struct kvt_gpu_batch *b);

/* The host-writable item table (cap entries), valid until the batch is
 * freed. */
struct kvt_gpu_item *kvt_gpu_batch_items(struct kvt_gpu_batch *b);

/* Per-item results of the last decoding operation (cap ints, host
 * readable): 0, or KVT_EFORMAT when item i's stream header did not match
 * the geometry (its destination is then left untouched). */
const int *kvt_gpu_batch_results(const struct kvt_gpu_batch *b);

/* ---------------------------------------------------------------- gather */

/*
 * Copies items [0, n) of b (src -> dst, len bytes each) in one launch on s.
 * Sources are typically mapped pinned host memory (a scattered reload
 * straight over the link), destinations device memory; any device-visible
 * memory works. Items must not overlap each other's destinations.
 * Errors: -EINVAL (n > cap), KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_gpu_gather(struct kvt_gpu_batch *b, uint32_t n, struct kvt_stream *s);

/* ---------------------------------------------------------------- KIVI */

/*
 * Geometry of a KIVI-encoded block as the store writes it: the K stream
 * (header + payload, see kvtier/codec.h) immediately followed by the V
 * stream, both encoded from one raw block K[heads][tokens][dim] then
 * V[heads][tokens][dim] with the same bits, group and residual parameter.
 */
struct kvt_kivi_geom {
	uint32_t heads, tokens, dim;
	enum kvt_dtype dtype;
	uint8_t bits;       /* 2, 4, 8 */
	uint16_t group;     /* tokens per key group, channels per value group */
	uint32_t residual;  /* residual parameter (the store uses 0) */
};

/* 0 when g is a geometry the CPU codec accepts for both halves; -EINVAL
 * or KVT_ECODEC otherwise. Works without CUDA. */
int kvt_kivi_geom_check(const struct kvt_kivi_geom *g);

/* Bytes of the raw block, of the K stream and of the whole encoded block
 * (K + V). Works without CUDA. Errors as kvt_kivi_geom_check. */
int kvt_kivi_geom_sizes(const struct kvt_kivi_geom *g, size_t *raw,
			size_t *k_stream, size_t *encoded);

/*
 * Quantizes items [0, n) of b: src a raw block, dst room for the encoded
 * block; writes exactly the bytes the CPU codec's scalar reference writes
 * (headers, codes, scales, minima, residual, padding). Every src and dst
 * of the KIVI operations must be 4-byte aligned (16 bytes is faster).
 * Errors: -EINVAL (n > cap, NULL or misaligned pointers), KVT_ECODEC,
 * KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_kivi_quantize(const struct kvt_kivi_geom *g, struct kvt_gpu_batch *b,
		      uint32_t n, struct kvt_stream *s);

/*
 * Dequantizes items [0, n) of b: src an encoded block in device memory,
 * dst a raw block (the geometry's dtype), values equal to the CPU decode.
 * Each item's headers are checked against g on the device; a mismatch sets
 * its result to KVT_EFORMAT (see kvt_gpu_batch_results).
 */
int kvt_kivi_dequantize(const struct kvt_kivi_geom *g, struct kvt_gpu_batch *b,
			uint32_t n, struct kvt_stream *s);

/*
 * Fused reload: per item, one thread block reads the encoded block from src
 * (typically mapped pinned host memory, read once with wide loads into
 * shared memory) and writes the decoded raw block to dst; the link carries
 * only the compressed bytes. Results as kvt_kivi_dequantize. KVT_ETOOBIG
 * when an encoded block does not fit in shared memory (then gather into a
 * device staging area and call kvt_kivi_dequantize).
 */
int kvt_kivi_gather_dequantize(const struct kvt_kivi_geom *g,
			       struct kvt_gpu_batch *b, uint32_t n,
			       struct kvt_stream *s);

/* ---------------------------------------------------------------- ZipCache */

/* Geometry of a ZipCache block: the K stream then the V stream of one raw
 * block (codec/zipcache.c's format); each stream says its own salient
 * count and whether it has channel normalisers. */
struct kvt_zip_geom {
	uint32_t heads, tokens, dim;
	enum kvt_dtype dtype;
	uint8_t bits;      /* ordinary tokens: 2, 4, 8 */
	uint8_t high_bits; /* salient tokens: 4, 8, more than bits */
};

/* 0, -EINVAL (sizes, dtype) or KVT_ECODEC (bits). Works without CUDA. */
int kvt_zip_geom_check(const struct kvt_zip_geom *g);

/*
 * Decodes items [0, n) of b: src an encoded ZipCache block of len bytes
 * (len varies with the salient count), dst a raw block of the geometry's
 * dtype; values equal kvt_codec_decode's. One thread block per item copies
 * the encoded block into shared memory first, so src may be mapped pinned
 * host memory (a fused reload) or device memory. Headers, lengths, the
 * salient bitmap and the normalisers are checked on the device: a bad
 * block gets KVT_EFORMAT in kvt_gpu_batch_results and its dst is left
 * alone. Errors: -EINVAL, KVT_ECODEC, KVT_ETOOBIG (a block over the shared
 * memory of a thread block, 227 KiB on Hopper), KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_zip_dequantize(const struct kvt_zip_geom *g, struct kvt_gpu_batch *b,
		       uint32_t n, struct kvt_stream *s);

/* Bytes of the K stream and of the whole block encoded with n_salient
 * salient tokens, with channel normalisers (tokenwise 0) or without (1).
 * Works without CUDA. Errors as kvt_zip_geom_check, -EINVAL. */
int kvt_zip_block_size(const struct kvt_zip_geom *g, int tokenwise,
		       uint32_t n_salient, size_t *k_stream, size_t *encoded);

/* The salient set the CPU codec picks from per-token scores: the
 * n_salient highest (NaN lowest, ties to the lower index), as a bitmap of
 * ceil(tokens / 32) words (bit t % 32 of word t / 32). Works without CUDA.
 * Errors: -EINVAL, -ENOMEM. */
int kvt_zip_salient_bitmap(const float *scores, uint32_t tokens,
			   uint32_t n_salient, uint32_t *bitmap);

/*
 * Quantizes items [0, n) of b: src a raw block, dst room for its encoded
 * block (kvt_zip_block_size), writing exactly the bytes kvt_codec_encode
 * writes for both halves when its scores pick the salient set of item i:
 * bitmaps (device memory, ceil(tokens / 32) words per item, n_salient bits
 * each, as kvt_zip_salient_bitmap makes them) gives it. tokenwise: as the
 * codec parameter zip_tokenwise. dim <= 1024. Errors: -EINVAL,
 * KVT_ECODEC, KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_zip_quantize(const struct kvt_zip_geom *g, int tokenwise,
		     uint32_t n_salient, const uint32_t *bitmaps,
		     struct kvt_gpu_batch *b, uint32_t n, struct kvt_stream *s);

/* ---------------------------------------------------------------- scoring */

/*
 * Retrieval scores: scores[i][j] = dot(q[i], keys[j]) over dim (fp32,
 * products and sums rounded in order d = 0, 1, ..., no FMA, so a CPU loop
 * written the same way gives the same bits), for nq queries and m keys
 * (centroids or block mean keys; normalise both for cosine). Then for each
 * query the k best keys: top_idx[i][0..k) in order of decreasing score,
 * ties to the lower index; top_score likewise (may be NULL). All pointers
 * are device memory; scores holds nq * m floats.
 * Limits: 1 <= k <= min(m, 1024), dim <= 4096. Errors: -EINVAL, KVT_ECUDA,
 * KVT_ENOGPU. Scores that are NaN give an unspecified order.
 */
int kvt_gpu_score_topk(const float *q, uint32_t nq, const float *keys,
		       uint32_t m, uint32_t dim, uint32_t k, float *scores,
		       uint32_t *top_idx, float *top_score,
		       struct kvt_stream *s);

/*
 * The same for `sets` independent problems in one pair of launches (one
 * set per kv head, say): q [sets][nq][dim] against keys [sets][m][dim];
 * scores [sets][nq][m], top_idx and top_score [sets][nq][k]. sets <= 65535.
 */
int kvt_gpu_score_topk_sets(const float *q, uint32_t sets, uint32_t nq,
			    const float *keys, uint32_t m, uint32_t dim,
			    uint32_t k, float *scores, uint32_t *top_idx,
			    float *top_score, struct kvt_stream *s);

/* ---------------------------------------------------------------- Quest selection */

/*
 * The Quest scores of retrieval.h on the GPU. For query rows r (the q
 * heads' query vectors, rows_per_head consecutive rows per kv head; qp and
 * qn their positive and negative parts) and frames f with channel bounds
 * hi, lo: lg[r][f] = (qp[r] . hi[f][h] + qn[r] . lo[f][h]) * scale (summed
 * in order, no FMA); per row the cnt-weighted softmax over frames; block b
 * (frame b / frame_blocks) gets the sum over rows of its frame's share,
 * divided by frame_blocks, written as an order-preserving key (never 0) to
 * key[n_blocks - 1 - b] (reversed, so "lower index first" on ties is
 * "newer block first", the CPU's rule); the sink and recent blocks get 0.
 * All pointers are device memory.
 */
struct kvt_quest_args {
	const float *qp, *qn;      /* [rows][head_dim] */
	uint32_t rows, rows_per_head;
	const uint16_t *hi, *lo;   /* fp16 [n_frames][n_kv_heads][head_dim] */
	const uint32_t *cnt;       /* [n_frames] tokens per frame */
	uint32_t n_kv_heads, head_dim, n_frames, frame_blocks, n_blocks;
	uint32_t sink_blocks;      /* blocks [0, sink_blocks) are forced */
	uint32_t recent_first;     /* blocks [recent_first, n_blocks) too */
	float scale;               /* 1 / sqrt(head_dim) */
	float *lg;                 /* scratch: rows * n_frames floats */
	float *stats;              /* scratch: 2 * rows floats */
	uint32_t *key;             /* out: n_blocks keys */
};

/* Enqueues the three launches above. Errors: -EINVAL (inconsistent
 * arguments, rows over 65535), KVT_ECUDA, KVT_ENOGPU. */
int kvt_gpu_quest_keys(const struct kvt_quest_args *a, struct kvt_stream *s);

/*
 * The ClusterKV scores of retrieval.h on the GPU: for query rows r (as
 * above), lg[r][c] = q[r] . mean[c][h] * scale (-inf for an empty
 * cluster); per row the size-weighted softmax over clusters; w[c][h] = the
 * per-token share of cluster c summed over head h's rows; block b's key
 * (reversed, 0 when forced, as kvt_quest_args) = the sum of w over its
 * tokens' clusters and the heads. Token t's cluster is (t / chunk_tokens)
 * * k_chunk + assign[t][h]. Device pointers.
 */
struct kvt_ckv_args {
	const float *q;            /* [rows][head_dim] */
	uint32_t rows, rows_per_head;
	const uint16_t *mean;      /* fp16 [n_clusters][n_kv_heads][head_dim] */
	const uint32_t *ccount;    /* [n_clusters][n_kv_heads] */
	const uint16_t *assign;    /* [n_tokens][n_kv_heads] */
	uint32_t n_kv_heads, head_dim, n_clusters, k_chunk, chunk_tokens;
	uint64_t n_tokens;
	uint32_t block_tokens, n_blocks, sink_blocks, recent_first;
	float scale;
	float *lg;                 /* scratch: rows * n_clusters floats */
	float *stats;              /* scratch: 2 * rows floats */
	float *w;                  /* scratch: n_clusters * n_kv_heads floats */
	uint32_t *key;             /* out: n_blocks keys */
};

/* Enqueues the four launches above. Errors: -EINVAL, KVT_ECUDA,
 * KVT_ENOGPU. */
int kvt_gpu_clusterkv_keys(const struct kvt_ckv_args *a, struct kvt_stream *s);

/*
 * sel[i] = 1 for the k largest of key[0, n) (ties to the lower index), 0
 * for the others, by one thread block (radix select: no limit on k).
 * Device pointers; 1 <= k <= n. Errors: -EINVAL, KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_gpu_select_top(const uint32_t *key, uint32_t n, uint32_t k,
		       uint8_t *sel, struct kvt_stream *s);

/* ---------------------------------------------------------------- reference attention */

/*
 * softmax(q K^T * scale) V for every q head and query vector over the
 * valid tokens of n_blocks raw blocks (K[head][token][dim] then V, dtype),
 * block b at blocks[b] with first[b + 1] - first[b] valid tokens (first:
 * n_blocks + 1 prefix sums, first[0] = 0, first[n_blocks] = n_tokens). GQA:
 * q head j reads kv head j / (n_q_heads / n_kv_heads). One thread block per
 * (q head, query). Device pointers (blocks: a device array of device
 * pointers); q, out [n_q_heads][n_queries][head_dim] fp32; scores:
 * n_q_heads * n_queries * n_tokens floats of scratch. Errors: -EINVAL,
 * KVT_ECUDA, KVT_ENOGPU.
 */
struct kvt_attn_args {
	const float *q;
	uint32_t n_q_heads, n_queries, n_kv_heads, head_dim, block_tokens;
	uint32_t dtype;            /* enum kvt_dtype */
	const void *const *blocks;
	const uint32_t *first;
	uint32_t n_blocks, n_tokens;
	float scale;
	float *scores, *out;
};

int kvt_gpu_attn_blocks(const struct kvt_attn_args *a, struct kvt_stream *s);

#ifdef __cplusplus
}
#endif

#endif
