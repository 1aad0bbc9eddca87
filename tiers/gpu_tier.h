/*
 * gpu_tier.h - what the GPU tier offers beyond the tier contract: an
 * asynchronous batched reload from the host tier, the spill back, and
 * slots the caller fills on the GPU (store/append_device.c uses the last
 * two: blocks assembled from device K/V, quantized, copied out encoded).
 *
 * The GPU tier (kvt_gpu_tier_create in tier.h) is one cudaMalloc'd pool.
 * Its locate() returns device addresses (fd -1, offset = offset in the
 * pool) that kernels can take in a block table; put/get copy through the
 * tier's own stream and return when the copy is done.
 *
 * A reload request stores n blocks under their keys in one go: blocks
 * stored raw are copied by one gather launch; quantized blocks are read
 * over the link compressed and decoded on the GPU by one fused launch per
 * codec, KIVI or ZipCache (stored then
 * as raw blocks: meta codec KVT_CODEC_RAW, len = raw_len, checksum 0 since
 * the GPU does not hash). The sources are host addresses of pinned mapped
 * memory (what the host tier's locate() returns).
 *
 * How the store calls it (store/reload.c, kvt_cache_reload):
 *   locate each wanted block in the host tier (srcs[i] = loc.ptr, metas[i]
 *   from its stat), build the cache's block geometry
 *     geom = {n_kv_heads, block_tokens, head_dim, dtype, cold.bits,
 *             group as kvt_cache_block_codec() sets it, residual 0},
 *   (likewise a kvt_zip_geom for ZipCache caches), then
 *   kvt_gpu_tier_reload(gpu, n, keys, srcs, metas, &codecs, stream);
 *   ... enqueue work that reads the blocks on the same stream, or do
 *   CPU work and poll with kvt_gpu_tier_reload_poll(gpu);
 *   kvt_gpu_tier_reload_wait(gpu, results) before the host blocks may be
 *   moved or freed, and to learn per-block failures.
 * The host blocks must stay where they are until the wait returns (the
 * store pins them: demotion skips them, a put or delete of one waits for
 * the request first). One request is in flight per tier: a new request,
 * and every tier operation except locate/stat/usage, first waits for the
 * previous one and then drops its per-item results, so the store collects
 * them (kvt_gpu_settle_locked) before any other call on the tier.
 */
#ifndef KVTIER_TIERS_GPU_TIER_H
#define KVTIER_TIERS_GPU_TIER_H

#include "kvt_kernels.h"
#include "tier.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Geometries of the quantized blocks a reload decodes (either may be NULL
 * when no block of that codec is in the request). */
struct kvt_block_codecs {
	const struct kvt_kivi_geom *kivi;
	const struct kvt_zip_geom *zip;
};

/*
 * Enqueues the reload of n blocks on stream s (NULL: the tier's stream).
 * keys[i] is stored from srcs[i] (host address, metas[i].len bytes, codec
 * metas[i].codec: raw, KIVI or ZipCache). cd gives the geometry of the
 * quantized blocks (a KIVI item's len must be its geometry's encoded size;
 * cd may be NULL when all items are raw). Keys already on the GPU are
 * replaced; keys must be distinct. Errors (nothing enqueued, tier
 * unchanged): -EINVAL (bad arguments, a source not mapped for the GPU, a
 * quantized item without its geometry or with a wrong length), KVT_ECODEC
 * (another codec), KVT_ENOSPACE (the pool cannot hold them all),
 * KVT_ETOOBIG (a ZipCache block over a thread block's shared memory,
 * 227 KiB on Hopper), -ENOMEM, KVT_ECUDA, KVT_ENOGPU. KIVI blocks too big
 * for the fused kernel go through a device staging area (gather, decode).
 */
int kvt_gpu_tier_reload(struct kvt_tier *gpu, size_t n,
			const struct kvt_block_key *keys,
			const void *const *srcs,
			const struct kvt_block_meta *metas,
			const struct kvt_block_codecs *cd, struct kvt_stream *s);

/* 0 when no reload is pending (done or none), -EAGAIN while it runs,
 * KVT_ECUDA when it failed. Never blocks. */
int kvt_gpu_tier_reload_poll(struct kvt_tier *gpu);

/*
 * Waits for the pending reload (0 at once when none). results (may be
 * NULL) gets one status per item of that request: 0, or KVT_EFORMAT when a
 * quantized block did not check out against its geometry (its key is then
 * removed).
 * Returns 0 or the first failure (KVT_EFORMAT, KVT_ECUDA; after a CUDA
 * failure every key of the request is removed).
 */
int kvt_gpu_tier_reload_wait(struct kvt_tier *gpu, int *results);

/*
 * Spill: quantizes n raw blocks of the GPU tier with KIVI geometry geom on
 * the GPU (one launch, into a device staging area) and writes each encoded
 * block (kvt_kivi_geom_sizes' `encoded` bytes, K stream then V stream, the
 * bytes the CPU codec writes) to dsts[i], host addresses of pinned mapped
 * memory, with one gather launch; on stream s (NULL: the tier's). The tier
 * is unchanged (the caller deletes the blocks once they are stored
 * elsewhere). Completion as for a reload: kvt_gpu_tier_reload_poll/_wait
 * (no per-item results). Errors: -EINVAL (bad arguments, a key not stored
 * raw with the geometry's size, a destination not mapped), KVT_ENOTFOUND,
 * KVT_ECODEC, -ENOMEM, KVT_ECUDA, KVT_ENOGPU.
 */
int kvt_gpu_tier_spill(struct kvt_tier *gpu, size_t n,
		       const struct kvt_block_key *keys, void *const *dsts,
		       const struct kvt_kivi_geom *geom, struct kvt_stream *s);

/*
 * Stores n new blocks whose bytes the caller writes on the GPU (the
 * store's append_device assembles them there with one gather): reserves
 * an extent of metas[i].len bytes for keys[i], records metas[i] and gives
 * its device address in addrs[i]. The tier does not know when the bytes
 * arrive: the caller orders its writes before any use of the blocks (the
 * same stream, or a sync) and deletes them if the writes fail. All or
 * nothing; errors (tier unchanged): -EINVAL, -EEXIST (a key is stored
 * already, or given twice), KVT_ENOSPACE, -ENOMEM, KVT_ENOGPU.
 */
int kvt_gpu_tier_alloc(struct kvt_tier *gpu, size_t n,
		       const struct kvt_block_key *keys,
		       const struct kvt_block_meta *metas, void **addrs);

#ifdef __cplusplus
}
#endif

#endif
