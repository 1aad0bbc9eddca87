/* test_retrieval_store.c - retrieval over a real store: indexing a cache,
 * prefetching selected blocks from disk, the block table, persistence of
 * the index with the cache across a restart. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvtier/retrieval.h"
#include "retrieval/synth.h"
#include "store/store_util.h"

#define N 3000
static const struct kvt_shape shape = {2, 2, 64, 16, KVT_DTYPE_F16};
static char dir[512];
static int seq;

static struct kvt_store *open_store(uint64_t host_bytes, int fresh)
{
	return su_open_disk(dir, sizeof dir, "retrieval", &seq, host_bytes, fresh);
}

struct data {
	struct synth syn;
	float *dirs;
	uint32_t topic[N];
	uint16_t *k[2], *v[2]; /* per layer, [H][N][d] */
};

static void data_make(struct data *g)
{
	synth_defaults(&g->syn);
	g->syn.n_tokens = N, g->syn.n_kv_heads = 2, g->syn.n_q_heads = 4;
	g->syn.head_dim = 64, g->syn.n_topics = 32;
	uint64_t st = 11;
	g->dirs = synth_topics(&g->syn, &st);
	for (int l = 0; l < 2; l++) {
		g->k[l] = malloc((size_t)2 * N * 64 * 2);
		g->v[l] = malloc((size_t)2 * N * 64 * 2);
		synth_kv(&g->syn, g->dirs, KVT_DTYPE_F16, g->k[l], g->v[l], g->topic, &st);
	}
}

static void data_free(struct data *g)
{
	free(g->dirs);
	for (int l = 0; l < 2; l++)
		free(g->k[l]), free(g->v[l]);
}

/* Tokens [first, first + n) of one layer as [H][n][d]. */
static void slice(const uint16_t *src, uint64_t first, uint32_t n, uint16_t *dst)
{
	for (int h = 0; h < 2; h++)
		memcpy(dst + (size_t)h * n * 64, src + ((size_t)h * N + first) * 64,
		       (size_t)n * 64 * 2);
}

/* Appends all tokens to the cache and to idx (may be NULL), 500 at once. */
static void fill(struct kvt_cache *c, struct kvt_rindex *idx, const struct data *g)
{
	uint16_t *k = malloc((size_t)2 * 500 * 64 * 2), *v = malloc((size_t)2 * 500 * 64 * 2);
	for (uint32_t l = 0; l < 2; l++)
		for (uint64_t t = 0; t < N; t += 500) {
			uint32_t n = N - t < 500 ? (uint32_t)(N - t) : 500;
			slice(g->k[l], t, n, k);
			slice(g->v[l], t, n, v);
			cr_assert_eq(kvt_cache_append(c, l, n, k, v), 0);
			if (idx)
				cr_assert_eq(kvt_rindex_add(idx, l, k, n), 0);
		}
	free(k), free(v);
}

static void same_index(const struct kvt_rindex *a, const struct kvt_rindex *b)
{
	void *ba, *bb;
	size_t la, lb;
	cr_assert_eq(kvt_rindex_save(a, &ba, &la), 0);
	cr_assert_eq(kvt_rindex_save(b, &bb, &lb), 0);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(ba, bb, la), 0);
	free(ba), free(bb);
}

static struct kvt_cache *create(struct kvt_store *st, int kivi)
{
	struct kvt_cache_config cfg;
	struct kvt_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	if (kivi)
		kvt_codec_params_init(&cfg.cold, KVT_CODEC_KIVI);
	cr_assert_eq(kvt_cache_create(st, "doc", &cfg, &c), 0);
	return c;
}

Test(retrieval_store, index_built_from_a_cache_equals_the_one_fed_by_append)
{
	struct data g;
	data_make(&g);
	struct kvt_store *st = open_store(0, 1);
	struct kvt_cache *c = create(st, 0);
	struct kvt_rindex *fed, *built;
	cr_assert_eq(kvt_rindex_create(&shape, NULL, &fed), 0);
	fill(c, fed, &g);
	cr_assert_eq(kvt_rindex_build_from_cache(c, NULL, &built), 0);
	same_index(fed, built);
	/* catching up after more tokens is a no-op when nothing is new */
	cr_assert_eq(kvt_rindex_update_from_cache(built, c), 0);
	same_index(fed, built);
	struct kvt_shape other = shape;
	other.head_dim = 32;
	struct kvt_rindex *wrong;
	cr_assert_eq(kvt_rindex_create(&other, NULL, &wrong), 0);
	cr_assert_eq(kvt_rindex_update_from_cache(wrong, c), KVT_ESHAPE);
	cr_assert_eq(kvt_rindex_persist(wrong, c), KVT_ESHAPE);
	/* an index of more tokens than the cache holds is not this cache's */
	struct kvt_cache_config cfg2;
	struct kvt_cache *c2;
	kvt_cache_config_init(&cfg2);
	cfg2.shape = shape;
	cr_assert_eq(kvt_cache_create(st, "short", &cfg2, &c2), 0);
	cr_assert_eq(kvt_rindex_update_from_cache(built, c2), KVT_ECORRUPT);
	kvt_cache_close(c2);
	kvt_rindex_free(wrong), kvt_rindex_free(fed), kvt_rindex_free(built);
	kvt_cache_close(c);
	kvt_store_close(st);
	data_free(&g);
}

