/*
 * bench_retrieval - ClusterKV and ReKV block selection on synthetic
 * clustered keys: selection latency per layer (one CPU core), attention
 * mass recall and attention output error at several budgets, next to a
 * recent-window baseline and the time of one full attention pass over the
 * same layer (the CPU reference), all measured in the same run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kvtier/retrieval.h"
#include "retrieval/synth.h"

#define MAX_SIZES 4
#define MAX_BUDGETS 8
/* rows: the modes, the block oracle, Quest and ClusterKV on the GPU */
#define N_MODES (KVT_RETRIEVE_N_MODES + 3)
#define ORACLE KVT_RETRIEVE_N_MODES
#define QUEST_GPU (KVT_RETRIEVE_N_MODES + 1)
#define CKV_GPU (KVT_RETRIEVE_N_MODES + 2)
#define IS_GPU(m) ((m) == QUEST_GPU || (m) == CKV_GPU)

struct opts {
	struct synth syn;
	uint64_t sizes[MAX_SIZES];
	int n_sizes;
	double budgets[MAX_BUDGETS];
	int n_budgets;
	unsigned queries, trials, reps;
	struct kvt_rindex_config icfg;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_retrieval [OPTIONS]\n"
		"Block selection on synthetic clustered keys (segments of 16..256\n"
		"tokens around random topic directions; queries mix a few topics):\n"
		"selection time per layer on one core, attention mass recall and\n"
		"output error vs full attention, for ClusterKV, Quest, ReKV and a recent\n"
		"window baseline, next to one full CPU attention pass; (oracle) is\n"
		"the best blocks by true attention mass, an upper bound.\n"
		"  --tokens LIST    sequence lengths (default 32768,131072)\n"
		"  --budgets LIST   budgets as fractions (default 0.05,0.1,0.2)\n"
		"  --heads H        kv heads (default 8)\n"
		"  --q-heads Q      query heads (default 32)\n"
		"  --dim D          head dim (default 128)\n"
		"  --queries N      query vectors per q head (default 1)\n"
		"  --topics N       topic directions per kv head (default 256)\n"
		"  --rope           rotate keys and queries RoPE-style (every dimension\n"
		"                   rotates, which scrambles the topics at long range:\n"
		"                   a stress case, not a model of real post-RoPE keys)\n"
		"  --noise X        per-dimension key noise (default 0.5)\n"
		"  --seg MIN,MAX    segment lengths in tokens (default 16,256)\n"
		"  --q-scale X      query strength (default 12)\n"
		"  --cluster N      tokens per cluster (default 64)\n"
		"  --trials N       query sets per size (default 3)\n"
		"  --reps N         timed selections per figure (default 20)\n");
}

static int parse_list(const char *s, double *out, int max)
{
	int n = 0;
	char *end;
	while (*s && n < max) {
		out[n++] = strtod(s, &end);
		if (end == s)
			return -1;
		s = *end == ',' ? end + 1 : end;
	}
	return n;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"tokens", 1, 0, 't'}, {"budgets", 1, 0, 'b'}, {"heads", 1, 0, 'H'},
		{"q-heads", 1, 0, 'Q'}, {"dim", 1, 0, 'D'}, {"queries", 1, 0, 'q'},
		{"topics", 1, 0, 'T'}, {"rope", 0, 0, 'R'}, {"noise", 1, 0, 'n'},
		{"q-scale", 1, 0, 's'}, {"cluster", 1, 0, 'c'}, {"seg", 1, 0, 'g'},
		{"trials", 1, 0, 'x'}, {"reps", 1, 0, 'r'}, {"help", 0, 0, 'h'},
		{0, 0, 0, 0},
	};
	synth_defaults(&o->syn);
	kvt_rindex_config_init(&o->icfg);
	o->sizes[0] = 32768, o->sizes[1] = 131072, o->n_sizes = 2;
	o->budgets[0] = 0.05, o->budgets[1] = 0.1, o->budgets[2] = 0.2;
	o->n_budgets = 3, o->queries = 1, o->trials = 3, o->reps = 20;
	double tmp[MAX_SIZES];
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 't':
			o->n_sizes = parse_list(optarg, tmp, MAX_SIZES);
			for (int i = 0; i < o->n_sizes; i++)
				o->sizes[i] = (uint64_t)tmp[i];
			break;
		case 'b': o->n_budgets = parse_list(optarg, o->budgets, MAX_BUDGETS); break;
		case 'H': o->syn.n_kv_heads = (uint32_t)atoi(optarg); break;
		case 'Q': o->syn.n_q_heads = (uint32_t)atoi(optarg); break;
		case 'D': o->syn.head_dim = (uint32_t)atoi(optarg); break;
		case 'q': o->queries = (unsigned)atoi(optarg); break;
		case 'T': o->syn.n_topics = (uint32_t)atoi(optarg); break;
		case 'R': o->syn.rope = 1; break;
		case 'n': o->syn.noise = (float)atof(optarg); break;
		case 'g':
			if (parse_list(optarg, tmp, 2) != 2 || tmp[0] < 1 || tmp[1] < tmp[0])
				return -1;
			o->syn.seg_min = (uint32_t)tmp[0], o->syn.seg_max = (uint32_t)tmp[1];
			break;
		case 's': o->syn.q_scale = (float)atof(optarg); break;
		case 'c':
			o->icfg.cluster_tokens = (uint32_t)atoi(optarg);
			o->icfg.chunk_tokens = o->icfg.cluster_tokens * 16;
			break;
		case 'x': o->trials = (unsigned)atoi(optarg); break;
		case 'r': o->reps = (unsigned)atoi(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (o->n_sizes <= 0 || o->n_budgets <= 0 || !o->syn.n_kv_heads ||
	    !o->syn.head_dim || !o->queries || !o->trials || !o->reps ||
	    !o->syn.n_topics || o->syn.n_q_heads % o->syn.n_kv_heads) {
		fprintf(stderr, "bench_retrieval: bad sizes (q heads must be a multiple of kv heads)\n");
		return -1;
	}
	return 0;
}

