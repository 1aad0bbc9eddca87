/*
 * test_store_reload.c - kvt_cache_reload without a GPU tier: blocks come back as
 * raw blocks in host memory equal to kvt_cache_read_block (raw, KIVI,
 * ZipCache, the partial tail, blocks demoted to disk), the reload is done
 * at once, bad requests change nothing, a held reload keeps its cache.
 * tests/store/test_store_reload_gpu_fake.c covers the GPU tier.
 */
#include <errno.h>

#include "store/reload_util.h"
#include "store_locate.h"

static void reload_and_check(struct kvt_cache *c, uint32_t layer,
			     const uint32_t *blocks, size_t n)
{
	struct kvt_reload *r;
	const struct kvt_reload_block *b;
	size_t got;
	cr_assert_eq(kvt_cache_reload(c, layer, blocks, n, NULL, &r), 0);
	cr_assert_eq(kvt_reload_poll(r), 0);
	cr_assert_eq(kvt_reload_wait(r, &b, &got), 0);
	cr_assert_eq(got, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(b[i].block, blocks[i]);
	ru_check(c, layer, b, n, KVT_TIER_HOST);
	cr_assert_eq(kvt_reload_poll(r), 0); /* still done, still valid */
	kvt_reload_release(r);
}

Test(reload, without_gpu_targets_the_host_for_every_codec)
{
	const enum kvt_codec_id codecs[] = {KVT_CODEC_RAW, KVT_CODEC_KIVI,
					    KVT_CODEC_ZIPCACHE};
	const uint32_t blocks[] = {5, 0, 6, 2, 3};
	struct kvt_store *st = ru_open(64 << 20, 0, 0);
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof name, "c%d", i);
		/* 100 tokens: 6 full blocks (4 cold), a 4-token tail. */
		struct kvt_cache *c = ru_cache(st, name, codecs[i], 32, 100);
		reload_and_check(c, 1, blocks, 5);
		reload_and_check(c, 0, blocks + 2, 1); /* the tail alone */
		kvt_cache_close(c);
	}
	kvt_store_close(st);
}

Test(reload, gpu_budget_without_a_gpu_opens_without_a_gpu_tier)
{
	struct kvt_store *st = ru_open(64 << 20, 1 << 20, 0);
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(st, &s), 0);
	if (s.tier[KVT_TIER_GPU].present) {
		kvt_store_close(st);
		cr_skip_test("a GPU is present: the no-GPU path is not exercised here");
	}
	cr_assert_eq(s.tier[KVT_TIER_GPU].n_blocks, 0);
	cr_assert_eq(s.tier[KVT_TIER_GPU].used_bytes, 0);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_KIVI, 32, 80);
	const uint32_t blocks[] = {0, 1, 4};
	reload_and_check(c, 0, blocks, 3);
	cr_assert_eq(kvt_store_stats(st, &s), 0);
	cr_assert_eq(s.tier[KVT_TIER_GPU].present, 0);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload, bad_requests_change_nothing)
{
	struct kvt_store *st = ru_open(64 << 20, 0, 0);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_KIVI, 32, 100);
	struct kvt_reload *sentinel = (struct kvt_reload *)&st, *r = sentinel;
	struct kvt_stats before, after;
	const uint32_t ok[] = {1, 2}, past[] = {1, 7}, dup[] = {3, 1, 3};
	cr_assert_eq(kvt_store_stats(st, &before), 0);
	cr_assert_eq(kvt_cache_reload(c, 2, ok, 2, NULL, &r), -EINVAL);
	cr_assert_eq(kvt_cache_reload(c, 0, past, 2, NULL, &r), KVT_ENOTFOUND);
	cr_assert_eq(kvt_cache_reload(c, 0, dup, 3, NULL, &r), -EINVAL);
	cr_assert_eq(kvt_cache_reload(c, 0, ok, 0, NULL, &r), -EINVAL);
	cr_assert_eq(kvt_cache_reload(c, 0, NULL, 2, NULL, &r), -EINVAL);
	cr_assert_eq(kvt_cache_reload(c, 0, ok, 2, NULL, NULL), -EINVAL);
	cr_assert_eq(kvt_cache_reload(NULL, 0, ok, 2, NULL, &r), -EINVAL);
	cr_assert_eq(r, sentinel);
	cr_assert_eq(kvt_store_stats(st, &after), 0);
	cr_assert_eq(memcmp(&before, &after, sizeof before), 0);
	const struct kvt_reload_block *b;
	size_t n;
	cr_assert_eq(kvt_reload_poll(NULL), -EINVAL);
	cr_assert_eq(kvt_reload_wait(NULL, &b, &n), -EINVAL);
	kvt_reload_release(NULL);
	kvt_cache_close(c);
	/* Nothing was left holding the cache. */
	cr_assert_eq(kvt_cache_drop(st, "doc"), 0);
	kvt_store_close(st);
}