Test(retrieval_store, quantized_cold_blocks_are_indexed_decoded)
{
	struct data g;
	data_make(&g);
	struct kvt_store *st = open_store(0, 1);
	struct kvt_cache *c = create(st, 1);
	fill(c, NULL, &g);
	struct kvt_rindex *x;
	cr_assert_eq(kvt_rindex_build_from_cache(c, NULL, &x), 0);
	struct kvt_rindex_layer_info li;
	cr_assert_eq(kvt_rindex_layer_info(x, 1, &li), 0);
	cr_assert_eq(li.n_tokens, N);
	kvt_rindex_free(x);
	kvt_cache_close(c);
	kvt_store_close(st);
	data_free(&g);
}

Test(retrieval_store, selected_blocks_come_back_from_disk_into_the_pool)
{
	struct data g;
	data_make(&g);
	size_t bb = kvt_block_bytes(&shape);
	/* a host tier of about 40 blocks: most blocks end up on disk only */
	struct kvt_store *st = open_store(40 * bb, 1);
	struct kvt_cache *c = create(st, 0);
	struct kvt_rindex *x;
	cr_assert_eq(kvt_rindex_create(&shape, NULL, &x), 0);
	fill(c, x, &g);
	cr_assert_eq(kvt_store_flush(st), 0);
	float q[4 * 64];
	uint64_t rs = 2;
	synth_queries(&g.syn, g.dirs, g.topic, 1, N, q, &rs);
	struct kvt_retrieve_params p;
	kvt_retrieve_params_init(&p);
	p.n_q_heads = 4, p.budget_tokens = 480;
	struct kvt_selection sel;
	cr_assert_eq(kvt_retrieve(x, 0, &p, q, &sel), 0);
	cr_assert_leq(sel.n_blocks, 30);
	struct kvt_stats before, after;
	kvt_store_stats(st, &before);
	uint8_t where[64];
	cr_assert_eq(kvt_cache_prefetch(c, 0, sel.blocks, sel.n_blocks, where), 0);
	for (uint32_t i = 0; i < sel.n_blocks; i++)
		cr_assert_eq(where[i], KVT_TIER_HOST, "block %u", sel.blocks[i]);
	kvt_store_stats(st, &after);
	cr_assert_gt(after.promotions, before.promotions);

	void *pool = malloc(sel.n_blocks * bb), *one = malloc(bb);
	struct kvt_block_table t;
	cr_assert_eq(kvt_retrieve_load(c, &sel, pool, sel.n_blocks * bb - 1, &t), -ENOBUFS);
	cr_assert_eq(kvt_retrieve_load(c, &sel, pool, sel.n_blocks * bb, &t), 0);
	cr_assert_eq(t.n_blocks, sel.n_blocks);
	for (uint32_t i = 0; i < t.n_blocks; i++) {
		uint32_t nv;
		cr_assert_eq(t.block[i], sel.blocks[i]);
		cr_assert_eq(kvt_cache_read_block(c, 0, t.block[i], one, bb, &nv), 0);
		cr_assert_eq(nv, t.n_valid[i]);
		cr_assert_eq(memcmp(one, (char *)pool + (size_t)t.slot[i] * bb, bb), 0);
	}
	/* attention over the block table equals attention over the same
	 * tokens gathered by hand */
	uint16_t *k = malloc((size_t)2 * sel.n_tokens * 64 * 2), *v = malloc((size_t)2 * sel.n_tokens * 64 * 2);
	for (int h = 0; h < 2; h++) {
		uint64_t at = 0;
		for (uint32_t i = 0; i < sel.n_blocks; i++) {
			size_t src = ((size_t)h * N + (size_t)sel.blocks[i] * 16) * 64;
			size_t dst = ((size_t)h * sel.n_tokens + at) * 64;
			memcpy(k + dst, g.k[0] + src, sel.n_valid[i] * 64 * 2);
			memcpy(v + dst, g.v[0] + src, sel.n_valid[i] * 64 * 2);
			at += sel.n_valid[i];
		}
	}
	float o1[4 * 64], o2[4 * 64];
	cr_assert_eq(kvt_attn_blocks(&shape, 4, 1, q, pool, &t, o1), 0);
	cr_assert_eq(kvt_attn_full(&shape, 4, 1, q, k, v, sel.n_tokens, o2), 0);
	cr_assert_eq(memcmp(o1, o2, sizeof o1), 0);
	kvt_block_table_free(&t);
	kvt_block_table_free(NULL);

	uint32_t past = (N + 15) / 16;
	cr_assert_eq(kvt_cache_prefetch(c, 0, &past, 1, where), KVT_ENOTFOUND);
	cr_assert_eq(kvt_cache_prefetch(c, 2, &past, 1, where), -EINVAL);
	free(pool), free(one), free(k), free(v);
	kvt_selection_free(&sel);
	kvt_rindex_free(x);
	kvt_cache_close(c);
	kvt_store_close(st);
	data_free(&g);
}