struct figures {
	double sel_s, recall, min_recall, err, tokens;
};

struct layer_data {
	struct kvt_shape shape;
	uint16_t *k, *v;
	float *dirs, *q;
	uint32_t *topic;
	struct kvt_rindex *idx;
	struct kvt_rindex_gpu *gpu; /* NULL without a usable GPU */
};

struct cand {
	double mass;
	uint32_t block;
};

static int by_mass(const void *a, const void *b)
{
	double x = ((const struct cand *)a)->mass, y = ((const struct cand *)b)->mass;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The best blocks by true attention mass (no sink or window): an upper
 * bound for any block selection of that budget. */
static int oracle(const struct opts *o, struct layer_data *L, uint64_t budget,
		  struct figures *f)
{
	uint64_t n = o->syn.n_tokens;
	uint32_t nb = (uint32_t)((n + 15) / 16), k = (uint32_t)(budget / 16);
	double *mass = malloc(n * sizeof *mass);
	struct cand *c = calloc(nb, sizeof *c);
	uint8_t *in = calloc(nb, 1);
	struct kvt_selection s = {0, 16, 0, malloc(nb * 4), malloc(nb * 4), 0, n};
	int rc = mass && c && in && s.blocks && s.n_valid ? 0 : -1;
	if (rc == 0)
		rc = kvt_attn_token_mass(&L->shape, o->syn.n_q_heads, o->queries,
					 L->q, L->k, n, mass);
	for (uint64_t t = 0; rc == 0 && t < n; t++)
		c[t / 16].mass += mass[t], c[t / 16].block = (uint32_t)(t / 16);
	if (rc == 0)
		qsort(c, nb, sizeof *c, by_mass);
	for (uint32_t i = 0; rc == 0 && i < k && i < nb; i++)
		in[c[i].block] = 1;
	for (uint32_t b = 0; rc == 0 && b < nb; b++)
		if (in[b]) {
			s.blocks[s.n_blocks] = b;
			s.n_valid[s.n_blocks++] = b + 1 < nb ? 16 : (uint32_t)(n - (uint64_t)b * 16);
			s.n_tokens += s.n_valid[s.n_blocks - 1];
		}
	struct kvt_attn_quality qa;
	if (rc == 0)
		rc = kvt_attn_quality(&L->shape, o->syn.n_q_heads, o->queries, L->q,
				      L->k, L->v, n, &s, &qa);
	if (rc == 0)
		*f = (struct figures){0, qa.mass_recall, qa.min_recall, qa.rel_error,
				      (double)s.n_tokens};
	free(mass), free(c), free(in);
	kvt_selection_free(&s);
	return rc;
}

/* gpu: kvt_retrieve_gpu (the first run also uploads the index). */
static int timed_select(const struct opts *o, struct layer_data *L,
			struct kvt_retrieve_params *p, int gpu, struct figures *f)
{
	struct kvt_selection s;
	double best = 1e30;
	for (unsigned r = 0; r < o->reps; r++) {
		double t0 = bench_now();
		int rc = gpu ? kvt_retrieve_gpu(L->gpu, L->idx, 0, p, L->q, &s)
			     : kvt_retrieve(L->idx, 0, p, L->q, &s);
		double t = bench_now() - t0;
		if (rc == -EINVAL) { /* the budget is below the sink + window */
			f->tokens = -1;
			return 0;
		}
		if (rc) {
			fprintf(stderr, "retrieve: %s\n", kvt_strerror(rc));
			return rc;
		}
		best = t < best ? t : best;
		if (r + 1 < o->reps)
			kvt_selection_free(&s);
	}
	struct kvt_attn_quality qa;
	int rc = kvt_attn_quality(&L->shape, o->syn.n_q_heads, o->queries, L->q,
				  L->k, L->v, o->syn.n_tokens, &s, &qa);
	if (rc == 0)
		*f = (struct figures){best, qa.mass_recall, qa.min_recall,
				      qa.rel_error, (double)s.n_tokens};
	kvt_selection_free(&s);
	return rc;
}

static int build(const struct opts *o, struct layer_data *L)
{
	uint64_t st = 1234;
	size_t n = (size_t)o->syn.n_kv_heads * o->syn.n_tokens * o->syn.head_dim;
	L->shape = (struct kvt_shape){1, o->syn.n_kv_heads, o->syn.head_dim, 16,
				      KVT_DTYPE_F16};
	L->dirs = synth_topics(&o->syn, &st);
	L->k = malloc(n * 2), L->v = malloc(n * 2);
	L->topic = malloc(o->syn.n_tokens * sizeof *L->topic);
	L->q = malloc((size_t)o->syn.n_q_heads * o->queries * o->syn.head_dim * 4);
	if (!L->dirs || !L->k || !L->v || !L->q || !L->topic)
		return -1;
	double t0 = bench_now();
	synth_kv(&o->syn, L->dirs, KVT_DTYPE_F16, L->k, L->v, L->topic, &st);
	printf("  generated %lu tokens x %u kv heads x %u dims (fp16) in %.1f s\n",
	       (unsigned long)o->syn.n_tokens, o->syn.n_kv_heads, o->syn.head_dim,
	       bench_now() - t0);
	fflush(stdout);
	t0 = bench_now();
	int rc = kvt_rindex_create(&L->shape, &o->icfg, &L->idx);
	if (rc == 0)
		rc = kvt_rindex_add(L->idx, 0, L->k, (uint32_t)o->syn.n_tokens);
	double t = bench_now() - t0;
	struct kvt_rindex_layer_info li;
	kvt_rindex_layer_info(L->idx, 0, &li);
	printf("  index: %u clusters per kv head, %.2f s to add all keys "
	       "(%.0f tokens/s, clustering included)\n",
	       li.n_clusters, t, (double)o->syn.n_tokens / t);
	int g = rc == 0 ? kvt_rindex_gpu_create(L->idx, &L->gpu) : 0;
	if (g)
		printf("  GPU: %s: selection on the GPU not measured\n", kvt_strerror(g));
	return rc;
}

static void free_layer(struct layer_data *L)
{
	free(L->k), free(L->v), free(L->dirs), free(L->q), free(L->topic);
	kvt_rindex_gpu_free(L->gpu);
	kvt_rindex_free(L->idx);
}

static double full_attention_time(const struct opts *o, struct layer_data *L)
{
	size_t n = (size_t)o->syn.n_q_heads * o->queries * o->syn.head_dim;
	float *out = malloc(n * sizeof *out);
	double best = 1e30;
	for (int r = 0; out && r < 2; r++) {
		double t0 = bench_now();
		kvt_attn_full(&L->shape, o->syn.n_q_heads, o->queries, L->q, L->k,
			      L->v, o->syn.n_tokens, out);
		double t = bench_now() - t0;
		best = t < best ? t : best;
	}
	free(out);
	return best;
}

static void report(const struct opts *o, const struct figures f[MAX_BUDGETS][N_MODES],
		   double t_full)
{
	printf("  %-7s %-10s %9s %9s %8s %8s %8s %10s\n", "budget", "mode",
	       "tokens", "select", "vs attn", "recall", "min", "out err");
	for (int b = 0; b < o->n_budgets; b++)
		for (int m = 0; m < N_MODES; m++) {
			const struct figures *x = &f[b][m];
			const char *name = m == QUEST_GPU ? "quest-gpu"
					   : m == CKV_GPU ? "ckv-gpu"
					   : kvt_retrieval_mode_name((enum kvt_retrieval_mode)m);
			if (IS_GPU(m) && x->tokens == 0)
				continue; /* no GPU */
			if (x->tokens < 0) {
				printf("  %5.0f%%  %-10s (budget below the sink + recent window)\n",
				       o->budgets[b] * 100, name);
				continue;
			}
			if (m == ORACLE) {
				printf("  %5.0f%%  %-10s %9.0f %10s %8s %8.4f %8.4f %10.4f\n",
				       o->budgets[b] * 100, "(oracle)", x->tokens, "-", "-",
				       x->recall, x->min_recall, x->err);
				continue;
			}
			printf("  %5.0f%%  %-10s %9.0f %7.3f ms %7.2f%% %8.4f %8.4f %10.4f\n",
			       o->budgets[b] * 100, name, x->tokens, x->sel_s * 1e3, 100 * x->sel_s / t_full,
			       x->recall, x->min_recall, x->err);
		}
}

static int run_trial(const struct opts *o, struct layer_data *L, unsigned trial,
		     struct figures acc[MAX_BUDGETS][N_MODES])
{
	uint64_t st = 777 + trial;
	synth_queries(&o->syn, L->dirs, L->topic, o->queries, o->syn.n_tokens, L->q, &st);
	for (int b = 0; b < o->n_budgets; b++)
		for (int m = 0; m < N_MODES; m++) {
			struct kvt_retrieve_params p;
			struct figures f;
			if (IS_GPU(m) && !L->gpu)
				continue;
			kvt_retrieve_params_init(&p);
			p.mode = m == QUEST_GPU ? KVT_RETRIEVE_QUEST
				 : m == CKV_GPU ? KVT_RETRIEVE_CLUSTERKV
						: (enum kvt_retrieval_mode)m;
			p.n_q_heads = o->syn.n_q_heads, p.n_queries = o->queries;
			p.budget_tokens = (uint64_t)(o->budgets[b] * (double)o->syn.n_tokens);
			int rc = m == ORACLE ? oracle(o, L, p.budget_tokens, &f)
					: timed_select(o, L, &p, IS_GPU(m), &f);
			if (rc)
				return rc;
			struct figures *a = &acc[b][m];
			if (f.tokens < 0 || a->tokens < 0) {
				a->tokens = -1;
				continue;
			}
			a->sel_s += f.sel_s / o->trials, a->recall += f.recall / o->trials;
			a->err += f.err / o->trials, a->tokens += f.tokens / o->trials;
			a->min_recall = trial == 0 || f.min_recall < a->min_recall
						? f.min_recall : a->min_recall;
		}
	return 0;
}

static int run_size(struct opts *o, uint64_t n)
{
	struct layer_data L = {0};
	struct figures acc[MAX_BUDGETS][N_MODES];
	memset(acc, 0, sizeof acc);
	o->syn.n_tokens = n;
	printf("\n== %lu tokens, one layer ==\n", (unsigned long)n);
	int rc = build(o, &L);
	double t_full = 0;
	for (unsigned t = 0; rc == 0 && t < o->trials; t++) {
		rc = run_trial(o, &L, t, acc);
		if (rc == 0 && t == 0)
			t_full = full_attention_time(o, &L);
		printf("  trial %u/%u done\n", t + 1, o->trials);
		fflush(stdout);
	}
	if (rc == 0) {
		printf("  baseline: full CPU reference attention over the layer "
		       "(%u q heads x %u queries): %.1f ms\n",
		       o->syn.n_q_heads, o->queries, t_full * 1e3);
		report(o, acc, t_full);
	}
	free_layer(&L);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 2;
	printf("bench_retrieval: %u kv heads, %u q heads, dim %u, %u topics, "
	       "segments %u..%u tokens, noise %.2f, q scale %.1f%s, "
	       "%u tokens/cluster, %u trials\n"
	       "select = best of %u runs, one core; recall = attention mass of the "
	       "selected tokens (mean over q heads; min = worst q head);\n"
	       "out err = relative L2 error of the attention output vs full attention\n",
	       o.syn.n_kv_heads, o.syn.n_q_heads, o.syn.head_dim, o.syn.n_topics,
	       o.syn.seg_min, o.syn.seg_max, o.syn.noise, o.syn.q_scale, o.syn.rope ? ", RoPE" : "",
	       o.icfg.cluster_tokens, o.trials, o.reps);
	for (int i = 0; i < o.n_sizes; i++)
		if (run_size(&o, o.sizes[i]))
			return 1;
	return 0;
}
