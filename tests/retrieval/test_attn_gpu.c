/* test_attn_gpu.c - retrieval end to end with the GPU tier: select (on the
 * GPU for Quest and ClusterKV), reload into the store's GPU tier, run the
 * reference attention on the GPU over the reloaded blocks, and compare with
 * the CPU path (kvt_retrieve, kvt_retrieve_load, kvt_attn_blocks). Linked
 * with the real kernels it runs on a device and skips without one; with
 * kvt_kernels_fake it runs everywhere CUDA compiles. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvt_kernels.h"
#include "kvtier/retrieval.h"
#include "retrieval/synth.h"

#define N 3000

struct world {
	struct synth syn;
	struct kvt_shape shape;
	float *dirs, *q;
	uint16_t *k, *v;
	uint32_t *topic;
	struct kvt_store *st;
	struct kvt_cache *c;
	struct kvt_rindex *idx;
};

static void world_make(struct world *w, enum kvt_codec_id cold)
{
	synth_defaults(&w->syn);
	w->syn.n_tokens = N, w->syn.n_kv_heads = 2, w->syn.n_q_heads = 8;
	w->syn.head_dim = 64, w->syn.n_topics = 16;
	w->shape = (struct kvt_shape){1, 2, 64, 16, KVT_DTYPE_F16};
	uint64_t st = 5;
	w->dirs = synth_topics(&w->syn, &st);
	w->k = malloc((size_t)2 * N * 64 * 2), w->v = malloc((size_t)2 * N * 64 * 2);
	w->topic = malloc(N * sizeof *w->topic), w->q = malloc(8 * 2 * 64 * 4);
	cr_assert(w->dirs && w->k && w->v && w->topic && w->q);
	synth_kv(&w->syn, w->dirs, KVT_DTYPE_F16, w->k, w->v, w->topic, &st);
	synth_queries(&w->syn, w->dirs, w->topic, 2, N, w->q, &st);
	struct kvt_store_config sc;
	kvt_store_config_init(&sc);
	sc.gpu_bytes = 64 << 20;
	cr_assert_eq(kvt_store_open(&sc, &w->st), 0);
	struct kvt_cache_config cc;
	kvt_cache_config_init(&cc);
	cc.shape = w->shape;
	if (cold != KVT_CODEC_RAW)
		kvt_codec_params_init(&cc.cold, cold);
	cr_assert_eq(kvt_cache_create(w->st, "doc", &cc, &w->c), 0);
	cr_assert_eq(kvt_cache_append(w->c, 0, N, w->k, w->v), 0);
	cr_assert_eq(kvt_rindex_build_from_cache(w->c, NULL, &w->idx), 0);
}

static void world_free(struct world *w)
{
	kvt_rindex_free(w->idx);
	kvt_cache_close(w->c);
	kvt_store_close(w->st);
	free(w->dirs), free(w->k), free(w->v), free(w->topic), free(w->q);
}

/* CPU reference over the same selection. */
static void cpu_attention(struct world *w, const struct kvt_selection *sel,
			  float *out)
{
	size_t bb = kvt_block_bytes(&w->shape);
	void *pool = malloc(sel->n_blocks * bb);
	struct kvt_block_table t;
	cr_assert_eq(kvt_retrieve_load(w->c, sel, pool, sel->n_blocks * bb, &t), 0);
	cr_assert_eq(kvt_attn_blocks(&w->shape, 8, 2, w->q, pool, &t, out), 0);
	kvt_block_table_free(&t);
	free(pool);
}

static double rel_diff(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++)
		num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
	return sqrt(num / (den > 0 ? den : 1));
}

static void end_to_end(enum kvt_codec_id cold, enum kvt_retrieval_mode mode)
{
	if (kvt_gpu_available())
		cr_skip_test("no usable GPU: the GPU retrieval path is not tested");
	struct world w;
	world_make(&w, cold);
	struct kvt_rindex_gpu *g;
	cr_assert_eq(kvt_rindex_gpu_create(w.idx, &g), 0);
	struct kvt_retrieve_params p;
	kvt_retrieve_params_init(&p);
	p.mode = mode, p.n_q_heads = 8, p.n_queries = 2, p.budget_tokens = N / 10;
	struct kvt_selection sel;
	cr_assert_eq(kvt_retrieve_gpu(g, w.idx, 0, &p, w.q, &sel), 0);
	struct kvt_reload *r;
	const struct kvt_reload_block *b;
	size_t n;
	cr_assert_eq(kvt_cache_reload(w.c, 0, sel.blocks, sel.n_blocks, NULL, &r), 0);
	cr_assert_eq(kvt_reload_wait(r, &b, &n), 0);
	uint32_t on_gpu = 0;
	for (size_t i = 0; i < n; i++)
		on_gpu += b[i].tier == KVT_TIER_GPU;
	cr_assert_geq(on_gpu, sel.n_blocks - 1, "only %u of %u blocks on the GPU",
		      on_gpu, sel.n_blocks); /* all but a partial tail */
	float gpu[8 * 2 * 64], cpu[8 * 2 * 64];
	cr_assert_eq(kvt_attn_reload_gpu(&w.shape, 8, 2, w.q, b, n, gpu), 0);
	cpu_attention(&w, &sel, cpu);
	double d = rel_diff(gpu, cpu, 8 * 2 * 64);
	cr_assert_lt(d, 1e-5, "GPU vs CPU attention differ by %.3g", d);
	kvt_reload_release(r);
	kvt_selection_free(&sel);
	kvt_rindex_gpu_free(g);
	world_free(&w);
}

Test(attn_gpu, quest_raw_blocks) { end_to_end(KVT_CODEC_RAW, KVT_RETRIEVE_QUEST); }
Test(attn_gpu, clusterkv_kivi_blocks) { end_to_end(KVT_CODEC_KIVI, KVT_RETRIEVE_CLUSTERKV); }
Test(attn_gpu, quest_zipcache_blocks) { end_to_end(KVT_CODEC_ZIPCACHE, KVT_RETRIEVE_QUEST); }

Test(attn_gpu, bad_input)
{
	struct kvt_shape sh = {1, 2, 64, 16, KVT_DTYPE_F16};
	float q[8 * 64] = {0}, out[8 * 64];
	static uint8_t raw[2 * 2 * 16 * 64 * 2];
	struct kvt_reload_block b = {0, 0, KVT_TIER_HOST, 16, raw, sizeof raw};
	if (kvt_gpu_available()) {
		cr_assert_eq(kvt_attn_reload_gpu(&sh, 8, 1, q, &b, 1, out), KVT_ENOGPU);
		return;
	}
	cr_assert_eq(kvt_attn_reload_gpu(&sh, 8, 1, q, &b, 1, out), 0);
	cr_assert_eq(kvt_attn_reload_gpu(&sh, 7, 1, q, &b, 1, out), -EINVAL);
	cr_assert_eq(kvt_attn_reload_gpu(&sh, 8, 1, q, &b, 0, out), -EINVAL);
	b.status = KVT_ECORRUPT;
	cr_assert_eq(kvt_attn_reload_gpu(&sh, 8, 1, q, &b, 1, out), -EINVAL);
	b.status = 0, b.bytes = 100;
	cr_assert_eq(kvt_attn_reload_gpu(&sh, 8, 1, q, &b, 1, out), -EINVAL);
}
