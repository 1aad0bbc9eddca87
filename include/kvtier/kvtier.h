/*
 * kvtier.h - public API of kvtier, a tiered KV-cache store for LLM inference.
 *
 * Conventions (all functions unless stated otherwise):
 *  - Every function returns int: 0 on success, a negative code on failure.
 *    Codes are either -errno (e.g. -ENOMEM, -EINVAL, -EIO, -ENOSPC) or one of
 *    the KVT_E* codes below (all below -4095, so they never clash with errno).
 *    kvt_strerror() turns any of them into a message.
 *  - Results come back through out-parameters; on failure the out-parameters
 *    are left untouched unless documented otherwise.
 *  - Handles are opaque. Every *_open/_create has a matching *_close/_free,
 *    and passing NULL to a close/free function is a no-op.
 *  - A store and its caches may be used from several threads at once; the
 *    store serialises access internally. A single kvt_cache handle must not
 *    be closed while another thread still uses it.
 *
 * Data layout of K/V tensors exchanged with the store:
 *  - Token ranges are passed as [n_kv_heads][n_tokens][head_dim] arrays of
 *    the cache dtype (HND), K and V in separate buffers.
 *  - A raw block is one contiguous extent: K[head][token][dim] followed by
 *    V[head][token][dim], block_tokens tokens, in the cache dtype.
 *    Its size is kvt_block_bytes(shape).
 */
#ifndef KVTIER_KVTIER_H
#define KVTIER_KVTIER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KVT_VERSION_MAJOR 0
#define KVT_VERSION_MINOR 1
#define KVT_VERSION_PATCH 0

/* ---------------------------------------------------------------- errors */

enum kvt_error {
	KVT_OK = 0,
	KVT_ENOTFOUND = -5000, /* no such cache, block or token range */
	KVT_EEXIST = -5001,    /* a cache of that name already exists */
	KVT_ENOSPACE = -5002,  /* a tier's byte budget is exhausted, nowhere to spill */
	KVT_ECORRUPT = -5003,  /* checksum mismatch or inconsistent stored data */
	KVT_EFORMAT = -5004,   /* malformed input (file, header, payload) */
	KVT_EVERSION = -5005,  /* unsupported format or protocol version */
	KVT_ESHAPE = -5006,    /* tensor shape does not match the cache or file */
	KVT_ENOGPU = -5007,    /* built without CUDA, or no usable GPU */
	KVT_ECUDA = -5008,     /* a CUDA runtime call failed */
	KVT_EPROTO = -5009,    /* malformed or unexpected protocol frame */
	KVT_ETOOBIG = -5010,   /* a length exceeds a configured bound */
	KVT_ECLOSED = -5011,   /* the peer closed the connection */
	KVT_EBUSY = -5012,     /* the cache is open elsewhere (e.g. drop of an open cache) */
	KVT_ECODEC = -5013,    /* unsupported codec or codec parameters */
};

/*
 * Returns a static, NUL-terminated message for a code returned by any kvtier
 * function (KVT_E* or -errno). Never returns NULL; unknown codes get a
 * generic message. The string must not be freed.
 */
const char *kvt_strerror(int err);

/* ---------------------------------------------------------------- shapes */

enum kvt_dtype {
	KVT_DTYPE_F16 = 1,
	KVT_DTYPE_BF16 = 2,
	KVT_DTYPE_F32 = 3,
};

/* Size in bytes of one element of dtype; 0 for an invalid dtype. */
size_t kvt_dtype_size(enum kvt_dtype dtype);

/* Name of a dtype ("f16", "bf16", "f32"); "?" for an invalid one. */
const char *kvt_dtype_name(enum kvt_dtype dtype);

#define KVT_MAX_LAYERS 1024
#define KVT_MAX_KV_HEADS 256
#define KVT_MAX_HEAD_DIM 1024
#define KVT_MAX_BLOCK_TOKENS 1024

/* Model shape of a cache. */
struct kvt_shape {
	uint32_t n_layers;     /* 1 .. KVT_MAX_LAYERS */
	uint32_t n_kv_heads;   /* 1 .. KVT_MAX_KV_HEADS */
	uint32_t head_dim;     /* 1 .. KVT_MAX_HEAD_DIM */
	uint32_t block_tokens; /* 1 .. KVT_MAX_BLOCK_TOKENS, default 16 */
	enum kvt_dtype dtype;  /* element type of K and V */
};

