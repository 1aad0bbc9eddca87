/*
 * test_store_reload_gpu.c - kvt_cache_reload with a GPU tier. Built twice:
 * test_store_reload_gpu (the real kernels; skipped without a device) and
 * test_store_reload_gpu_fake (the store and its tiers built against
 * kvt_kernels_fake: "device" memory is host memory, kernels are the CPU
 * emulation of their bodies), so it runs without a GPU: raw, KIVI and ZipCache blocks land in the GPU tier equal
 * to kvt_cache_read_block; host copies a pending GPU request reads are not
 * demoted; the GPU budget evicts the oldest unpinned copies; a corrupt
 * block fails alone; a block replaced while pinned keeps its old copy
 * until release; the recent window stays there. The fake checks the
 * store's bookkeeping, not the device.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "store/gpu_test_util.h"

#include "gpu_tier.h"
#include "store/reload_util.h"
#include "store_internal.h"

#define BB 8192u /* raw block bytes of ru_config, a multiple of 256 */

static struct block_rec *rec_of(struct kvt_store *st, struct kvt_cache *c,
				uint32_t layer, uint32_t block)
{
	struct kvt_block_key k = {c->rec->id, layer, block};
	struct block_rec *b = kvt_block_rec_locked(st, &k, NULL);
	cr_assert_not_null(b);
	return b;
}

static struct kvt_reload *reload(struct kvt_cache *c, uint32_t layer,
				 const uint32_t *blocks, size_t n,
				 struct kvt_stream *s)
{
	struct kvt_reload *r;
	int rc = kvt_cache_reload(c, layer, blocks, n, s, &r);
	cr_assert_eq(rc, 0, "reload: %s", kvt_strerror(rc));
	return r;
}

static const struct kvt_reload_block *wait_ok(struct kvt_reload *r, size_t n)
{
	const struct kvt_reload_block *b;
	size_t got;
	int rc = kvt_reload_wait(r, &b, &got);
	cr_assert_eq(rc, 0, "wait: %s", kvt_strerror(rc));
	cr_assert_eq(got, n);
	return b;
}

static struct kvt_tier_usage gpu_usage(struct kvt_store *st)
{
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(st, &s), 0);
	cr_assert(s.tier[KVT_TIER_GPU].present);
	return s.tier[KVT_TIER_GPU];
}

Test(reload_gpu, raw_kivi_and_zipcache_blocks_decode_into_the_gpu_tier)
{
	need_gpu();
	const enum kvt_codec_id codecs[] = {KVT_CODEC_RAW, KVT_CODEC_KIVI,
					    KVT_CODEC_ZIPCACHE};
	const uint32_t blocks[] = {5, 0, 6, 2, 3};
	struct kvt_store *st = ru_open(64 << 20, 4 << 20, 0);
	struct kvt_tier_usage u = gpu_usage(st);
	cr_assert_eq(u.capacity, 4 << 20);
	cr_assert_eq(u.n_blocks, 0);
	struct kvt_stream *s;
	cr_assert_eq(kvt_stream_create(&s), 0);
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof name, "c%d", i);
		/* 100 tokens: blocks 0-3 cold, 4-5 raw, 6 the 4-token tail. */
		struct kvt_cache *c = ru_cache(st, name, codecs[i], 32, 100);
		struct kvt_reload *r = reload(c, 1, blocks, 5, i == 1 ? s : NULL);
		cr_assert_eq(kvt_reload_poll(r), 0);
		const struct kvt_reload_block *b = wait_ok(r, 5);
		ru_check(c, 1, b, 5, KVT_TIER_GPU);
		u = gpu_usage(st);
		cr_assert_eq(u.n_blocks, 4 * (uint64_t)(i + 1));
		cr_assert_eq(u.used_bytes, 4 * (uint64_t)(i + 1) * BB);
		kvt_reload_release(r);
		/* Again: the GPU copies are reused, nothing new is stored. */
		r = reload(c, 1, blocks, 5, NULL);
		ru_check(c, 1, wait_ok(r, 5), 5, KVT_TIER_GPU);
		cr_assert_eq(gpu_usage(st).n_blocks, 4 * (uint64_t)(i + 1));
		kvt_reload_release(r);
		kvt_cache_close(c);
	}
	kvt_stream_destroy(s);
	kvt_store_close(st);
}