Test(retrieval_store, index_persists_with_the_cache)
{
	struct data g;
	data_make(&g);
	struct kvt_store *st = open_store(0, 1);
	struct kvt_cache *c = create(st, 0);
	struct kvt_rindex *x, *y;
	cr_assert_eq(kvt_rindex_open(c, &y), KVT_ENOTFOUND);
	cr_assert_eq(kvt_rindex_create(&shape, NULL, &x), 0);
	fill(c, x, &g);
	int rc = kvt_rindex_persist(x, c);
	cr_assert_eq(rc, 0, "persist: %s", kvt_strerror(rc));
	kvt_cache_close(c);
	kvt_store_close(st);

	st = open_store(0, 0);
	cr_assert_eq(kvt_cache_open(st, "doc", &c), 0);
	rc = kvt_rindex_open(c, &y);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	same_index(x, y);
	/* damaged pieces or header are refused, not used */
	void *buf;
	size_t len;
	cr_assert_eq(kvt_cache_meta_get(c, KVT_RINDEX_META_KEY ".0", &buf, &len), 0);
	((uint8_t *)buf)[len / 2] ^= 1;
	cr_assert_eq(kvt_cache_meta_put(c, KVT_RINDEX_META_KEY ".0", buf, len), 0);
	kvt_rindex_free(y);
	y = NULL;
	cr_assert_eq(kvt_rindex_open(c, &y), KVT_ECORRUPT);
	cr_assert_null(y);
	cr_assert_eq(kvt_cache_meta_del(c, KVT_RINDEX_META_KEY ".0"), 0);
	cr_assert_eq(kvt_rindex_open(c, &y), KVT_ECORRUPT);
	cr_assert_eq(kvt_cache_meta_put(c, KVT_RINDEX_META_KEY, "KVTRIDXP", 8), 0);
	cr_assert_eq(kvt_rindex_open(c, &y), KVT_EFORMAT);
	/* persisting again repairs it */
	cr_assert_eq(kvt_rindex_persist(x, c), 0);
	cr_assert_eq(kvt_rindex_open(c, &y), 0);
	same_index(x, y);
	kvt_rindex_free(y);
	free(buf);
	kvt_rindex_free(x);
	kvt_cache_close(c);
	kvt_store_close(st);
	data_free(&g);
}

Test(retrieval_store, an_index_larger_than_one_piece_persists, .timeout = 120)
{
	/* one frame per token of 8 x 1024 fp16: about 69 MB, two pieces */
	const struct kvt_shape big = {1, 8, 1024, 1, KVT_DTYPE_F16};
	const uint32_t n = 4200;
	struct kvt_store *st = open_store(0, 1);
	struct kvt_cache_config cfg;
	struct kvt_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = big;
	cfg.recent_tokens = 0;
	cr_assert_eq(kvt_cache_create(st, "big", &cfg, &c), 0);
	struct kvt_rindex_config icfg;
	kvt_rindex_config_init(&icfg);
	icfg.iters = 1;
	struct kvt_rindex *x, *y;
	cr_assert_eq(kvt_rindex_create(&big, &icfg, &x), 0);
	uint16_t *k = malloc((size_t)8 * n * 1024 * 2);
	uint64_t rs = 9;
	for (size_t i = 0; i < (size_t)8 * n * 1024; i++)
		k[i] = kvt_f32_to_f16(synth_normal(&rs));
	cr_assert_eq(kvt_rindex_add(x, 0, k, n), 0);
	int rc = kvt_rindex_persist(x, c);
	cr_assert_eq(rc, 0, "persist: %s", kvt_strerror(rc));
	void *piece;
	size_t len;
	cr_assert_eq(kvt_cache_meta_get(c, KVT_RINDEX_META_KEY ".1", &piece, &len), 0);
	free(piece);
	kvt_cache_close(c);
	kvt_store_close(st);
	st = open_store(0, 0);
	cr_assert_eq(kvt_cache_open(st, "big", &c), 0);
	rc = kvt_rindex_open(c, &y);
	cr_assert_eq(rc, 0, "open: %s", kvt_strerror(rc));
	same_index(x, y);
	/* a smaller index replaces it and leaves no stale piece */
	kvt_rindex_free(y);
	cr_assert_eq(kvt_rindex_create(&big, &icfg, &y), 0);
	cr_assert_eq(kvt_rindex_add(y, 0, k, 10), 0);
	cr_assert_eq(kvt_rindex_persist(y, c), 0);
	cr_assert_eq(kvt_cache_meta_get(c, KVT_RINDEX_META_KEY ".1", &piece, &len),
		     KVT_ENOTFOUND);
	kvt_rindex_free(y);
	cr_assert_eq(kvt_rindex_open(c, &y), 0);
	struct kvt_rindex_layer_info li;
	kvt_rindex_layer_info(y, 0, &li);
	cr_assert_eq(li.n_tokens, 10);
	kvt_rindex_free(x), kvt_rindex_free(y);
	free(k);
	kvt_cache_close(c);
	kvt_store_close(st);
}
