/*
 * cmd_retrieve.c - `kvtier retrieve`: offline block selection on a stored
 * cache for given query vectors, with the quality figures (attention mass
 * recall, output error vs full attention) and a recent-window baseline.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "half.h"
#include "kvtier/retrieval.h"
#include "npy.h"

struct ropts {
	const char *dir, *name, *queries;
	double budget;
	enum kvt_retrieval_mode mode;
	long layer; /* -1: all */
	uint32_t sink, recent;
	int save_index, rebuild, quality, quiet_blocks, per_query;
	uint64_t gpu_bytes; /* --gpu-bytes: a GPU tier, reload through it */
	struct kvt_rindex_config icfg;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvtier retrieve --data-dir DIR NAME --queries Q.npy [OPTIONS]\n"
		"\n"
		"Selects the blocks of cache NAME (in the store at DIR, opened offline:\n"
		"no kvtierd may be running on DIR) that queries Q attend to, loads them\n"
		"into a block pool, and reports how much of the true attention mass they\n"
		"hold and the error of the attention output against full attention.\n"
		"Q.npy (float16 or float32) is [q_heads, head_dim] (every layer),\n"
		"[layers, q_heads, head_dim] or [layers, q_heads, queries, head_dim];\n"
		"q heads map to kv heads in consecutive groups (GQA).\n"
		"\n"
		"options:\n"
		"  --budget B        tokens per layer: a fraction of the layer's tokens\n"
		"                    when below 1 (default 0.1), else a token count\n"
		"  --mode M          clusterkv (default), quest, rekv or recent\n"
		"  --layer L         only layer L (default: every layer)\n"
		"  --sink N          first tokens always selected (default 16)\n"
		"  --recent N        newest tokens always selected (default 128)\n"
		"  --cluster-tokens N  tokens per cluster when building the index (64)\n"
		"  --frame-blocks N  ReKV blocks per frame when building the index (1)\n"
		"  --save-index      store the (built or updated) index with the cache\n"
		"  --rebuild-index   ignore a stored index (e.g. a damaged one) and build\n"
		"                    it again from the cache's keys\n"
		"  --no-quality      skip the reference attention (faster)\n"
		"  --no-blocks       do not list the selected blocks\n"
		"  --gpu-bytes N     give the store a GPU tier of N bytes (e.g. 512M) and\n"
		"                    make the blocks resident with kvt_cache_reload (on\n"
		"                    the GPU when one is usable, else in host memory);\n"
		"                    quest and clusterkv then also select on the GPU\n"
		"  --per-query       also select for each query vector on its own (as\n"
		"                    at every decoding step) and report the mean recall\n"
		"The index stored with the cache is used when present (and brought up\n"
		"to date); otherwise it is built from the cache's keys.\n");
}