Test(reload_gpu, pinned_host_blocks_survive_demotion)
{
	need_gpu();
	/* Host room for about 8 blocks, a disk tier to demote to. */
	struct kvt_store *st = ru_open(64 << 10, 4 << 20, 1);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_RAW, 1024, 8 * 16);
	const uint32_t blocks[] = {4, 5, 6};
	for (int i = 0; i < 3; i++)
		cr_assert(rec_of(st, c, 1, blocks[i])->where & BLOCK_IN_HOST);
	struct kvt_stats s0, s1;
	cr_assert_eq(kvt_store_stats(st, &s0), 0);
	struct kvt_reload *r = reload(c, 1, blocks, 3, NULL);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rec_of(st, c, 1, blocks[i])->host_pins, 1);
	/* Pressure before the request is waited for: 40 more blocks. */
	struct kvt_cache *o = ru_cache(st, "other", KVT_CODEC_RAW, 1024, 20 * 16);
	cr_assert_eq(kvt_store_stats(st, &s1), 0);
	cr_assert_gt(s1.demotions, s0.demotions + 30);
	for (int i = 0; i < 3; i++)
		cr_assert(rec_of(st, c, 1, blocks[i])->where & BLOCK_IN_HOST,
			  "pinned block %u was demoted", blocks[i]);
	cr_assert_eq(rec_of(st, c, 1, 7)->where & BLOCK_IN_HOST, 0);
	ru_check(c, 1, wait_ok(r, 3), 3, KVT_TIER_GPU);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rec_of(st, c, 1, blocks[i])->host_pins, 0);
	/* Unpinned, they go like the others (the GPU copies stay). */
	ru_append(o, &o->rec->cfg.shape, 20 * 16, 20 * 16);
	for (int i = 0; i < 3; i++) {
		struct block_rec *b = rec_of(st, c, 1, blocks[i]);
		cr_assert_eq(b->where & BLOCK_IN_HOST, 0);
		cr_assert(b->where & BLOCK_ON_GPU);
	}
	ru_check(c, 1, wait_ok(r, 3), 3, KVT_TIER_GPU);
	kvt_reload_release(r);
	kvt_cache_close(o);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload_gpu, a_full_gpu_tier_evicts_the_oldest_unpinned_blocks)
{
	need_gpu();
	struct kvt_store *st = ru_open(64 << 20, 4 * BB, 0); /* 4 blocks */
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_RAW, 1024, 10 * 16);
	const uint32_t a[] = {0, 1, 2}, b2[] = {3, 4}, all[] = {0, 1, 2, 3, 4};
	struct kvt_reload *r = reload(c, 0, a, 3, NULL);
	wait_ok(r, 3);
	kvt_reload_release(r);
	r = reload(c, 0, b2, 2, NULL); /* one slot free: block 0 goes */
	ru_check(c, 0, wait_ok(r, 2), 2, KVT_TIER_GPU);
	kvt_reload_release(r);
	struct kvt_tier_usage u = gpu_usage(st);
	cr_assert_eq(u.n_blocks, 4);
	cr_assert_eq(u.used_bytes, 4 * BB);
	cr_assert_eq(rec_of(st, c, 0, 0)->where & BLOCK_ON_GPU, 0);
	for (uint32_t i = 1; i < 5; i++)
		cr_assert(rec_of(st, c, 0, i)->where & BLOCK_ON_GPU);
	/* More than the budget alone: refused, nothing changed. */
	struct kvt_reload *x = NULL;
	cr_assert_eq(kvt_cache_reload(c, 0, all, 5, NULL, &x), KVT_ENOSPACE);
	cr_assert_null(x);
	cr_assert_eq(gpu_usage(st).n_blocks, 4);
	cr_assert(rec_of(st, c, 0, 1)->where & BLOCK_ON_GPU);
	/* Pinned blocks are not evicted: 2 held + 3 new > 4. */
	const uint32_t held[] = {5, 6}, more[] = {7, 8, 9};
	struct kvt_reload *h = reload(c, 0, held, 2, NULL);
	const struct kvt_reload_block *hb = wait_ok(h, 2);
	cr_assert_eq(kvt_cache_reload(c, 0, more, 3, NULL, &x), KVT_ENOSPACE);
	ru_check(c, 0, hb, 2, KVT_TIER_GPU);
	cr_assert_eq(rec_of(st, c, 0, 5)->gpu_pins, 1);
	kvt_reload_release(h);
	r = reload(c, 0, more, 3, NULL);
	ru_check(c, 0, wait_ok(r, 3), 3, KVT_TIER_GPU);
	kvt_reload_release(r);
	cr_assert_eq(gpu_usage(st).n_blocks, 4);
	/* Evicted blocks still read back from the host. */
	uint8_t *raw = malloc(BB);
	for (uint32_t i = 0; i < 10; i++)
		cr_assert_eq(kvt_cache_read_block(c, 0, i, raw, BB, NULL), 0);
	free(raw);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload_gpu, a_corrupt_block_fails_alone)
{
	need_gpu();
	struct kvt_store *st = ru_open(64 << 20, 4 << 20, 0);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_KIVI, 32, 100);
	struct kvt_tier *host = st->tier[KVT_TIER_HOST];
	struct kvt_block_key k = {c->rec->id, 0, 1};
	struct kvt_block_loc loc;
	cr_assert_eq(host->ops->locate(host, &k, &loc), 0);
	((uint8_t *)loc.ptr)[0] ^= 0xff; /* the K stream's magic */
	const uint32_t blocks[] = {0, 1, 2};
	struct kvt_reload *r = reload(c, 0, blocks, 3, NULL);
	cr_assert_eq(kvt_reload_poll(r), KVT_EFORMAT);
	const struct kvt_reload_block *b;
	size_t n;
	cr_assert_eq(kvt_reload_wait(r, &b, &n), KVT_EFORMAT);
	cr_assert_eq(n, 3);
	cr_assert_eq(b[1].status, KVT_EFORMAT);
	cr_assert_null(b[1].addr);
	ru_check(c, 0, b, 1, KVT_TIER_GPU);
	ru_check(c, 0, b + 2, 1, KVT_TIER_GPU);
	cr_assert_eq(gpu_usage(st).n_blocks, 2);
	cr_assert_eq(rec_of(st, c, 0, 1)->where & BLOCK_ON_GPU, 0);
	cr_assert_eq(rec_of(st, c, 0, 1)->host_pins, 0);
	kvt_reload_release(r);
	uint8_t *raw = malloc(BB);
	cr_assert_eq(kvt_cache_read_block(c, 0, 1, raw, BB, NULL), KVT_ECORRUPT);
	free(raw);
	/* The rest of the store is fine: the good blocks are reused. */
	const uint32_t good[] = {0, 2, 3};
	r = reload(c, 0, good, 3, NULL);
	ru_check(c, 0, wait_ok(r, 3), 3, KVT_TIER_GPU);
	kvt_reload_release(r);
	cr_assert_eq(gpu_usage(st).n_blocks, 3);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload_gpu, a_block_replaced_while_pinned_keeps_the_old_copy)
{
	need_gpu();
	struct kvt_store *st = ru_open(64 << 20, 4 << 20, 0);
	/* 48 tokens, 32 recent: block 0 cold, blocks 1 and 2 raw. */
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_KIVI, 32, 48);
	const uint32_t blocks[] = {1, 2};
	struct kvt_reload *r = reload(c, 0, blocks, 2, NULL);
	const struct kvt_reload_block *b = wait_ok(r, 2);
	ru_check(c, 0, b, 2, KVT_TIER_GPU);
	uint8_t *old = malloc(2 * BB);
	uint8_t *now = malloc(BB);
	ru_read(old, &b[0]);
	ru_read(old + BB, &b[1]);
	/* 32 more tokens: blocks 1 and 2 leave the window, re-encoded. */
	ru_append(c, &c->rec->cfg.shape, 48, 32);
	cr_assert_eq(rec_of(st, c, 0, 1)->meta.codec, KVT_CODEC_KIVI);
	ru_read(now, &b[0]);
	cr_assert_eq(memcmp(now, old, BB), 0);
	ru_read(now, &b[1]);
	cr_assert_eq(memcmp(now, old + BB, BB), 0);
	free(now);
	cr_assert_eq(gpu_usage(st).n_blocks, 2); /* kept for the reload */
	kvt_reload_release(r);
	cr_assert_eq(gpu_usage(st).n_blocks, 0);
	r = reload(c, 0, blocks, 2, NULL); /* now decoded from KIVI */
	ru_check(c, 0, wait_ok(r, 2), 2, KVT_TIER_GPU);
	kvt_reload_release(r);
	free(old);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload_gpu, a_block_replaced_before_the_wait_is_read_first)
{
	need_gpu();
	struct kvt_store *st = ru_open(64 << 20, 4 << 20, 0);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_KIVI, 32, 48);
	uint8_t *old = malloc(2 * BB);
	cr_assert_eq(kvt_cache_read_block(c, 0, 1, old, BB, NULL), 0);
	cr_assert_eq(kvt_cache_read_block(c, 0, 2, old + BB, BB, NULL), 0);
	const uint32_t blocks[] = {1, 2};
	struct kvt_reload *r = reload(c, 0, blocks, 2, NULL);
	/* Re-encoding overwrites the host copies the request reads: the
	 * store completes the request first. */
	ru_append(c, &c->rec->cfg.shape, 48, 32);
	cr_assert_eq(rec_of(st, c, 0, 1)->host_pins, 0);
	const struct kvt_reload_block *b = wait_ok(r, 2);
	uint8_t *now = malloc(BB);
	ru_read(now, &b[0]);
	cr_assert_eq(memcmp(now, old, BB), 0);
	ru_read(now, &b[1]);
	cr_assert_eq(memcmp(now, old + BB, BB), 0);
	free(now);
	kvt_reload_release(r);
	free(old);
	kvt_cache_close(c);
	kvt_store_close(st);
}

