/* test_store.c - the store core on the host tier: caches, append, read,
 * cold KIVI blocks, budgets, statistics. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kvtier/codec.h"
#include "store/store_util.h"

static struct kvt_store *open_store(uint64_t host_bytes)
{
	struct kvt_store_config cfg;
	struct kvt_store *st;
	kvt_store_config_init(&cfg);
	cfg.host_bytes = host_bytes;
	cr_assert_eq(kvt_store_open(&cfg, &st), 0);
	return st;
}

static struct kvt_cache_config small_config(void)
{
	struct kvt_cache_config c;
	kvt_cache_config_init(&c);
	c.shape.n_layers = 3;
	c.shape.n_kv_heads = 2;
	c.shape.head_dim = 64;
	return c;
}

static void append_range(struct kvt_cache *c, const struct kvt_shape *s,
			 uint32_t layer, uint64_t first, uint32_t n)
{
	uint16_t *k = tv_alloc(s, n), *v = tv_alloc(s, n);
	tv_fill(s, layer, first, n, k, v);
	cr_assert_eq(kvt_cache_append(c, layer, n, k, v), 0);
	free(k), free(v);
}

static void check_range(struct kvt_cache *c, const struct kvt_shape *s,
			uint32_t layer, uint64_t first, uint32_t n)
{
	uint16_t *k = tv_alloc(s, n), *v = tv_alloc(s, n);
	uint16_t *ek = tv_alloc(s, n), *ev = tv_alloc(s, n);
	tv_fill(s, layer, first, n, ek, ev);
	cr_assert_eq(kvt_cache_read(c, layer, first, n, k, v), 0);
	size_t bytes = (size_t)s->n_kv_heads * n * s->head_dim * 2;
	cr_assert_eq(memcmp(k, ek, bytes), 0, "layer %u [%lu, +%u) keys", layer,
		     (unsigned long)first, n);
	cr_assert_eq(memcmp(v, ev, bytes), 0, "values");
	free(k), free(v), free(ek), free(ev);
}

Test(store, create_open_list_drop)
{
	struct kvt_store *st = open_store(64 << 20);
	struct kvt_cache_config cfg = small_config();
	struct kvt_cache *a, *b, *a2;
	cr_assert_eq(kvt_cache_create(st, "doc-a", &cfg, &a), 0);
	cr_assert_eq(kvt_cache_create(st, "doc-b", &cfg, &b), 0);
	cr_assert_eq(kvt_cache_create(st, "doc-a", &cfg, &a2), KVT_EEXIST);
	cr_assert_eq(kvt_cache_create(st, "", &cfg, &a2), -EINVAL);
	cr_assert_eq(kvt_cache_create(st, "a/b", &cfg, &a2), -EINVAL);
	cr_assert_eq(kvt_cache_open(st, "nope", &a2), KVT_ENOTFOUND);
	struct kvt_cache_config bad = cfg;
	bad.shape.head_dim = 0;
	cr_assert_eq(kvt_cache_create(st, "bad", &bad, &a2), -EINVAL);
	bad = cfg;
	bad.cold.id = KVT_CODEC_KIVI;
	bad.cold.bits = 3;
	bad.cold.group = 32;
	cr_assert_eq(kvt_cache_create(st, "bad", &bad, &a2), KVT_ECODEC);

	struct kvt_cache_info *list;
	size_t n;
	cr_assert_eq(kvt_store_list(st, &list, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_neq(list[0].id, list[1].id);
	free(list);

	cr_assert_eq(kvt_cache_drop(st, "doc-a"), KVT_EBUSY);
	kvt_cache_close(a);
	cr_assert_eq(kvt_cache_open(st, "doc-a", &a2), 0);
	kvt_cache_close(a2);
	cr_assert_eq(kvt_cache_drop(st, "doc-a"), 0);
	cr_assert_eq(kvt_cache_drop(st, "doc-a"), KVT_ENOTFOUND);
	cr_assert_eq(kvt_store_list(st, &list, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(list[0].name, "doc-b");
	free(list);
	kvt_cache_close(b);
	kvt_store_close(st);
}

Test(store, append_and_read_any_range_raw)
{
	struct kvt_store *st = open_store(64 << 20);
	struct kvt_cache_config cfg = small_config();
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, "doc", &cfg, &c), 0);
	/* Odd chunk sizes straddle block boundaries. */
	uint32_t chunks[] = {1, 5, 16, 17, 3, 40, 100, 2};
	uint64_t total = 0;
	for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		for (uint32_t l = 0; l < 3; l++)
			append_range(c, &cfg.shape, l, total, chunks[i]);
		total += chunks[i];
	}
	uint64_t n;
	cr_assert_eq(kvt_cache_layer_tokens(c, 2, &n), 0);
	cr_assert_eq(n, total);
	for (uint32_t l = 0; l < 3; l++) {
		check_range(c, &cfg.shape, l, 0, (uint32_t)total);
		check_range(c, &cfg.shape, l, 15, 2);
		check_range(c, &cfg.shape, l, total - 1, 1);
		check_range(c, &cfg.shape, l, 33, 77);
	}
	uint16_t *k = tv_alloc(&cfg.shape, 8), *v = tv_alloc(&cfg.shape, 8);
	cr_assert_eq(kvt_cache_read(c, 0, total - 4, 8, k, v), KVT_ENOTFOUND);
	cr_assert_eq(kvt_cache_read(c, 3, 0, 1, k, v), -EINVAL);
	free(k), free(v);

	/* The tail block reads partial, zero padded. */
	size_t bb = kvt_block_bytes(&cfg.shape);
	uint16_t *blk = malloc(bb);
	uint32_t valid;
	cr_assert_eq(kvt_cache_read_block(c, 1, total / 16, blk, bb, &valid), 0);
	cr_assert_eq(valid, total % 16);
	cr_assert_eq(blk[(16 - 1) * 64], 0); /* last token of head 0 */
	cr_assert_eq(blk[0], tv_value(1, 0, total / 16 * 16, 0, 0));
	cr_assert_eq(kvt_cache_read_block(c, 1, 0, blk, bb - 1, &valid), -ENOBUFS);
	cr_assert_eq(kvt_cache_read_block(c, 1, total / 16 + 1, blk, bb, &valid),
		     KVT_ENOTFOUND);
	free(blk);

	struct kvt_cache_info info;
	cr_assert_eq(kvt_cache_get_info(c, &info), 0);
	cr_assert_eq(info.n_tokens, total);
	cr_assert_eq(info.n_blocks, 3 * (total / 16));
	cr_assert_eq(info.stored_bytes, info.raw_bytes);
	kvt_cache_close(c);
	kvt_store_close(st);
}