/* Returns 0 if every field is in range, -EINVAL otherwise. */
int kvt_shape_check(const struct kvt_shape *shape);

/* Bytes of one raw block (K and V): 2 * heads * block_tokens * head_dim * elem. */
size_t kvt_block_bytes(const struct kvt_shape *shape);

/* ---------------------------------------------------------------- codecs */

enum kvt_codec_id {
	KVT_CODEC_RAW = 0,      /* stored as is */
	KVT_CODEC_KIVI = 1,     /* KIVI asymmetric 2/4/8-bit quantization */
	KVT_CODEC_ZIPCACHE = 2, /* ZipCache mixed precision with salient tokens */
};

/*
 * Parameters of a codec. Zero-initialise, then set what you need, or use
 * kvt_codec_params_init() for defaults.
 */
struct kvt_codec_params {
	enum kvt_codec_id id;
	uint8_t bits;         /* KIVI bits (2, 4, 8); ZipCache low bits (2, 4, 8) */
	uint8_t high_bits;    /* ZipCache bits of salient tokens (4, 8); else 0 */
	uint16_t group;       /* KIVI group size: tokens for keys, channels for values;
	                         default 32; must divide head_dim for values */
	uint32_t residual;    /* newest tokens kept at full precision (default 128);
	                         the store uses 0 per block and keeps its own window */
	float salient_ratio;  /* ZipCache: fraction of tokens at high_bits (0..1) */
	uint8_t zip_tokenwise; /* ZipCache: 1 = plain tokenwise quantization (no
	                          per-channel normalisers); 0 (default) =
	                          channel-separable. Not kept by the store, which
	                          always uses the default. */
	const float *saliency; /* ZipCache: optional per-token scores (n = tokens),
	                          e.g. from kvt_zipcache_saliency(); the
	                          round(salient_ratio * tokens) highest get
	                          high_bits (ties: lower index first; NaN lowest).
	                          NULL: the codec treats every token as low-bit.
	                          Only read during encode; never stored. */
};

/* Fills *p with defaults for codec id (KIVI: 2 bits, group 32, residual 128;
 * ZipCache: 2/4 bits, ratio 0.2). Returns -EINVAL for an unknown id. */
int kvt_codec_params_init(struct kvt_codec_params *p, enum kvt_codec_id id);

/* ---------------------------------------------------------------- store */

enum kvt_tier_kind {
	KVT_TIER_GPU = 0,
	KVT_TIER_HOST = 1,
	KVT_TIER_DISK = 2,
	KVT_TIER_COUNT = 3,
};

/* Name of a tier kind ("gpu", "host", "disk"). */
const char *kvt_tier_name(enum kvt_tier_kind kind);

struct kvt_store_config {
	const char *data_dir; /* directory of the disk tier; NULL: memory only.
	                         Copied during kvt_store_open. */
	uint64_t gpu_bytes;   /* GPU tier budget (blocks reloaded there with
	                         kvt_cache_reload); 0, a build without CUDA or
	                         no usable GPU: no GPU tier */
	uint64_t host_bytes;  /* host tier budget (default 1 GiB) */
	uint64_t disk_bytes;  /* disk tier budget; 0: limited by the file system */
	int zstd_level;       /* zstd level for blocks on disk, 0 = off (default) */
	int gpu_recent;       /* 1 (default): with a GPU tier, each cache's
	                         recent window (its newest recent_tokens, raw
	                         full blocks) is kept there too, pinned, so a
	                         reload finds it without a transfer; the GPU
	                         budget must then exceed the windows */
};

/* Fills *cfg with defaults (memory only, 1 GiB host budget, gpu_recent 1). */
void kvt_store_config_init(struct kvt_store_config *cfg);

struct kvt_store;

/*
 * Opens a store. With cfg->data_dir set, the disk tier is opened (created if
 * missing) and every cache and acknowledged block stored there before is
 * available again. On success *out owns the store; release it with
 * kvt_store_close(). Errors: -EINVAL (bad config), -ENOMEM, -errno from the
 * file system, KVT_ECORRUPT (unreadable index), KVT_EVERSION, KVT_EBUSY
 * (another store, e.g. a running kvtierd, has data_dir open: one process
 * at a time may use a data directory); with gpu_bytes, -ENOMEM or
 * KVT_ECUDA when a present GPU cannot hold the pool.
 */