static int on_gpu(struct kvt_store *st, struct kvt_cache *c, uint32_t layer,
		  uint32_t block)
{
	return (rec_of(st, c, layer, block)->where & BLOCK_ON_GPU) != 0;
}

Test(reload_gpu, the_recent_window_is_kept_on_the_gpu)
{
	need_gpu();
	struct kvt_store *st = ru_open_recent(64 << 20, 4 << 20, 0, 1);
	/* 100 tokens, 32 recent: blocks 4 and 5 of each layer are the
	 * window; 0-3 are cold and were never there. */
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_KIVI, 32, 100);
	cr_assert_eq(gpu_usage(st).n_blocks, 4);
	for (uint32_t l = 0; l < 2; l++)
		for (uint32_t b = 0; b < 6; b++)
			cr_assert_eq(on_gpu(st, c, l, b), b >= 4, "layer %u block %u", l, b);
	cr_assert_eq(rec_of(st, c, 1, 4)->gpu_pins, 1);
	/* A reload of the window needs no transfer. */
	const uint32_t win[] = {4, 5}, cold[] = {0, 4};
	struct kvt_reload *r = reload(c, 1, win, 2, NULL);
	cr_assert_eq(rec_of(st, c, 1, 4)->host_pins, 0);
	ru_check(c, 1, wait_ok(r, 2), 2, KVT_TIER_GPU);
	kvt_reload_release(r);
	r = reload(c, 1, cold, 2, NULL);
	ru_check(c, 1, wait_ok(r, 2), 2, KVT_TIER_GPU);
	kvt_reload_release(r);
	cr_assert_eq(gpu_usage(st).n_blocks, 5);
	/* 32 more tokens: the window moves to blocks 6 and 7. */
	ru_append(c, &c->rec->cfg.shape, 100, 32);
	for (uint32_t l = 0; l < 2; l++)
		for (uint32_t b = 4; b < 8; b++)
			cr_assert_eq(on_gpu(st, c, l, b), b >= 6, "layer %u block %u", l, b);
	cr_assert(on_gpu(st, c, 1, 0)); /* the reloaded cold block stays */
	cr_assert_eq(gpu_usage(st).n_blocks, 5);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(reload_gpu, raw_blocks_leaving_the_window_become_evictable)
{
	need_gpu();
	/* Room for 4 blocks; a raw cache whose window is 1 block a layer. */
	struct kvt_store *st = ru_open_recent(64 << 20, 4 * BB, 0, 1);
	struct kvt_cache *c = ru_cache(st, "doc", KVT_CODEC_RAW, 16, 10 * 16);
	cr_assert(on_gpu(st, c, 0, 9) && on_gpu(st, c, 1, 9));
	cr_assert_eq(rec_of(st, c, 0, 9)->gpu_pins, 1);
	/* Full: the windows plus the newest blocks that left them, which
	 * pushed the older ones out. */
	cr_assert_eq(gpu_usage(st).n_blocks, 4);
	cr_assert(on_gpu(st, c, 1, 8) && !on_gpu(st, c, 0, 8));
	cr_assert_eq(rec_of(st, c, 1, 8)->gpu_pins, 0);
	/* Two blocks fit once the unpinned ones go; three do not. */
	const uint32_t two[] = {0, 1}, three[] = {0, 1, 2};
	struct kvt_reload *x = NULL;
	cr_assert_eq(kvt_cache_reload(c, 0, three, 3, NULL, &x), KVT_ENOSPACE);
	struct kvt_reload *r = reload(c, 0, two, 2, NULL);
	ru_check(c, 0, wait_ok(r, 2), 2, KVT_TIER_GPU);
	kvt_reload_release(r);
	cr_assert(on_gpu(st, c, 0, 9) && on_gpu(st, c, 1, 9));
	cr_assert(!on_gpu(st, c, 1, 8));
	kvt_cache_close(c);
	kvt_store_close(st);
}