/* Every cold block decodes exactly as the codec decodes that block. */
Test(store, cold_blocks_use_kivi_recent_stay_exact)
{
	struct kvt_store *st = open_store(64 << 20);
	struct kvt_cache_config cfg = small_config();
	kvt_codec_params_init(&cfg.cold, KVT_CODEC_KIVI);
	cfg.cold.bits = 4;
	cfg.recent_tokens = 64;
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, "q", &cfg, &c), 0);
	const uint32_t total = 300;
	for (uint32_t t = 0; t < total; t += 20)
		append_range(c, &cfg.shape, 0, t, 20);
	const struct kvt_shape *s = &cfg.shape;
	size_t bb = kvt_block_bytes(s), half = bb / 2;
	uint8_t *blk = malloc(bb), *raw = malloc(bb), *enc = malloc(2 * bb);
	uint8_t *dec = malloc(bb);
	struct kvt_codec_params p = cfg.cold;
	p.residual = 0;
	p.group = 16;
	struct kvt_tensor_desc d = {2, 16, 64, KVT_DTYPE_F16};
	for (uint32_t b = 0; b < total / 16; b++) {
		uint32_t valid;
		cr_assert_eq(kvt_cache_read_block(c, 0, b, blk, bb, &valid), 0);
		tv_fill(s, 0, (uint64_t)b * 16, 16, (uint16_t *)raw,
			(uint16_t *)(raw + half));
		if ((b + 1) * 16 > total - cfg.recent_tokens) {
			cr_assert_eq(memcmp(blk, raw, bb), 0, "recent block %u", b);
			continue;
		}
		size_t w;
		for (int kind = 0; kind < 2; kind++) {
			cr_assert_eq(kvt_codec_encode(&p, kind, &d, raw + kind * half,
						      enc, 2 * bb, &w), 0);
			cr_assert_eq(kvt_codec_decode(enc, w, dec, half, NULL), 0);
			cr_assert_eq(memcmp(blk + kind * half, dec, half), 0,
				     "cold block %u kind %d", b, kind);
		}
	}
	struct kvt_stats stats;
	cr_assert_eq(kvt_store_stats(st, &stats), 0);
	cr_assert_gt(stats.compression_ratio, 1.5);
	cr_assert_eq(stats.n_blocks, total / 16);
	cr_assert(stats.tier[KVT_TIER_HOST].present);
	cr_assert_eq(stats.tier[KVT_TIER_HOST].n_blocks, total / 16);
	cr_assert(!stats.tier[KVT_TIER_DISK].present);
	free(blk), free(raw), free(enc), free(dec);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(store, full_host_budget_is_enospace_and_changes_nothing)
{
	struct kvt_cache_config cfg = small_config();
	size_t bb = kvt_block_bytes(&cfg.shape); /* 8 KiB */
	struct kvt_store *st = open_store(10 * bb);
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, "full", &cfg, &c), 0);
	append_range(c, &cfg.shape, 0, 0, 8 * 16 + 5);
	uint16_t *k = tv_alloc(&cfg.shape, 64), *v = tv_alloc(&cfg.shape, 64);
	tv_fill(&cfg.shape, 0, 8 * 16 + 5, 64, k, v);
	cr_assert_eq(kvt_cache_append(c, 0, 64, k, v), KVT_ENOSPACE);
	uint64_t n;
	kvt_cache_layer_tokens(c, 0, &n);
	cr_assert_eq(n, 8 * 16 + 5);
	check_range(c, &cfg.shape, 0, 0, 8 * 16 + 5);
	/* What fits still goes in after the failure. */
	tv_fill(&cfg.shape, 0, 8 * 16 + 5, 16, k, v);
	cr_assert_eq(kvt_cache_append(c, 0, 16, k, v), 0);
	check_range(c, &cfg.shape, 0, 0, 8 * 16 + 5 + 16);
	free(k), free(v);
	kvt_cache_close(c);
	kvt_store_close(st);
}