int kvt_store_open(const struct kvt_store_config *cfg, struct kvt_store **out);

/*
 * Flushes every open cache (partial tail blocks included) to the most
 * durable tier, then releases the store. Caches still open are closed.
 * NULL is a no-op.
 */
void kvt_store_close(struct kvt_store *store);

/*
 * Makes everything appended so far durable (on the disk tier, when present).
 * Returns 0, or -errno / KVT_ENOSPACE when the data could not be written;
 * blocks written before are not affected.
 */
int kvt_store_flush(struct kvt_store *store);

#define KVT_NAME_MAX 255 /* bytes of a cache name, excluding the NUL */

struct kvt_cache_config {
	struct kvt_shape shape;
	struct kvt_codec_params cold; /* codec of blocks older than recent_tokens;
	                                 saliency must be NULL */
	uint32_t recent_tokens;       /* newest tokens kept raw (default 128) */
};

/* Fills *cfg with defaults: 16-token fp16 blocks, raw codec, 128 recent
 * tokens. The model dimensions are left 0 and must be set. */
void kvt_cache_config_init(struct kvt_cache_config *cfg);

struct kvt_cache;

/*
 * Creates the cache `name` (1..KVT_NAME_MAX bytes, no '/', no NUL) and opens
 * it. Errors: -EINVAL (bad name or config), KVT_EEXIST, KVT_ECODEC, -ENOMEM.
 * On success *out is a handle to close with kvt_cache_close().
 */
int kvt_cache_create(struct kvt_store *store, const char *name,
		     const struct kvt_cache_config *cfg, struct kvt_cache **out);

/* Opens an existing cache. Errors: KVT_ENOTFOUND, -ENOMEM. Several handles
 * to one cache may be open at once; they share its data. */
int kvt_cache_open(struct kvt_store *store, const char *name,
		   struct kvt_cache **out);

/* Closes a handle (NULL is a no-op). The cache's data stays in the store. */
void kvt_cache_close(struct kvt_cache *cache);

/* Deletes a cache and all its blocks. Errors: KVT_ENOTFOUND, KVT_EBUSY when
 * a handle to it is still open. */
int kvt_cache_drop(struct kvt_store *store, const char *name);

/*
 * Appends n_tokens tokens to layer `layer`. k and v are
 * [n_kv_heads][n_tokens][head_dim] arrays of the cache dtype; they are copied.
 * Full blocks go to the store; blocks older than recent_tokens are encoded
 * with the cold codec. Errors: -EINVAL (layer out of range, NULL buffers),
 * KVT_ENOSPACE (no tier can take the data: nothing of this call is stored),
 * -ENOMEM.
 */
int kvt_cache_append(struct kvt_cache *cache, uint32_t layer, uint32_t n_tokens,
		     const void *k, const void *v);

/*
 * Like kvt_cache_append, with one saliency score per token (n_tokens floats,
 * e.g. from kvt_zipcache_saliency(); NULL: none) for a cache whose cold
 * codec is ZipCache: when a block is encoded cold, the round(salient_ratio *
 * block_tokens) tokens of the block with the highest scores get high_bits.
 * Scores are kept, copied, only while their block is raw; they are not
 * stored, so a block whose tokens have no scores (appended with
 * kvt_cache_append, or raw across a restart) is encoded with every token at
 * low bits, and tokens without scores rank below those with. With another
 * cold codec the scores are ignored. Errors: as kvt_cache_append.
 */
int kvt_cache_append_scored(struct kvt_cache *cache, uint32_t layer,
			    uint32_t n_tokens, const void *k, const void *v,
			    const float *scores);

/*
 * Reads tokens [first, first + n_tokens) of layer `layer` into k and v
 * ([n_kv_heads][n_tokens][head_dim] of the cache dtype). Quantized blocks are
 * decoded. Errors: KVT_ENOTFOUND (range past the appended tokens),
 * KVT_ECORRUPT (a stored block failed its checksum), -EINVAL.
 */
int kvt_cache_read(struct kvt_cache *cache, uint32_t layer, uint64_t first,
		   uint32_t n_tokens, void *k, void *v);