Test(reload, a_held_reload_keeps_its_cache)
{
	struct kvt_store *st = ru_open(64 << 20, 0, 0);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_RAW, 32, 40);
	const uint32_t blocks[] = {0, 2};
	struct kvt_reload *r;
	cr_assert_eq(kvt_cache_reload(c, 0, blocks, 2, NULL, &r), 0);
	kvt_cache_close(c);
	cr_assert_eq(kvt_cache_drop(st, "doc"), KVT_EBUSY);
	const struct kvt_reload_block *b;
	size_t n;
	cr_assert_eq(kvt_reload_wait(r, &b, &n), 0);
	cr_assert_eq(b[1].n_tokens, 8); /* the tail */
	kvt_reload_release(r);
	cr_assert_eq(kvt_cache_drop(st, "doc"), 0);
	kvt_store_close(st);
}

Test(reload, blocks_on_disk_come_back)
{
	/* Room for about 12 of the 8 KiB blocks: most go to disk. */
	struct kvt_store *st = ru_open(100 << 10, 0, 1);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_RAW, 32, 40 * 16);
	struct kvt_stats s0, s1;
	cr_assert_eq(kvt_store_flush(st), 0);
	cr_assert_eq(kvt_store_stats(st, &s0), 0);
	cr_assert_gt(s0.demotions, 0);
	const uint32_t blocks[] = {0, 1, 2, 3, 9, 17, 30, 39};
	reload_and_check(c, 0, blocks, 8);
	cr_assert_eq(kvt_store_stats(st, &s1), 0);
	cr_assert_gt(s1.promotions, s0.promotions);
	/* And with the cold codec, from disk. */
	struct kvt_cache *k = ru_cache(st, "kivi", KVT_CODEC_KIVI, 32, 30 * 16);
	reload_and_check(k, 1, blocks, 6);
	kvt_cache_close(k);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload, a_corrupt_block_fails_alone)
{
	struct kvt_store *st = ru_open(64 << 20, 0, 0);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_RAW, 32, 100);
	struct kvt_block_loc loc;
	struct kvt_block_meta m;
	cr_assert_eq(kvt_store_locate_block(c, 0, 2, &loc, &m), 0);
	((uint8_t *)loc.ptr)[100] ^= 0x40;
	const uint32_t blocks[] = {1, 2, 6};
	struct kvt_reload *r;
	const struct kvt_reload_block *b;
	size_t n;
	cr_assert_eq(kvt_cache_reload(c, 0, blocks, 3, NULL, &r), 0);
	cr_assert_eq(kvt_reload_poll(r), KVT_ECORRUPT);
	cr_assert_eq(kvt_reload_wait(r, &b, &n), KVT_ECORRUPT);
	cr_assert_eq(b[1].status, KVT_ECORRUPT);
	cr_assert_null(b[1].addr);
	ru_check(c, 0, b, 1, KVT_TIER_HOST);
	ru_check(c, 0, b + 2, 1, KVT_TIER_HOST);
	kvt_reload_release(r);
	kvt_cache_close(c);
	kvt_store_close(st);
}

/* A released reload's host memory serves the next one: reloads held at the
 * same time never share it, and one bigger than the kept buffer still gets
 * enough. */
Test(reload, host_memory_is_reused_but_never_shared)
{
	struct kvt_store *st = ru_open(64 << 20, 0, 0);
	struct kvt_cache *c = ru_cache(st, "c", KVT_CODEC_KIVI, 32, 100);
	const uint32_t a[] = {0, 1}, b[] = {2, 3, 4}, all[] = {5, 4, 3, 2, 1, 0};
	struct kvt_reload *ra, *rb;
	const struct kvt_reload_block *ba, *bb;
	size_t na, nb;
	reload_and_check(c, 0, all, 6); /* leaves a spare of 6 blocks */
	cr_assert_eq(kvt_cache_reload(c, 0, a, 2, NULL, &ra), 0);
	cr_assert_eq(kvt_cache_reload(c, 1, b, 3, NULL, &rb), 0);
	cr_assert_eq(kvt_reload_wait(ra, &ba, &na), 0);
	cr_assert_eq(kvt_reload_wait(rb, &bb, &nb), 0);
	ru_check(c, 0, ba, na, KVT_TIER_HOST);
	ru_check(c, 1, bb, nb, KVT_TIER_HOST);
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			cr_assert((const char *)ba[i].addr + ba[i].bytes <= (const char *)bb[j].addr ||
				  (const char *)bb[j].addr + bb[j].bytes <= (const char *)ba[i].addr,
				  "two held reloads share memory");
	kvt_reload_release(ra);
	kvt_reload_release(rb);
	reload_and_check(c, 1, all, 6);
	kvt_cache_close(c);
	kvt_store_close(st);
}