struct writer {
	struct kvt_cache *c;
	const struct kvt_shape *s;
	uint32_t layer;
};

static void *write_layer(void *arg)
{
	struct writer *w = arg;
	uint16_t *k = tv_alloc(w->s, 7), *v = tv_alloc(w->s, 7);
	for (uint64_t t = 0; t < 700; t += 7) {
		tv_fill(w->s, w->layer, t, 7, k, v);
		if (kvt_cache_append(w->c, w->layer, 7, k, v))
			return (void *)1;
	}
	free(k), free(v);
	return NULL;
}

Test(store, concurrent_appends_to_different_layers)
{
	struct kvt_store *st = open_store(256 << 20);
	struct kvt_cache_config cfg = small_config();
	kvt_codec_params_init(&cfg.cold, KVT_CODEC_KIVI);
	struct kvt_cache *c;
	cr_assert_eq(kvt_cache_create(st, "mt", &cfg, &c), 0);
	pthread_t th[3];
	struct writer w[3];
	for (uint32_t l = 0; l < 3; l++) {
		w[l] = (struct writer){c, &cfg.shape, l};
		pthread_create(&th[l], NULL, write_layer, &w[l]);
	}
	for (int l = 0; l < 3; l++) {
		void *r;
		pthread_join(th[l], &r);
		cr_assert_null(r);
	}
	for (uint32_t l = 0; l < 3; l++)
		check_range(c, &cfg.shape, l, 700 - 128, 128);
	kvt_cache_close(c);
	kvt_store_close(st);
}

Test(store, append_device_without_a_gpu_tier_is_refused)
{
	/* No GPU tier (gpu_bytes 0, and any CPU build): KVT_ENOGPU, nothing
	 * appended. */
	struct kvt_store_config sc;
	struct kvt_store *st;
	struct kvt_cache_config cfg;
	struct kvt_cache *c;
	uint16_t buf[2 * 64 * 4] = {0};
	uint64_t n = 1;
	kvt_store_config_init(&sc);
	cr_assert_eq(kvt_store_open(&sc, &st), 0);
	kvt_cache_config_init(&cfg);
	cfg.shape = (struct kvt_shape){2, 2, 64, 16, KVT_DTYPE_F16};
	cr_assert_eq(kvt_cache_create(st, "nogpu", &cfg, &c), 0);
	cr_assert_eq(kvt_cache_append_device(c, 0, 4, buf, buf, NULL), KVT_ENOGPU);
	cr_assert_eq(kvt_cache_layer_tokens(c, 0, &n), 0);
	cr_assert_eq(n, 0);
	kvt_cache_close(c);
	kvt_store_close(st);
}