/*
 * Reads block `block` of layer `layer` as a raw block (K then V, see top of
 * file) into dst, which must hold kvt_block_bytes() bytes. A partial tail
 * block reads with its missing tokens zeroed; *n_tokens (may be NULL) gets
 * the number of valid tokens. Errors: as kvt_cache_read, -ENOBUFS when
 * dst_len is too small.
 */
int kvt_cache_read_block(struct kvt_cache *cache, uint32_t layer,
			 uint64_t block, void *dst, size_t dst_len,
			 uint32_t *n_tokens);

/*
 * Makes blocks blocks[0..n) of layer `layer` resident on the fastest tier
 * that has room (the host tier today): blocks held only on disk are read
 * with batched reads and promoted, the others are marked recently used.
 * where[i] (may be NULL) gets the enum kvt_tier_kind holding block i
 * afterwards (KVT_TIER_HOST for the partial tail, held in memory).
 * Errors: KVT_ENOTFOUND (a block past the appended tokens: nothing is
 * read), KVT_ECORRUPT, -EIO, -EINVAL, -ENOMEM.
 */
int kvt_cache_prefetch(struct kvt_cache *cache, uint32_t layer,
		       const uint32_t *blocks, size_t n, uint8_t *where);

/* ---------------------------------------------------------------- reload */

/*
 * Asynchronous reload: make chosen blocks of one layer available as raw
 * blocks (K then V, see top of file) for an attention kernel, overlapping
 * the transfer with the caller's compute: kvt_cache_reload enqueues,
 * kvt_reload_poll / kvt_reload_wait tell when it is done and where each
 * block is, kvt_reload_release gives the blocks back to the store.
 *
 * With a GPU tier (kvt_store_config.gpu_bytes on a machine with a usable
 * GPU) full blocks are decoded into the GPU tier's pool: one batched
 * transfer from pinned host memory on the caller's stream, quantized blocks
 * decoded on the GPU, blocks already there reused without a transfer.
 * Without one, and for the partial tail block (held in host memory), blocks
 * are decoded on the CPU into host memory owned by the reload, before
 * kvt_cache_reload returns.
 */

/* A CUDA stream: a cudaStream_t cast to struct kvt_stream * (the type of
 * kernels/kvt_kernels.h); NULL stands for the GPU tier's own stream. */
struct kvt_stream;

/* An enqueued reload: opaque, from kvt_cache_reload. */
struct kvt_reload;

/* Where one reloaded block is, once the reload is done. */
struct kvt_reload_block {
	uint32_t block;    /* block index, as requested */
	int status;        /* 0, or why this block is not available:
	                      KVT_EFORMAT (a quantized block failed the GPU's
	                      header checks), KVT_ECORRUPT (checksum or decode
	                      failed on the CPU), KVT_ECUDA, -EIO */
	enum kvt_tier_kind tier; /* KVT_TIER_GPU: addr is a device address
	                      in the GPU tier's pool; KVT_TIER_HOST: a host
	                      address in memory owned by the reload */
	uint32_t n_tokens; /* valid tokens (fewer in the partial tail, whose
	                      missing tokens read as zeros) */
	const void *addr;  /* the raw block, `bytes` long; NULL on failure */
	size_t bytes;      /* kvt_block_bytes() of the cache */
};

/*
 * Enqueues the reload of blocks blocks[0..n) (distinct, n >= 1) of layer
 * `layer`. Blocks held only on disk are first read into the host tier with
 * batched reads (as kvt_cache_prefetch). With a GPU tier, the full blocks
 * not already there are then transferred and decoded by one GPU request on
 * `stream`; work the caller queues later on that stream sees them. When
 * the GPU tier is full, the least recently reloaded blocks no unreleased
 * reload uses are dropped from it (they stay on the host or disk).
 * On success *out owns the reload, which holds a reference to the cache
 * (kvt_cache_drop gives KVT_EBUSY until it is released) and pins its GPU
 * blocks, and the host blocks the GPU request reads until that request is
 * complete. Errors (nothing enqueued, no block pinned; blocks may have
 * been promoted from disk): -EINVAL (layer out of range, NULL pointers,
 * n == 0, a block given twice), KVT_ENOTFOUND (a block past the appended
 * tokens), KVT_ENOSPACE (the request, plus the GPU blocks that unreleased
 * reloads pin, needs more than the GPU tier's budget), -ENOMEM, KVT_ECUDA.
 * Failures of single blocks do not fail the call: see kvt_reload_wait.
 */
