/* test_store_disk.c - the store with a disk tier: restart, demotion to disk
 * under a small host budget, promotion on read, drop. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_util.h"

static char dir[512];
static int seq;

static struct kvt_store *open_store(uint64_t host_bytes, int fresh)
{
	return su_open_disk(dir, sizeof dir, "store-disk", &seq, host_bytes, fresh);
}

static struct kvt_cache_config config(int kivi)
{
	struct kvt_cache_config c;
	kvt_cache_config_init(&c);
	c.shape = (struct kvt_shape){2, 2, 64, 16, KVT_DTYPE_F16};
	if (kivi)
		kvt_codec_params_init(&c.cold, KVT_CODEC_KIVI);
	c.recent_tokens = 64;
	return c;
}

static void append_all(struct kvt_cache *c, const struct kvt_shape *s,
		       uint32_t total)
{
	uint16_t *k = tv_alloc(s, 37), *v = tv_alloc(s, 37);
	for (uint32_t l = 0; l < s->n_layers; l++)
		for (uint32_t t = 0; t < total; t += 37) {
			uint32_t n = total - t < 37 ? total - t : 37;
			tv_fill(s, l, t, n, k, v);
			cr_assert_eq(kvt_cache_append(c, l, n, k, v), 0);
		}
	free(k), free(v);
}

static void read_layer(struct kvt_cache *c, const struct kvt_shape *s,
		       uint32_t l, uint32_t n, uint16_t *k, uint16_t *v)
{
	(void)s;
	cr_assert_eq(kvt_cache_read(c, l, 0, n, k, v), 0);
}

Test(store_disk, restart_returns_every_token_bit_exact)
{
	struct kvt_cache_config cfg = config(1);
	const struct kvt_shape *s = &cfg.shape;
	const uint32_t total = 333;
	struct kvt_store *st = open_store(64 << 20, 1);
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, "doc", &cfg, &c), 0);
	append_all(c, s, total);
	uint16_t *k0 = tv_alloc(s, total), *v0 = tv_alloc(s, total);
	uint16_t *k1 = tv_alloc(s, total), *v1 = tv_alloc(s, total);
	read_layer(c, s, 1, total, k0, v0);
	kvt_cache_close(c);
	kvt_store_close(st);

	st = open_store(64 << 20, 0);
	cr_assert_eq(kvt_cache_open(st, "doc", &c), 0);
	struct kvt_cache_info info;
	cr_assert_eq(kvt_cache_get_info(c, &info), 0);
	cr_assert_eq(info.n_tokens, total);
	cr_assert_eq(info.config.cold.id, KVT_CODEC_KIVI);
	read_layer(c, s, 1, total, k1, v1);
	size_t bytes = (size_t)2 * total * 64 * 2;
	cr_assert_eq(memcmp(k0, k1, bytes), 0);
	cr_assert_eq(memcmp(v0, v1, bytes), 0);
	/* Appending continues where it stopped (the tail came back). */
	uint16_t *k = tv_alloc(s, 10), *v = tv_alloc(s, 10);
	tv_fill(s, 0, total, 10, k, v);
	cr_assert_eq(kvt_cache_append(c, 0, 10, k, v), 0);
	uint16_t *rk = tv_alloc(s, 20), *rv = tv_alloc(s, 20);
	cr_assert_eq(kvt_cache_read(c, 0, total - 10, 20, rk, rv), 0);
	uint16_t *ek = tv_alloc(s, 20), *ev = tv_alloc(s, 20);
	tv_fill(s, 0, total - 10, 20, ek, ev);
	cr_assert_eq(memcmp(rk, ek, (size_t)2 * 20 * 64 * 2), 0);
	free(k), free(v), free(rk), free(rv), free(ek), free(ev);
	free(k0), free(v0), free(k1), free(v1);
	kvt_cache_close(c);
	cr_assert_eq(kvt_cache_drop(st, "doc"), 0);
	kvt_store_close(st);
	st = open_store(64 << 20, 0);
	cr_assert_eq(kvt_cache_open(st, "doc", &c), KVT_ENOTFOUND);
	struct kvt_stats stats;
	kvt_store_stats(st, &stats);
	cr_assert_eq(stats.n_blocks, 0);
	kvt_store_close(st);
}

Test(store_disk, small_host_budget_demotes_to_disk_and_promotes_back)
{
	struct kvt_cache_config cfg = config(0);
	const struct kvt_shape *s = &cfg.shape;
	size_t bb = kvt_block_bytes(s);
	const uint32_t total = 64 * 16; /* 64 blocks per layer */
	struct kvt_store *st = open_store(16 * bb, 1);
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, "big", &cfg, &c), 0);
	append_all(c, s, total);
	struct kvt_stats a;
	kvt_store_stats(st, &a);
	cr_assert_gt(a.demotions, 0);
	cr_assert_leq(a.tier[KVT_TIER_HOST].used_bytes, 16 * bb);
	cr_assert_gt(a.tier[KVT_TIER_DISK].n_blocks, 0);
	cr_assert_eq(a.n_blocks, 2 * 64);
	uint16_t *k = tv_alloc(s, total), *v = tv_alloc(s, total);
	uint16_t *ek = tv_alloc(s, total), *ev = tv_alloc(s, total);
	for (uint32_t l = 0; l < 2; l++) {
		read_layer(c, s, l, total, k, v);
		tv_fill(s, l, 0, total, ek, ev);
		cr_assert_eq(memcmp(k, ek, (size_t)2 * total * 128), 0);
		cr_assert_eq(memcmp(v, ev, (size_t)2 * total * 128), 0);
	}
	struct kvt_stats b;
	kvt_store_stats(st, &b);
	cr_assert_gt(b.promotions, 0);
	cr_assert_leq(b.tier[KVT_TIER_HOST].used_bytes, 16 * bb);
	free(k), free(v), free(ek), free(ev);
	kvt_cache_close(c);
	kvt_store_close(st);
}
