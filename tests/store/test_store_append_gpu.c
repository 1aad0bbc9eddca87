/*
 * test_store_append_gpu.c - kvt_cache_append_device. Built twice, like
 * test_store_reload_gpu: test_store_append_gpu (real kernels, skipped
 * without a device) and test_store_append_gpu_fake (the store built
 * against kvt_kernels_fake, so it runs without a GPU; it checks the
 * store's bookkeeping and the spill's bytes through the kernel emulation,
 * not the device). Every test appends the same K/V to two caches of two
 * stores of one configuration, one with kvt_cache_append from host memory,
 * one with kvt_cache_append_device from GPU memory, and compares them:
 * tokens, kvt_cache_read, kvt_cache_read_block, each block's stored
 * length, codec and checksum (so the host copies hold the same bytes) and
 * the stats of every tier. Failures leave the cache exactly as before.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "store/gpu_test_util.h"

#include "gpu_tier.h"
#include "store/reload_util.h"
#include "store_internal.h"

/* A twin pair: h appended from host memory, d from device memory. */
struct twin {
	struct kvt_store *hs, *ds;
	struct kvt_cache *h, *d;
	struct kvt_shape shape;
	struct kvt_stream *stream;
	uint64_t next[2]; /* next token of each layer */
};

static void twin_open(struct twin *t, uint64_t host_bytes, uint64_t gpu_bytes,
		      int disk, int recent_on_gpu, enum kvt_codec_id codec,
		      uint8_t bits, uint32_t recent)
{
	struct kvt_cache_config cfg = ru_config(codec, recent);
	if (codec == KVT_CODEC_KIVI)
		cfg.cold.bits = bits;
	memset(t, 0, sizeof *t);
	t->hs = ru_open_recent(host_bytes, gpu_bytes, disk, recent_on_gpu);
	t->ds = ru_open_recent(host_bytes, gpu_bytes, disk, recent_on_gpu);
	cr_assert_eq(kvt_cache_create(t->hs, "twin", &cfg, &t->h), 0);
	cr_assert_eq(kvt_cache_create(t->ds, "twin", &cfg, &t->d), 0);
	t->shape = cfg.shape;
	cr_assert_eq(kvt_stream_create(&t->stream), 0);
}

static void twin_close(struct twin *t)
{
	kvt_cache_close(t->h);
	kvt_cache_close(t->d);
	kvt_store_close(t->hs);
	kvt_store_close(t->ds);
	kvt_stream_destroy(t->stream);
}

/* The next n tokens of layer l to both caches; the device call's result
 * is returned (the host twin is appended only when it succeeded). */