int kvt_cache_reload(struct kvt_cache *cache, uint32_t layer,
		     const uint32_t *blocks, size_t n, struct kvt_stream *stream,
		     struct kvt_reload **out);

/*
 * Never blocks. Returns -EAGAIN while the GPU transfer runs; once done, 0
 * when every block is available, else the first block failure (as
 * kvt_reload_wait). -EINVAL for NULL. A reload without GPU request is done
 * when kvt_cache_reload returns.
 */
int kvt_reload_poll(struct kvt_reload *r);

/*
 * Waits until the reload is done and points *blocks at its n entries (in
 * request order; *n gets n), owned by the reload and valid until
 * kvt_reload_release. The addresses in them stay valid, and the blocks
 * stay where they are, until then too: a GPU block is not evicted, and if
 * the store replaces a block meanwhile (a block of the recent window
 * re-encoded cold) the reload keeps reading the version it was given.
 * Returns 0 when every block is available, else the first block failure
 * (the other entries are still valid). -EINVAL for NULL arguments.
 */
int kvt_reload_wait(struct kvt_reload *r, const struct kvt_reload_block **blocks,
		    size_t *n);

/*
 * Gives the blocks back: their GPU copies may be evicted again, the host
 * memory of the reload is freed, and so is r. Waits for the GPU transfer
 * first when it still runs. Every reload must be released before
 * kvt_store_close. NULL is a no-op.
 */
void kvt_reload_release(struct kvt_reload *r);

/* ---------------------------------------------------------------- device append */

/*
 * Appends n_tokens tokens to layer `layer` from GPU memory: k_dev and v_dev
 * are device pointers (or mapped pinned host memory seen through its
 * device address) to [n_kv_heads][n_tokens][head_dim] arrays of the cache
 * dtype, the layout of kvt_cache_append. The result is the one
 * kvt_cache_append of the same bytes gives: kvt_cache_read and
 * kvt_cache_read_block return the same values, the tiers hold the same
 * blocks.
 *
 * Needs the store's GPU tier. Full blocks are assembled on the GPU
 * (gathers on `stream` into GPU tier slots); blocks of the recent window
 * stay there (with gpu_recent, as kvt_cache_append's window) and get a raw
 * host copy; blocks that are cold at the end of the call, and window
 * blocks of earlier calls leaving the window now that still have their
 * GPU copy, are quantized on the GPU when the cold codec is KIVI (the
 * bytes the CPU codec writes): only the encoded bytes cross to host
 * memory, one batch per chunk of blocks that fits the GPU tier beside its
 * pinned blocks (one chunk when the tier has room; unpinned GPU copies
 * are evicted to make it), so the tier needs room for at least one raw
 * block when a call makes a block cold. Raw cold blocks are copied out
 * raw. ZipCache cold blocks are copied out raw and encoded on the CPU
 * when they leave the window, without saliency scores (every token at
 * low bits, as kvt_cache_append without scores). Tokens that complete the
 * partial tail block or start a new one are copied to host memory and
 * appended there (a block they complete takes kvt_cache_append's path).
 * Window copies are skipped, as in kvt_cache_append, when they do not
 * fit. The encoded and raw host copies pass through pinned staging that
 * the store keeps, then are stored (and hashed) on the CPU.
 *
 * stream: the CUDA stream (a cudaStream_t, see kvt_cache_reload) whose
 * work writes k_dev/v_dev; the copies are ordered after it. NULL: the
 * legacy default stream (the caller then makes sure the buffers are
 * written). The call synchronises the stream (all work queued on it
 * before the call is complete when it returns) and returns once the data
 * is stored: the caller may then overwrite or free k_dev and v_dev. The
 * store does not keep the pointers.
 *
 * Errors (nothing of this call is stored, the cache is as before; GPU
 * copies the store may drop at any time, evicted to make room, excepted):
 * -EINVAL (layer out of range, NULL buffers), KVT_ENOGPU (the store has no
 * GPU tier: a build without CUDA, no usable device, gpu_bytes 0),
 * KVT_ENOSPACE (the GPU tier cannot hold one raw block to quantize a
 * KIVI-cold block in, or no host/disk tier can take the data), -ENOMEM,
 * KVT_ECUDA (a copy or kernel failed).
 */