static int parse_mode(const char *s, enum kvt_retrieval_mode *m)
{
	for (int i = 0; i < KVT_RETRIEVE_N_MODES; i++)
		if (!strcmp(s, kvt_retrieval_mode_name((enum kvt_retrieval_mode)i))) {
			*m = (enum kvt_retrieval_mode)i;
			return 0;
		}
	return -1;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static int parse_opt(int c, struct ropts *o)
{
	double v = 0;
	switch (c) {
	case 'd': o->dir = optarg; return 0;
	case 'q': o->queries = optarg; return 0;
	case 'b': return parse_num(optarg, 1e-9, 1e15, &o->budget);
	case 'm': return parse_mode(optarg, &o->mode);
	case 'l': return parse_num(optarg, 0, KVT_MAX_LAYERS - 1, &v) ? -1 : (o->layer = (long)v, 0);
	case 's': return parse_num(optarg, 0, 1e9, &v) ? -1 : (o->sink = (uint32_t)v, 0);
	case 'r': return parse_num(optarg, 0, 1e9, &v) ? -1 : (o->recent = (uint32_t)v, 0);
	case 'c':
		if (parse_num(optarg, 4, 1024, &v))
			return -1;
		o->icfg.cluster_tokens = (uint32_t)v;
		o->icfg.chunk_tokens = (uint32_t)v * 16;
		return 0;
	case 'f': return parse_num(optarg, 1, 4096, &v) ? -1 : (o->icfg.frame_blocks = (uint32_t)v, 0);
	case 'S': o->save_index = 1; return 0;
	case 'R': o->rebuild = 1; return 0;
	case 'Q': o->quality = 0; return 0;
	case 'B': o->quiet_blocks = 1; return 0;
	case 'P': o->per_query = 1; return 0;
	case 'G':
		if (kvt_cli_parse_size(optarg, &o->gpu_bytes) || !o->gpu_bytes) {
			fprintf(stderr, "kvtier retrieve: bad --gpu-bytes '%s'\n", optarg);
			return -1;
		}
		return 0;
	}
	return -1;
}

static int parse(int argc, char **argv, struct ropts *o)
{
	static const struct option lo[] = {
		{"data-dir", 1, 0, 'd'}, {"queries", 1, 0, 'q'}, {"budget", 1, 0, 'b'},
		{"mode", 1, 0, 'm'}, {"layer", 1, 0, 'l'}, {"sink", 1, 0, 's'},
		{"recent", 1, 0, 'r'}, {"cluster-tokens", 1, 0, 'c'},
		{"frame-blocks", 1, 0, 'f'}, {"save-index", 0, 0, 'S'},
		{"rebuild-index", 0, 0, 'R'},
		{"no-quality", 0, 0, 'Q'}, {"no-blocks", 0, 0, 'B'},
		{"per-query", 0, 0, 'P'}, {"gpu-bytes", 1, 0, 'G'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct ropts){.budget = 0.1, .layer = -1, .sink = 16,
			    .recent = 128, .quality = 1};
	kvt_rindex_config_init(&o->icfg);
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (parse_opt(c, o)) {
			if (c != '?')
				fprintf(stderr, "kvtier retrieve: bad option value '%s'\n",
					optarg ? optarg : "");
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 1 || !o->dir || !o->queries) {
		fprintf(stderr, "kvtier retrieve: need --data-dir DIR, NAME and --queries Q.npy\n");
		usage(stderr);
		return 2;
	}
	o->name = argv[optind];
	return 0;
}

/* ---------------------------------------------------------------- queries */

struct queries {
	float *q;          /* [layers or 1][q_heads][n_queries][d] */
	uint32_t n_layers; /* 1: the same for every layer */
	uint32_t n_q_heads, n_queries;
};

static int check_queries(const struct kvt_npy *n, const struct kvt_shape *s,
			 struct queries *out)
{
	uint64_t L = 1, hq, nq = 1, d;
	if (n->ndim == 2)
		hq = n->shape[0], d = n->shape[1];
	else if (n->ndim == 3)
		L = n->shape[0], hq = n->shape[1], d = n->shape[2];
	else if (n->ndim == 4)
		L = n->shape[0], hq = n->shape[1], nq = n->shape[2], d = n->shape[3];
	else
		return KVT_ESHAPE;
	if (d != s->head_dim || !hq || hq > 4096 || hq % s->n_kv_heads ||
	    !nq || nq > 4096 || (n->ndim > 2 && L != s->n_layers))
		return KVT_ESHAPE;
	*out = (struct queries){NULL, (uint32_t)L, (uint32_t)hq, (uint32_t)nq};
	return 0;
}

static int load_queries(const char *path, const struct kvt_shape *s,
			struct queries *out)
{
	struct kvt_npy n;
	void *data;
	char msg[256] = "";
	int rc = kvt_npy_read(path, &n, &data, msg, sizeof msg);
	if (rc) {
		fprintf(stderr, "kvtier retrieve: %s: %s\n", path, msg[0] ? msg : kvt_strerror(rc));
		return rc;
	}
	if ((rc = check_queries(&n, s, out))) {
		fprintf(stderr, "kvtier retrieve: %s: need [q_heads, %u], [%u, q_heads, %u] "
			"or [%u, q_heads, queries, %u] with q_heads a multiple of %u\n",
			path, s->head_dim, s->n_layers, s->head_dim, s->n_layers,
			s->head_dim, s->n_kv_heads);
		free(data);
		return rc;
	}
	size_t cnt = n.data_len / kvt_dtype_size(n.dtype);
	out->q = malloc(cnt * sizeof(float));
	if (out->q)
		kvt_to_f32(n.dtype, data, out->q, cnt);
	free(data);
	return out->q ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- output */

static void print_blocks(const struct kvt_selection *s)
{
	printf("  blocks:");
	for (uint32_t i = 0; i < s->n_blocks;) {
		uint32_t j = i;
		while (j + 1 < s->n_blocks && s->blocks[j + 1] == s->blocks[j] + 1)
			j++;
		if (j == i)
			printf(" %u", s->blocks[i]);
		else
			printf(" %u-%u", s->blocks[i], s->blocks[j]);
		i = j + 1;
	}
	printf("\n");
}

struct layer_kv {
	void *k, *v;
	uint64_t n;
};

static int read_layer(struct kvt_cache *c, const struct kvt_shape *s,
		      uint32_t layer, uint64_t n, struct layer_kv *kv)
{
	size_t bytes = (size_t)s->n_kv_heads * n * s->head_dim * kvt_dtype_size(s->dtype);
	if (n > UINT32_MAX)
		return -E2BIG;
	kv->k = malloc(bytes ? bytes : 1), kv->v = malloc(bytes ? bytes : 1);
	kv->n = n;
	if (!kv->k || !kv->v)
		return -ENOMEM;
	return kvt_cache_read(c, layer, 0, (uint32_t)n, kv->k, kv->v);
}

struct totals {
	double recall, base_recall, oracle_recall, err;
	double pq_recall, pq_oracle; /* --per-query: means over the queries */
	uint32_t layers;
};

struct bmass {
	double mass;
	uint32_t block;
};

static int by_mass(const void *a, const void *b)
{
	const struct bmass *x = a, *y = b;
	return x->mass < y->mass ? 1 : x->mass > y->mass ? -1 : 0;
}

/* The block oracle: the sink and recent blocks kvt_retrieve forces, then
 * the blocks holding the most true attention mass while the budget lasts
 * (what no selection can beat at block granularity). */
static int oracle_select(const struct kvt_shape *s, const struct kvt_retrieve_params *p,
			 const double *mass, uint64_t n, struct kvt_selection *out)
{
	uint32_t bt = s->block_tokens, nb = (uint32_t)((n + bt - 1) / bt);
	uint64_t sink_b = ((uint64_t)p->sink_tokens + bt - 1) / bt;
	uint64_t recent_b = p->recent_tokens == 0 ? nb
			    : n > p->recent_tokens ? (n - p->recent_tokens) / bt : 0;
	struct bmass *m = calloc(nb, sizeof *m);
	uint8_t *pick = calloc(nb, 1);
	out->blocks = malloc(nb * sizeof *out->blocks);
	out->n_valid = malloc(nb * sizeof *out->n_valid);
	if (!m || !pick || !out->blocks || !out->n_valid) {
		free(m), free(pick), kvt_selection_free(out);
		return -ENOMEM;
	}
	uint64_t used = 0, left;
	for (uint32_t b = 0; b < nb; b++) {
		uint32_t v = b + 1 < nb ? bt : (uint32_t)(n - (uint64_t)b * bt);
		m[b].block = b;
		for (uint32_t t = 0; t < v; t++)
			m[b].mass += mass[(uint64_t)b * bt + t];
		if (b < sink_b || b >= recent_b)
			pick[b] = 1, used += v;
	}
	qsort(m, nb, sizeof *m, by_mass);
	left = used < p->budget_tokens ? p->budget_tokens - used : 0;
	for (uint32_t i = 0; i < nb && left >= bt; i++)
		if (!pick[m[i].block] && m[i].block + 1 < nb)
			pick[m[i].block] = 1, left -= bt;
	out->n_blocks = 0, out->n_tokens = 0, out->block_tokens = bt, out->total_tokens = n;
	for (uint32_t b = 0; b < nb; b++)
		if (pick[b]) {
			uint32_t v = b + 1 < nb ? bt : (uint32_t)(n - (uint64_t)b * bt);
			out->blocks[out->n_blocks] = b, out->n_valid[out->n_blocks++] = v;
			out->n_tokens += v;
		}
	free(m), free(pick);
	return 0;
}

static int oracle_quality(const struct kvt_shape *s, const struct kvt_retrieve_params *p,
			  const float *q, const struct layer_kv *kv, uint32_t layer,
			  struct kvt_attn_quality *qo)
{
	double *mass = malloc(kv->n * sizeof *mass);
	struct kvt_selection sel = {.layer = layer};
	int rc = mass ? kvt_attn_token_mass(s, p->n_q_heads, p->n_queries, q, kv->k,
					    kv->n, mass) : -ENOMEM;
	if (rc == 0)
		rc = oracle_select(s, p, mass, kv->n, &sel);
	if (rc == 0)
		rc = kvt_attn_quality(s, p->n_q_heads, p->n_queries, q, kv->k, kv->v,
				      kv->n, &sel, qo);
	kvt_selection_free(&sel);
	free(mass);
	return rc;
}

/* The figures of one selection against full attention over kv (the
 * layer's keys and values). */
static int quality(const struct ropts *o, const struct layer_kv *kv,
		   const struct kvt_shape *s, struct kvt_rindex *idx,
		   const struct kvt_retrieve_params *p, const float *q,
		   const struct kvt_selection *sel, struct totals *t)
{
	struct kvt_attn_quality qa, qb, qo;
	struct kvt_retrieve_params pb = *p;
	struct kvt_selection base = {0};
	pb.mode = KVT_RETRIEVE_RECENT;
	int rc = kvt_attn_quality(s, p->n_q_heads, p->n_queries, q, kv->k, kv->v,
				      kv->n, sel, &qa);
	if (rc == 0)
		rc = kvt_retrieve(idx, sel->layer, &pb, q, &base);
	if (rc == 0)
		rc = kvt_attn_quality(s, p->n_q_heads, p->n_queries, q, kv->k, kv->v,
				      kv->n, &base, &qb);
	if (rc == 0)
		rc = oracle_quality(s, p, q, kv, sel->layer, &qo);
	if (rc == 0) {
		printf("  %s: attention mass recall %.4f (worst q head %.4f), "
		       "output error %.4f; recent-window baseline: recall %.4f, "
		       "error %.4f; block oracle: recall %.4f, error %.4f\n",
		       kvt_retrieval_mode_name(o->mode), qa.mass_recall, qa.min_recall,
		       qa.rel_error, qb.mass_recall, qb.rel_error, qo.mass_recall,
		       qo.rel_error);
		t->recall += qa.mass_recall, t->base_recall += qb.mass_recall;
		t->oracle_recall += qo.mass_recall;
		t->err += qa.rel_error, t->layers++;
	}
	kvt_selection_free(&base);
	return rc;
}

/* Query vector j of every q head ([q_head][queries][d]) into qj. */
static void query_j(const float *q, uint32_t heads, uint32_t nq, uint32_t d,
		    uint32_t j, float *qj)
{
	for (uint32_t h = 0; h < heads; h++)
		memcpy(qj + (size_t)h * d, q + ((size_t)h * nq + j) * d, d * sizeof *qj);
}

/* One selection per query vector, as a decoder selecting at every step
 * would make: mean recall of those and of the block oracle. */
static int per_query(const struct layer_kv *kv, const struct kvt_shape *s,
		     struct kvt_rindex *idx, const struct kvt_retrieve_params *p,
		     const float *q, uint32_t layer, struct totals *t)
{
	struct kvt_retrieve_params pj = *p;
	float *qj = malloc((size_t)p->n_q_heads * s->head_dim * sizeof *qj);
	double r = 0, ro = 0;
	int rc = qj ? 0 : -ENOMEM;
	pj.n_queries = 1;
	for (uint32_t j = 0; rc == 0 && j < p->n_queries; j++) {
		struct kvt_selection sel = {0};
		struct kvt_attn_quality qa, qo;
		query_j(q, p->n_q_heads, p->n_queries, s->head_dim, j, qj);
		rc = kvt_retrieve(idx, layer, &pj, qj, &sel);
		if (rc == 0)
			rc = kvt_attn_quality(s, p->n_q_heads, 1, qj, kv->k, kv->v, kv->n, &sel, &qa);
		if (rc == 0)
			rc = oracle_quality(s, &pj, qj, kv, layer, &qo);
		r += rc == 0 ? qa.mass_recall : 0, ro += rc == 0 ? qo.mass_recall : 0;
		kvt_selection_free(&sel);
	}
	if (rc == 0) {
		printf("  per query (%u selections): recall %.4f, block oracle %.4f\n",
		       p->n_queries, r / p->n_queries, ro / p->n_queries);
		t->pq_recall += r / p->n_queries, t->pq_oracle += ro / p->n_queries;
	}
	free(qj);
	return rc;
}

/* Loads the selection into a block pool, the way an attention kernel
 * would get it. */
static int load(struct kvt_cache *c, const struct kvt_shape *s,
		const struct kvt_selection *sel)
{
	size_t bb = kvt_block_bytes(s);
	void *pool = malloc((size_t)sel->n_blocks * bb + 1);
	struct kvt_block_table t;
	if (!pool)
		return -ENOMEM;
	double t0 = kvt_cli_now();
	int rc = kvt_retrieve_load(c, sel, pool, (size_t)sel->n_blocks * bb, &t);
	if (rc == 0) {
		printf("  loaded %u blocks (%.1f MiB) into the block pool in %.2f ms\n",
		       t.n_blocks, (double)t.n_blocks * bb / (1 << 20),
		       (kvt_cli_now() - t0) * 1e3);
		kvt_block_table_free(&t);
	}
	free(pool);
	return rc;
}

static const char *tier_of(enum kvt_tier_kind k)
{
	return k == KVT_TIER_GPU ? "GPU" : "host";
}

/* --gpu-bytes: the store's asynchronous reload, into the GPU tier when the
 * store has one; counts where the blocks landed. */
static int reload(struct kvt_cache *c, const struct kvt_selection *sel)
{
	struct kvt_reload *r;
	const struct kvt_reload_block *b;
	size_t n, on_gpu = 0;
	double t0 = kvt_cli_now();
	int rc = kvt_cache_reload(c, sel->layer, sel->blocks, sel->n_blocks, NULL, &r);
	if (rc)
		return rc;
	rc = kvt_reload_wait(r, &b, &n);
	double dt = kvt_cli_now() - t0;
	for (size_t i = 0; i < n; i++)
		on_gpu += b[i].status == 0 && b[i].tier == KVT_TIER_GPU;
	if (rc == 0)
		printf("  reloaded %zu blocks (%.1f MiB) in %.2f ms: %zu in GPU memory, "
		       "%zu in host memory (first block: %s)\n", n,
		       (double)n * b[0].bytes / (1 << 20), dt * 1e3, on_gpu, n - on_gpu,
		       tier_of(b[0].tier));
	kvt_reload_release(r);
	return rc;
}

/* Quest and ClusterKV with a GPU index select on the GPU; the others on
 * the CPU. */
static int select_layer(struct kvt_rindex *idx, struct kvt_rindex_gpu *g,
			uint32_t layer, const struct kvt_retrieve_params *p,
			const float *q, struct kvt_selection *sel, const char **where)
{
	*where = "";
	if (g && (p->mode == KVT_RETRIEVE_QUEST || p->mode == KVT_RETRIEVE_CLUSTERKV)) {
		*where = " on the GPU";
		return kvt_retrieve_gpu(g, idx, layer, p, q, sel);
	}
	return kvt_retrieve(idx, layer, p, q, sel);
}

static int one_layer(const struct ropts *o, struct kvt_cache *c,
		     const struct kvt_shape *s, struct kvt_rindex *idx,
		     struct kvt_rindex_gpu *g, const struct queries *qs,
		     uint32_t layer, struct totals *t)
{
	struct kvt_rindex_layer_info li;
	kvt_rindex_layer_info(idx, layer, &li);
	if (li.n_tokens == 0) {
		printf("layer %u: empty\n", layer);
		return 0;
	}
	struct kvt_retrieve_params p;
	kvt_retrieve_params_init(&p);
	p.mode = o->mode, p.n_q_heads = qs->n_q_heads, p.n_queries = qs->n_queries;
	p.sink_tokens = o->sink, p.recent_tokens = o->recent;
	p.budget_tokens = o->budget < 1 ? (uint64_t)(o->budget * (double)li.n_tokens)
					 : (uint64_t)o->budget;
	size_t per = (size_t)qs->n_q_heads * qs->n_queries * s->head_dim;
	const float *q = qs->q + (qs->n_layers == 1 ? 0 : layer * per);
	struct kvt_selection sel;
	const char *where;
	double t0 = kvt_cli_now();
	int rc = select_layer(idx, g, layer, &p, q, &sel, &where);
	double dt = kvt_cli_now() - t0;
	if (rc) {
		fprintf(stderr, "kvtier retrieve: layer %u: %s%s\n", layer, kvt_strerror(rc),
			rc == -EINVAL ? " (is the budget below the sink + recent blocks?)" : "");
		return rc;
	}
	printf("layer %u: %u blocks, %lu of %lu tokens (%.1f%%), selected%s in %.3f ms\n",
	       layer, sel.n_blocks, (unsigned long)sel.n_tokens,
	       (unsigned long)li.n_tokens, 100.0 * sel.n_tokens / li.n_tokens, where,
	       dt * 1e3);
	if (!o->quiet_blocks)
		print_blocks(&sel);
	rc = o->gpu_bytes ? reload(c, &sel) : load(c, s, &sel);
	struct layer_kv kv = {0};
	if (rc == 0 && o->quality)
		rc = read_layer(c, s, layer, sel.total_tokens, &kv);
	if (rc == 0 && o->quality)
		rc = quality(o, &kv, s, idx, &p, q, &sel, t);
	if (rc == 0 && o->quality && o->per_query)
		rc = per_query(&kv, s, idx, &p, q, layer, t);
	free(kv.k), free(kv.v);
	if (rc)
		fprintf(stderr, "kvtier retrieve: layer %u: %s\n", layer, kvt_strerror(rc));
	kvt_selection_free(&sel);
	return rc;
}

/* ---------------------------------------------------------------- index */

static int get_index(const struct ropts *o, struct kvt_cache *c,
		     struct kvt_rindex **out)
{
	double t0 = kvt_cli_now();
	int rc = o->rebuild ? KVT_ENOTFOUND : kvt_rindex_open(c, out);
	if (rc == 0) {
		rc = kvt_rindex_update_from_cache(*out, c);
		printf("index: stored with the cache, brought up to date in %.2f s\n",
		       kvt_cli_now() - t0);
	} else if (rc == KVT_ENOTFOUND) {
		rc = kvt_rindex_build_from_cache(c, &o->icfg, out);
		if (rc == 0)
			printf("index: built from the cache's keys in %.2f s\n", kvt_cli_now() - t0);
	}
	if (rc) {
		fprintf(stderr, "kvtier retrieve: index: %s%s\n", kvt_strerror(rc),
			rc == KVT_ECORRUPT || rc == KVT_EFORMAT || rc == KVT_EVERSION
				? " (--rebuild-index builds it again)" : "");
		return rc;
	}
	if (o->save_index && (rc = kvt_rindex_persist(*out, c)))
		fprintf(stderr, "kvtier retrieve: saving the index: %s\n", kvt_strerror(rc));
	else if (o->save_index)
		printf("index: stored with the cache\n");
	return rc;
}

static int run_cache(const struct ropts *o, struct kvt_cache *c)
{
	struct kvt_cache_info info;
	struct queries qs = {0};
	struct kvt_rindex *idx = NULL;
	struct kvt_rindex_gpu *g = NULL;
	struct totals t = {0};
	int rc = kvt_cache_get_info(c, &info);
	const struct kvt_shape *s = &info.config.shape;
	if (rc == 0 && o->layer >= (long)s->n_layers) {
		fprintf(stderr, "kvtier retrieve: the cache has %u layers\n", s->n_layers);
		return 2;
	}
	if (rc == 0)
		rc = load_queries(o->queries, s, &qs);
	if (rc == 0)
		rc = get_index(o, c, &idx);
	if (rc == 0 && o->gpu_bytes &&
	    (o->mode == KVT_RETRIEVE_QUEST || o->mode == KVT_RETRIEVE_CLUSTERKV)) {
		int g_rc = kvt_rindex_gpu_create(idx, &g);
		if (g_rc)
			printf("GPU selection: %s; selecting on the CPU\n", kvt_strerror(g_rc));
	}
	for (uint32_t l = 0; rc == 0 && l < s->n_layers; l++)
		if (o->layer < 0 || o->layer == (long)l)
			rc = one_layer(o, c, s, idx, g, &qs, l, &t);
	if (rc == 0 && t.layers > 1)
		printf("mean over %u layers: recall %.4f (recent window %.4f, block oracle "
		       "%.4f), output error %.4f\n", t.layers, t.recall / t.layers,
		       t.base_recall / t.layers, t.oracle_recall / t.layers,
		       t.err / t.layers);
	if (rc == 0 && t.layers > 1 && o->per_query)
		printf("mean over %u layers, one selection per query: recall %.4f (block "
		       "oracle %.4f)\n", t.layers, t.pq_recall / t.layers,
		       t.pq_oracle / t.layers);
	kvt_rindex_gpu_free(g);
	kvt_rindex_free(idx);
	free(qs.q);
	return rc ? 1 : 0;
}

int kvt_cmd_retrieve(int argc, char **argv)
{
	struct ropts o;
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	struct kvt_store_config cfg;
	struct kvt_store *st;
	struct kvt_cache *c;
	kvt_store_config_init(&cfg);
	cfg.data_dir = o.dir;
	cfg.gpu_bytes = o.gpu_bytes;
	if ((rc = kvt_store_open(&cfg, &st))) {
		fprintf(stderr, "kvtier retrieve: %s: %s\n", o.dir, kvt_strerror(rc));
		return 1;
	}
	if ((rc = kvt_cache_open(st, o.name, &c))) {
		fprintf(stderr, "kvtier retrieve: %s: %s\n", o.name, kvt_strerror(rc));
		kvt_store_close(st);
		return 1;
	}
	rc = run_cache(&o, c);
	kvt_cache_close(c);
	kvt_store_close(st);
	return rc;
}