static int twin_append(struct twin *t, uint32_t l, uint32_t n,
		       struct kvt_stream *s)
{
	const size_t len = (size_t)t->shape.n_kv_heads * n * t->shape.head_dim * 2;
	uint16_t *k = tv_alloc(&t->shape, n), *v = tv_alloc(&t->shape, n);
	void *kd, *vd;
	tv_fill(&t->shape, l, t->next[l], n, k, v);
	cr_assert_eq(kvt_gpu_malloc(len, &kd), 0);
	cr_assert_eq(kvt_gpu_malloc(len, &vd), 0);
	cr_assert_eq(kvt_gpu_copy_async(kd, k, len, NULL), 0);
	cr_assert_eq(kvt_gpu_copy_async(vd, v, len, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	int rc = kvt_cache_append_device(t->d, l, n, kd, vd, s);
	/* The buffers are the caller's again: scribble over them. */
	cr_assert_eq(kvt_gpu_memset_async(kd, 0x5a, len, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	if (rc == 0) {
		cr_assert_eq(kvt_cache_append(t->h, l, n, k, v), 0);
		t->next[l] += n;
	}
	kvt_gpu_free(kd);
	kvt_gpu_free(vd);
	free(k), free(v);
	return rc;
}

static void stats_eq(struct kvt_store *a, struct kvt_store *b, int first_tier)
{
	struct kvt_stats x, y;
	cr_assert_eq(kvt_store_stats(a, &x), 0);
	cr_assert_eq(kvt_store_stats(b, &y), 0);
	for (int i = first_tier; i < KVT_TIER_COUNT; i++) {
		cr_assert_eq(x.tier[i].present, y.tier[i].present);
		cr_assert_eq(x.tier[i].n_blocks, y.tier[i].n_blocks,
			     "%s tier: %llu blocks vs %llu", kvt_tier_name(i),
			     (unsigned long long)x.tier[i].n_blocks,
			     (unsigned long long)y.tier[i].n_blocks);
		cr_assert_eq(x.tier[i].used_bytes, y.tier[i].used_bytes,
			     "%s tier bytes", kvt_tier_name(i));
	}
	cr_assert_eq(x.n_blocks, y.n_blocks);
	cr_assert_eq(x.raw_bytes, y.raw_bytes);
	cr_assert_eq(x.stored_bytes, y.stored_bytes);
	/* Demotion counts may differ: the host path stores a cold block raw
	 * before re-encoding it, the device path stores it encoded. */
}

/* Everything the two caches hold is the same (the GPU tier's stats too
 * unless gpu_differs). */
static void twin_check_tiers(struct twin *t, int gpu_differs)
{
	const size_t bb = kvt_block_bytes(&t->shape);
	uint8_t *x = malloc(bb), *y = malloc(bb);
	for (uint32_t l = 0; l < t->shape.n_layers; l++) {
		uint64_t nh, nd;
		cr_assert_eq(kvt_cache_layer_tokens(t->h, l, &nh), 0);
		cr_assert_eq(kvt_cache_layer_tokens(t->d, l, &nd), 0);
		cr_assert_eq(nh, nd);
		cr_assert_eq(nh, t->next[l]);
		for (uint64_t b = 0; b * t->shape.block_tokens < nh; b++) {
			uint32_t vh, vd;
			cr_assert_eq(kvt_cache_read_block(t->h, l, b, x, bb, &vh), 0);
			cr_assert_eq(kvt_cache_read_block(t->d, l, b, y, bb, &vd), 0);
			cr_assert_eq(vh, vd);
			cr_assert_eq(memcmp(x, y, bb), 0, "layer %u block %llu differs",
				     l, (unsigned long long)b);
			struct kvt_block_key kh = {t->h->rec->id, l, (uint32_t)b};
			struct kvt_block_key kd = {t->d->rec->id, l, (uint32_t)b};
			struct kvt_block_meta mh, md;
			int rh = kvt_block_stat_locked(t->hs, &kh, &mh);
			int rd = kvt_block_stat_locked(t->ds, &kd, &md);
			cr_assert_eq(rh, rd);
			if (rh == 0) {
				cr_assert_eq(mh.codec, md.codec, "block %llu codec",
					     (unsigned long long)b);
				cr_assert_eq(mh.len, md.len);
				cr_assert_eq(mh.checksum, md.checksum,
					     "layer %u block %llu stored bytes differ", l,
					     (unsigned long long)b);
			}
		}
		size_t n = (size_t)t->shape.n_kv_heads * nh * t->shape.head_dim * 2;
		uint8_t *a = malloc(2 * n + 2), *c = malloc(2 * n + 2);
		cr_assert_eq(kvt_cache_read(t->h, l, 0, (uint32_t)nh, a, a + n), 0);
		cr_assert_eq(kvt_cache_read(t->d, l, 0, (uint32_t)nh, c, c + n), 0);
		cr_assert_eq(memcmp(a, c, 2 * n), 0);
		free(a), free(c);
	}
	free(x), free(y);
	stats_eq(t->hs, t->ds, gpu_differs ? KVT_TIER_HOST : KVT_TIER_GPU);
}

static void twin_check(struct twin *t)
{
	twin_check_tiers(t, 0);
}

static const uint32_t sizes[] = {1, 7, 37, 300, 16, 5, 64, 1, 1, 37};

static void run_twin(uint64_t host_bytes, int disk, int recent_on_gpu,
		     enum kvt_codec_id codec, uint8_t bits)
{
	struct twin t;
	twin_open(&t, host_bytes, 4 << 20, disk, recent_on_gpu, codec, bits, 64);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
			for (uint32_t l = 0; l < 2; l++) {
				int rc = twin_append(&t, l, sizes[i],
						     i % 2 ? t.stream : NULL);
				cr_assert_eq(rc, 0, "append %u: %s", sizes[i],
					     kvt_strerror(rc));
				if (i % 3 == 0)
					twin_check(&t);
			}
	twin_check(&t);
	twin_close(&t);
}

Test(append_gpu, raw_cache_equals_host_appended_twin)
{
	need_gpu();
	run_twin(64 << 20, 0, 1, KVT_CODEC_RAW, 0);
	run_twin(64 << 20, 0, 0, KVT_CODEC_RAW, 0);
}

Test(append_gpu, kivi2_cache_equals_host_appended_twin)
{
	need_gpu();
	run_twin(64 << 20, 0, 1, KVT_CODEC_KIVI, 2);
	run_twin(64 << 20, 0, 0, KVT_CODEC_KIVI, 2);
}

Test(append_gpu, kivi4_cache_equals_host_appended_twin)
{
	need_gpu();
	run_twin(64 << 20, 0, 1, KVT_CODEC_KIVI, 4);
}

Test(append_gpu, zipcache_cache_equals_host_appended_twin)
{
	need_gpu();
	run_twin(64 << 20, 0, 1, KVT_CODEC_ZIPCACHE, 0);
}

Test(append_gpu, blocks_demoted_to_disk_stay_equal)
{
	need_gpu();
	/* Room for about 8 raw blocks on the host: most go to disk. */
	run_twin(64 << 10, 1, 1, KVT_CODEC_KIVI, 2);
	run_twin(64 << 10, 1, 1, KVT_CODEC_RAW, 0);
	struct twin t;
	twin_open(&t, 64 << 10, 4 << 20, 1, 1, KVT_CODEC_KIVI, 4, 64);
	for (uint32_t l = 0; l < 2; l++)
		cr_assert_eq(twin_append(&t, l, 700, t.stream), 0);
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(t.ds, &s), 0);
	cr_assert_gt(s.demotions, 0);
	cr_assert_gt(s.tier[KVT_TIER_DISK].n_blocks, 0);
	twin_check(&t);
	twin_close(&t);
}

Test(append_gpu, kivi_window_blocks_leave_the_gpu_quantized)
{
	need_gpu();
	struct twin t;
	twin_open(&t, 64 << 20, 4 << 20, 0, 1, KVT_CODEC_KIVI, 2, 64);
	/* 80 tokens: blocks 0-4, block 0 cold at once, 1-4 in the window
	 * (on the GPU). */
	cr_assert_eq(twin_append(&t, 0, 80, NULL), 0);
	struct kvt_block_key k1 = {t.d->rec->id, 0, 1};
	struct block_rec *r = kvt_block_rec_locked(t.ds, &k1, NULL);
	cr_assert(r->where & BLOCK_ON_GPU);
	cr_assert(r->gpu_window);
	cr_assert_eq(r->meta.codec, KVT_CODEC_RAW);
	/* 32 more: blocks 1 and 2 leave the window, quantized from their GPU
	 * copies, which go. */
	cr_assert_eq(twin_append(&t, 0, 32, t.stream), 0);
	for (uint32_t b = 1; b <= 2; b++) {
		struct kvt_block_key k = {t.d->rec->id, 0, b};
		r = kvt_block_rec_locked(t.ds, &k, NULL);
		cr_assert_eq(r->meta.codec, KVT_CODEC_KIVI);
		cr_assert_eq(r->where & BLOCK_ON_GPU, 0);
	}
	twin_check(&t);
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(t.ds, &s), 0);
	cr_assert_eq(s.tier[KVT_TIER_GPU].n_blocks, 4); /* blocks 3-6 */
	twin_close(&t);
}

/* Everything observable of a cache: tokens, bytes and stats. */
struct snap {
	uint64_t tokens[2];
	uint8_t *data[2];
	size_t len[2];
	struct kvt_stats stats;
};

static void snap_take(struct kvt_store *st, struct kvt_cache *c,
		      const struct kvt_shape *s, struct snap *o)
{
	for (uint32_t l = 0; l < 2; l++) {
		cr_assert_eq(kvt_cache_layer_tokens(c, l, &o->tokens[l]), 0);
		o->len[l] = (size_t)s->n_kv_heads * o->tokens[l] * s->head_dim * 2;
		o->data[l] = malloc(2 * o->len[l] + 2);
		cr_assert_eq(kvt_cache_read(c, l, 0, (uint32_t)o->tokens[l], o->data[l],
					    o->data[l] + o->len[l]), 0);
	}
	cr_assert_eq(kvt_store_stats(st, &o->stats), 0);
}

static void snap_eq(struct kvt_store *st, struct kvt_cache *c,
		    const struct kvt_shape *s, struct snap *before)
{
	struct snap now;
	snap_take(st, c, s, &now);
	for (uint32_t l = 0; l < 2; l++) {
		cr_assert_eq(now.tokens[l], before->tokens[l]);
		cr_assert_eq(memcmp(now.data[l], before->data[l], 2 * now.len[l]), 0);
		free(now.data[l]);
		free(before->data[l]);
	}
	for (int i = 0; i < KVT_TIER_COUNT; i++) {
		cr_assert_eq(now.stats.tier[i].n_blocks, before->stats.tier[i].n_blocks,
			     "%s tier changed", kvt_tier_name(i));
		cr_assert_eq(now.stats.tier[i].used_bytes,
			     before->stats.tier[i].used_bytes);
	}
	cr_assert_eq(now.stats.n_blocks, before->stats.n_blocks);
	cr_assert_eq(now.stats.stored_bytes, before->stats.stored_bytes);
}

Test(append_gpu, cold_blocks_spill_in_chunks_that_fit)
{
	need_gpu();
	struct twin t;
	/* 3 raw blocks of GPU room, no window copies: 300 tokens make 17
	 * cold blocks at once, quantized 3, 1 (halving) ... at a time. */
	twin_open(&t, 64 << 20, 3 * 8192, 0, 0, KVT_CODEC_KIVI, 2, 16);
	for (uint32_t l = 0; l < 2; l++) {
		cr_assert_eq(twin_append(&t, l, 37, NULL), 0);
		cr_assert_eq(twin_append(&t, l, 300, t.stream), 0);
		cr_assert_eq(twin_append(&t, l, 1000, NULL), 0);
	}
	twin_check(&t);
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(t.ds, &s), 0);
	cr_assert_eq(s.tier[KVT_TIER_GPU].n_blocks, 0); /* the slots went */
	twin_close(&t);
}

Test(append_gpu, a_gpu_tier_too_small_changes_nothing)
{
	need_gpu();
	struct twin t;
	struct snap s;
	/* 4 blocks of GPU room, a window of 4 blocks pinned there (KIVI, 64
	 * recent tokens): no slot is left to quantize new cold blocks in. */
	twin_open(&t, 64 << 20, 4 * 8192, 0, 1, KVT_CODEC_KIVI, 2, 64);
	cr_assert_eq(twin_append(&t, 0, 64, NULL), 0);
	cr_assert_eq(twin_append(&t, 1, 5, NULL), 0);
	snap_take(t.ds, t.d, &t.shape, &s);
	cr_assert_eq(twin_append(&t, 0, 300, t.stream), KVT_ENOSPACE);
	cr_assert_eq(twin_append(&t, 0, 100, NULL), KVT_ENOSPACE);
	snap_eq(t.ds, t.d, &t.shape, &s);
	twin_check(&t);
	/* 16 tokens: block 0 leaves the window, quantized from its pinned
	 * copy (no slot needed); block 4 gets no window copy (no room). */
	cr_assert_eq(twin_append(&t, 0, 16, t.stream), 0);
	twin_check_tiers(&t, 1);
	struct kvt_block_key k0 = {t.d->rec->id, 0, 0};
	cr_assert_eq(kvt_block_rec_locked(t.ds, &k0, NULL)->meta.codec, KVT_CODEC_KIVI);
	/* Without a GPU tier big enough for one block, cold blocks fail. */
	struct twin u;
	twin_open(&u, 64 << 20, 4096, 0, 1, KVT_CODEC_KIVI, 2, 16);
	snap_take(u.ds, u.d, &u.shape, &s);
	cr_assert_eq(twin_append(&u, 0, 100, NULL), KVT_ENOSPACE);
	snap_eq(u.ds, u.d, &u.shape, &s);
	cr_assert_eq(twin_append(&u, 0, 15, NULL), 0); /* tail only */
	twin_check(&u);
	twin_close(&u);
	twin_close(&t);
}

Test(append_gpu, a_full_host_tier_mid_call_rolls_back)
{
	need_gpu();
	const enum kvt_codec_id codecs[] = {KVT_CODEC_RAW, KVT_CODEC_KIVI};
	for (int ci = 0; ci < 2; ci++) {
		struct twin t;
		struct snap s;
		/* Room for about 12 raw blocks, no disk: a big append fails
		 * while storing its blocks. */
		twin_open(&t, 100 << 10, 4 << 20, 0, 1, codecs[ci], 2, 64);
		cr_assert_eq(twin_append(&t, 0, 21, NULL), 0);
		snap_take(t.ds, t.d, &t.shape, &s);
		int rc = twin_append(&t, 0, 2000, t.stream);
		cr_assert_eq(rc, KVT_ENOSPACE, "%s", kvt_strerror(rc));
		snap_eq(t.ds, t.d, &t.shape, &s);
		twin_check(&t);
		cr_assert_eq(twin_append(&t, 0, 20, t.stream), 0);
		twin_check(&t);
		twin_close(&t);
	}
}

Test(append_gpu, without_a_gpu_tier_enogpu)
{
	/* Every build: a store without GPU tier refuses, unchanged. */
	struct kvt_store *st = ru_open(1 << 20, 0, 0);
	struct kvt_cache_config cfg = ru_config(KVT_CODEC_KIVI, 64);
	struct kvt_cache *c;
	uint16_t buf[2 * 64 * 4];
	uint64_t n;
	cr_assert_eq(kvt_cache_create(st, "c", &cfg, &c), 0);
	cr_assert_eq(kvt_cache_append_device(c, 0, 4, buf, buf, NULL), KVT_ENOGPU);
	cr_assert_eq(kvt_cache_layer_tokens(c, 0, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(kvt_cache_append_device(c, 2, 4, buf, buf, NULL), -EINVAL);
	cr_assert_eq(kvt_cache_append_device(c, 0, 4, NULL, buf, NULL), -EINVAL);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(append_gpu, reloaded_blocks_equal_read_block)
{
	need_gpu();
	const enum kvt_codec_id codecs[] = {KVT_CODEC_RAW, KVT_CODEC_KIVI};
	for (int ci = 0; ci < 2; ci++) {
		struct twin t;
		twin_open(&t, 64 << 20, 4 << 20, 0, 1, codecs[ci], 2, 64);
		for (uint32_t l = 0; l < 2; l++)
			for (int i = 0; i < 4; i++)
				cr_assert_eq(twin_append(&t, l, sizes[i], t.stream), 0);
		/* 345 tokens: blocks 0-17 cold, 18-21 the window (their GPU
		 * copies are the slots the append assembled), 22 the tail. */
		uint32_t blocks[22];
		for (uint32_t b = 0; b < 22; b++)
			blocks[b] = b;
		struct kvt_block_key k = {t.d->rec->id, 1, 20};
		struct block_rec *r = kvt_block_rec_locked(t.ds, &k, NULL);
		cr_assert(r->where & BLOCK_ON_GPU);
		struct kvt_reload *rl;
		const struct kvt_reload_block *rb;
		size_t n;
		cr_assert_eq(kvt_cache_reload(t.d, 1, blocks, 22, t.stream, &rl), 0);
		cr_assert_eq(kvt_reload_wait(rl, &rb, &n), 0);
		ru_check(t.d, 1, rb, n, KVT_TIER_GPU);
		kvt_reload_release(rl);
		twin_check_tiers(&t, 1); /* only d holds reloaded copies */
		twin_close(&t);
	}
}

Test(append_gpu, a_restart_finds_every_token)
{
	need_gpu();
	struct twin t;
	twin_open(&t, 64 << 20, 4 << 20, 1, 1, KVT_CODEC_KIVI, 4, 64);
	for (uint32_t l = 0; l < 2; l++)
		for (int i = 0; i < 4; i++)
			cr_assert_eq(twin_append(&t, l, sizes[i], NULL), 0);
	twin_check(&t);
	char dir[2][512];
	struct kvt_store *st[2] = {t.hs, t.ds};
	for (int i = 0; i < 2; i++)
		snprintf(dir[i], sizeof dir[i], "%s", st[i]->data_dir);
	kvt_cache_close(t.h);
	kvt_cache_close(t.d);
	kvt_store_close(t.hs);
	kvt_store_close(t.ds);
	struct kvt_store_config cfg;
	kvt_store_config_init(&cfg);
	cfg.gpu_bytes = 4 << 20;
	cfg.data_dir = dir[0];
	cr_assert_eq(kvt_store_open(&cfg, &t.hs), 0);
	cfg.data_dir = dir[1];
	cr_assert_eq(kvt_store_open(&cfg, &t.ds), 0);
	cr_assert_eq(kvt_cache_open(t.hs, "twin", &t.h), 0);
	cr_assert_eq(kvt_cache_open(t.ds, "twin", &t.d), 0);
	twin_check(&t);
	/* And appending goes on from there. */
	for (uint32_t l = 0; l < 2; l++)
		cr_assert_eq(twin_append(&t, l, 37, t.stream), 0);
	twin_check(&t);
	twin_close(&t);
}

Test(append_gpu, window_copies_that_do_not_fit_are_skipped)
{
	need_gpu();
	struct twin t;
	/* GPU room for 3 blocks, a window of 4: a call's window blocks get
	 * no GPU copy when they do not all fit; the data is the same. */
	twin_open(&t, 64 << 20, 3 * 8192, 0, 1, KVT_CODEC_RAW, 0, 64);
	for (uint32_t l = 0; l < 2; l++)
		for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
			cr_assert_eq(twin_append(&t, l, sizes[i], t.stream), 0);
	twin_check_tiers(&t, 1);
	struct kvt_stats s;
	cr_assert_eq(kvt_store_stats(t.ds, &s), 0);
	cr_assert_leq(s.tier[KVT_TIER_GPU].n_blocks, 3);
	twin_close(&t);
}