int kvt_cache_append_device(struct kvt_cache *cache, uint32_t layer,
			    uint32_t n_tokens, const void *k_dev,
			    const void *v_dev, struct kvt_stream *stream);

/* ---------------------------------------------------------------- metadata */

#define KVT_META_KEY_MAX 63                 /* bytes of a metadata key */
#define KVT_META_MAX_BYTES (256ull << 20)   /* largest metadata blob */

/*
 * Stores a named blob of metadata with the cache (a retrieval index, for
 * example), replacing any blob of the same key. key: 1..KVT_META_KEY_MAX
 * printable bytes without '/'. The data is copied; len may be 0. With a
 * disk tier the blob is durable when this returns; it goes away with the
 * cache (kvt_cache_drop) and travels with it in snapshots.
 * Errors: -EINVAL (bad key, NULL data with len > 0), KVT_ETOOBIG (len >
 * KVT_META_MAX_BYTES), KVT_ENOSPACE, -ENOMEM, -errno. On error the previous
 * blob of that key, if any, is unchanged.
 */
int kvt_cache_meta_put(struct kvt_cache *cache, const char *key,
		       const void *data, size_t len);

/*
 * Reads the blob `key`. On success *data is a malloc'd copy of *len bytes
 * (never NULL, even when *len is 0) that the caller frees with free().
 * Errors: KVT_ENOTFOUND, KVT_ECORRUPT (the stored blob failed its checksum),
 * -EINVAL, -ENOMEM.
 */
int kvt_cache_meta_get(struct kvt_cache *cache, const char *key, void **data,
		       size_t *len);

/* Deletes the blob `key`. Errors: KVT_ENOTFOUND, -EINVAL, -errno. */
int kvt_cache_meta_del(struct kvt_cache *cache, const char *key);

/*
 * Lists the metadata keys of the cache, sorted. On success *keys is a
 * malloc'd array of *n entries (NULL when *n is 0) that the caller frees
 * with free(). Errors: -EINVAL, -ENOMEM.
 */
int kvt_cache_meta_list(struct kvt_cache *cache,
			char (**keys)[KVT_META_KEY_MAX + 1], size_t *n);

struct kvt_cache_info {
	char name[KVT_NAME_MAX + 1];
	uint64_t id;                 /* store-wide id, stable across restarts */
	struct kvt_cache_config config;
	uint64_t n_tokens;           /* tokens of layer 0 */
	uint64_t n_blocks;           /* stored blocks over all layers */
	uint64_t raw_bytes;          /* bytes the stored tokens take raw */
	uint64_t stored_bytes;       /* bytes they take in the tiers */
};

/* Fills *out with the cache's description and sizes. */
int kvt_cache_get_info(struct kvt_cache *cache, struct kvt_cache_info *out);

/* Number of tokens appended so far to one layer. */
int kvt_cache_layer_tokens(struct kvt_cache *cache, uint32_t layer,
			   uint64_t *n_tokens);

/*
 * Lists the caches of the store. On success *out is an array of *n entries
 * allocated with malloc (NULL when *n is 0); the caller frees it with free().
 */
int kvt_store_list(struct kvt_store *store, struct kvt_cache_info **out,
		   size_t *n);

struct kvt_tier_usage {
	int present;          /* 0 when the store has no such tier */
	uint64_t capacity;    /* budget in bytes (0: unlimited) */
	uint64_t used_bytes;  /* bytes held, slot or extent rounding included */
	uint64_t n_blocks;    /* blocks held */
};

struct kvt_stats {
	struct kvt_tier_usage tier[KVT_TIER_COUNT];
	uint64_t n_caches;
	uint64_t n_blocks;         /* stored blocks, all caches, all tiers */
	uint64_t raw_bytes;        /* bytes those blocks take raw */
	uint64_t stored_bytes;     /* bytes they take encoded */
	double compression_ratio;  /* raw_bytes / stored_bytes (1.0 when empty) */
	uint64_t demotions;        /* blocks moved to a slower tier */
	uint64_t promotions;       /* blocks moved to a faster tier */
};

/* Fills *out with current statistics. */
int kvt_store_stats(struct kvt_store *store, struct kvt_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* KVTIER_KVTIER_H */
