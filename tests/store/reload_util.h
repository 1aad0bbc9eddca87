/* reload_util.h - helpers of the kvt_cache_reload tests: stores, caches
 * of each cold codec, and the check that every reloaded block equals
 * kvt_cache_read_block's output. */
#ifndef KVTIER_TESTS_RELOAD_UTIL_H
#define KVTIER_TESTS_RELOAD_UTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_util.h"

/* Opens a store; with_disk: a fresh data directory under KVT_TEST_TMP;
 * gpu_recent as kvt_store_config (ru_open: off, so the GPU tier holds only
 * reloaded blocks). */
static inline struct kvt_store *ru_open_recent(uint64_t host_bytes,
					       uint64_t gpu_bytes, int with_disk,
					       int gpu_recent)
{
	static int seq;
	static char dir[512];
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.host_bytes = host_bytes;
	cfg.gpu_bytes = gpu_bytes;
	cfg.gpu_recent = gpu_recent;
	if (with_disk) {
		const char *t = getenv("KVT_TEST_TMP");
		mkdir(t ? t : "/tmp", 0755);
		snprintf(dir, sizeof dir, "%s/reload-%d-%d", t ? t : "/tmp",
			 getpid(), seq++);
		cfg.data_dir = dir;
	}
	int rc = kvt_store_open(&cfg, &st);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	return st;
}

static inline struct kvt_store *ru_open(uint64_t host_bytes, uint64_t gpu_bytes,
					int with_disk)
{
	return ru_open_recent(host_bytes, gpu_bytes, with_disk, 0);
}

/* 2 layers, 2 kv heads, head_dim 64, 16-token fp16 blocks (8 KiB raw),
 * cold codec `codec` for blocks older than `recent` tokens. */
static inline struct kvt_cache_config ru_config(enum kvt_codec_id codec,
						uint32_t recent)
{
	struct kvt_cache_config c;
	kvt_cache_config_init(&c);
	c.shape = (struct kvt_shape){2, 2, 64, 16, KVT_DTYPE_F16};
	if (codec != KVT_CODEC_RAW)
		kvt_codec_params_init(&c.cold, codec);
	c.recent_tokens = recent;
	return c;
}

static inline void ru_append(struct kvt_cache *c, const struct kvt_shape *s,
			     uint64_t first, uint32_t total)
{
	uint16_t *k = tv_alloc(s, 37), *v = tv_alloc(s, 37);
	for (uint32_t l = 0; l < s->n_layers; l++)
		for (uint32_t t = 0; t < total; t += 37) {
			uint32_t n = total - t < 37 ? total - t : 37;
			tv_fill(s, l, first + t, n, k, v);
			cr_assert_eq(kvt_cache_append(c, l, n, k, v), 0);
		}
	free(k), free(v);
}

static inline struct kvt_cache *ru_cache(struct kvt_store *st, const char *name,
					 enum kvt_codec_id codec, uint32_t recent,
					 uint32_t tokens)
{
	struct kvt_cache_config cfg = ru_config(codec, recent);
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, name, &cfg, &c), 0);
	ru_append(c, &cfg.shape, 0, tokens);
	return c;
}

/* Reads n bytes at a GPU tier address; a test of the real device defines
 * it to copy from the device before including this header. */
#ifndef RU_DEVICE_READ
#define RU_DEVICE_READ(dst, src, n) memcpy((dst), (src), (n))
#endif

/* The bytes of a reloaded block, wherever it is. */
static inline void ru_read(void *dst, const struct kvt_reload_block *b)
{
	if (b->tier == KVT_TIER_GPU)
		RU_DEVICE_READ(dst, b->addr, b->bytes);
	else
		memcpy(dst, b->addr, b->bytes);
}

/* Every entry of a finished reload equals kvt_cache_read_block (bytes and
 * valid tokens); a full block is on tier full_tier, the tail on the host. */
static inline void ru_check(struct kvt_cache *c, uint32_t layer,
			    const struct kvt_reload_block *b, size_t n,
			    enum kvt_tier_kind full_tier)
{
	struct kvt_cache_info info;
	uint64_t nt;
	cr_assert_eq(kvt_cache_get_info(c, &info), 0);
	cr_assert_eq(kvt_cache_layer_tokens(c, layer, &nt), 0);
	size_t bb = kvt_block_bytes(&info.config.shape);
	uint64_t full = nt / info.config.shape.block_tokens;
	uint8_t *want = malloc(bb), *got = malloc(bb);
	for (size_t i = 0; i < n; i++) {
		uint32_t valid;
		cr_assert_eq(b[i].status, 0, "block %u: %s", b[i].block,
			     kvt_strerror(b[i].status));
		cr_assert_eq(b[i].bytes, bb);
		cr_assert_eq(b[i].tier, b[i].block < full ? full_tier : KVT_TIER_HOST,
			     "block %u on tier %d", b[i].block, b[i].tier);
		cr_assert_eq(kvt_cache_read_block(c, layer, b[i].block, want, bb,
						  &valid), 0);
		cr_assert_eq(b[i].n_tokens, valid);
		cr_assert_not_null(b[i].addr);
		ru_read(got, &b[i]);
		cr_assert_eq(memcmp(got, want, bb), 0, "block %u differs",
			     b[i].block);
	}
	free(want);
	free(got);
}

#endif
