/*
 * bench_llm_qa - quality and speed of the store in the loop on a real
 * model (SmolLM2-135M, Debian FAQ; see examples/llm/qa_demo.c).
 *
 * The document prefix is prefilled once into several kvtier caches that
 * differ only in their cold codec (raw, KIVI-2, KIVI-4, ZipCache when the
 * codec is built, with the model's prefill attention as saliency; --zip
 * compares several ZipCache settings). Per question, the reference is full-cache attention:
 * every document block, unquantized, then a greedy answer A. Each
 * (codec, budget) pair retrieves blocks (ReKV selection), loads them from
 * its cache and is scored teacher-forced on A: the share of answer
 * positions whose greedy token equals A's (agreement) and the mean
 * KL(full || retrieved) of the next-token distributions. Retrieval is
 * also scored by evidence recall (qa.h). Prefill speed is reported
 * against the same prefill without the store (model alone), in one run.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kvstore.h"
#include "llm_set.h"
#include "qa.h"

#define MAX_BUDGETS 8
#define MAX_ZIP 5
#define N_CODECS (3 + MAX_ZIP) /* raw, KIVI-2, KIVI-4, ZipCache configs */
#define N_METHODS 5 /* simple, kvtier ReKV, ClusterKV, Quest, oracle */

static const char *method_name[N_METHODS] = {"simple", "rekv", "clusterkv", "quest",
					     "oracle"};

struct opts {
	const char *model;
	uint32_t tokens, questions, max_new, threads, n_budgets;
	uint32_t budgets[MAX_BUDGETS];
	int free_run, recall_only, rope_free, method, no_saliency;
	uint32_t n_zip;
	struct { uint8_t bits, high; float ratio; } zip[MAX_ZIP];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_llm_qa [--tokens N] [--questions N] [--max-new N]\n"
		"                    [--budgets P,P,..] [--free-run] [--threads T] [--model PATH]\n"
		"Answer agreement and logit KL vs full-cache attention for retrieval budgets\n"
		"(%% of the document) x cold codecs (raw, KIVI-2, KIVI-4, ZipCache), evidence\n"
		"recall of retrieval, and prefill tokens/s with and without the store.\n"
		"  --tokens N     document prefix (default 2048)\n"
		"  --questions N  questions, spread over the prefix's sections (default 6)\n"
		"  --max-new N    reference answer length at most (default 24)\n"
		"  --budgets LIST retrieval budgets in %% (default 5,10,20,100)\n"
		"  --free-run     also generate freely per config: exact-answer rate\n"
		"  --recall-only  only retrieval recall (no answers; fast)\n"
		"  --rope-free    simple retrieval with RoPE undone (llm_rekv_config.rope_free)\n"
		"  --retrieval M  selection used for the answers: simple, rekv, clusterkv\n"
		"                 (default), quest or oracle\n"
		"  --threads T    worker threads (default: online CPUs)\n"
		"  --zip LIST     ZipCache cold codecs, bits/high_bits/salient_ratio each\n"
		"                 (default 2/4/0.2; ratio 0 = no salient token)\n"
		"  --no-saliency  no saliency scores for the ZipCache caches (every token\n"
		"                 low-bit; llm_rekv_config.saliency = 0)\n");
}

static int parse_budgets(const char *s, struct opts *o)
{
	o->n_budgets = 0;
	for (char *end; *s && o->n_budgets < MAX_BUDGETS; s = *end ? end + 1 : end) {
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || v == 0 || v > 100)
			return -1;
		o->budgets[o->n_budgets++] = (uint32_t)v;
	}
	return o->n_budgets ? 0 : -1;
}

static int parse_zip(const char *s, struct opts *o)
{
	o->n_zip = 0;
	for (char *end; *s && o->n_zip < MAX_ZIP; s = *end ? end + 1 : end) {
		unsigned long lo = strtoul(s, &end, 10), hi = 0;
		float r = -1;
		if (*end == '/')
			hi = strtoul(end + 1, &end, 10);
		if (*end == '/')
			r = strtof(end + 1, &end);
		if (lo == 0 || hi <= lo || hi > 8 || !(r >= 0 && r <= 1) || (*end && *end != ','))
			return -1;
		o->zip[o->n_zip].bits = (uint8_t)lo;
		o->zip[o->n_zip].high = (uint8_t)hi;
		o->zip[o->n_zip++].ratio = r;
	}
	return o->n_zip && !*s ? 0 : -1;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"model", 1, 0, 'm'}, {"tokens", 1, 0, 'n'}, {"questions", 1, 0, 'q'},
		{"max-new", 1, 0, 'x'}, {"budgets", 1, 0, 'b'}, {"free-run", 0, 0, 'f'},
		{"threads", 1, 0, 't'}, {"recall-only", 0, 0, 'r'}, {"rope-free", 0, 0, 'R'},
		{"retrieval", 1, 0, 'M'}, {"zip", 1, 0, 'z'}, {"no-saliency", 0, 0, 'S'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){".model/SmolLM2-135M-Instruct.Q4_1.gguf", 2048, 6, 24, 0, 4,
			   {5, 10, 20, 100}, 0, 0, 0, 2, 0, 1, {{2, 4, 0.2f}}};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		uint32_t v = optarg ? (uint32_t)strtoul(optarg, NULL, 10) : 0;
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'n': o->tokens = v; break;
		case 'q': o->questions = v; break;
		case 'x': o->max_new = v; break;
		case 'b': if (parse_budgets(optarg, o)) { usage(stderr); return -1; } break;
		case 'f': o->free_run = 1; break;
		case 'z': if (parse_zip(optarg, o)) { usage(stderr); return -1; } break;
		case 'S': o->no_saliency = 1; break;
		case 'r': o->recall_only = 1; break;
		case 'R': o->rope_free = 1; break;
		case 'M':
			for (o->method = 0; o->method < N_METHODS; o->method++)
				if (strcmp(optarg, method_name[o->method]) == 0)
					break;
			if (o->method == N_METHODS) {
				usage(stderr);
				return -1;
			}
			break;
		case 't': o->threads = v; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || o->tokens < 256 || o->questions == 0 || o->max_new == 0) {
		usage(stderr);
		return -1;
	}
	return 0;
}


struct cell {
	uint64_t agree, positions, exact, answers;
	double kl;
};

struct bench {
	struct opts o;
	struct llm_gguf *g;
	struct llm_model *m;
	struct llm_tok *tok;
	struct llm_pool *pool;
	struct llm_faq faq;
	struct llm_qa_doc doc;
	struct kvt_store *store;
	char codec_name[N_CODECS][32];
	uint32_t n_codecs;
	struct llm_kvstore *kv[N_CODECS];
	int have[N_CODECS];
	uint32_t n_kv, idx[N_CODECS]; /* codec -> store index in rk */
	struct llm_rekv *rk;
	struct cell cell[N_CODECS][MAX_BUDGETS];
	double recall[N_METHODS][MAX_BUDGETS], mass[N_METHODS][MAX_BUDGETS];
	uint32_t n_q;
	char err[512];
};

static int load(struct bench *b)
{
	int rc = llm_set_open(b->o.model, b->o.threads, &b->g, &b->m, &b->tok,
			      &b->pool, b->err, sizeof(b->err));
	if (rc == 0)
		rc = llm_faq_load(LLM_FAQ_PATH, &b->faq, b->err, sizeof(b->err));
	if (rc == 0)
		rc = llm_qa_doc_build(b->tok, &b->faq, b->o.tokens, &b->doc);
	return rc;
}

static int open_caches(struct bench *b)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct kvt_store_config sc;
	kvt_store_config_init(&sc);
	sc.host_bytes = 4ull << 30;
	int rc = kvt_store_open(&sc, &b->store);
	b->n_codecs = 3 + b->o.n_zip;
	for (int k = 0; k < (int)b->n_codecs && rc == 0; k++) {
		struct kvt_cache_config cc;
		kvt_cache_config_init(&cc);
		cc.shape.n_layers = c->n_layers;
		cc.shape.n_kv_heads = c->n_kv_head;
		cc.shape.head_dim = c->head_dim;
		if (k == 1 || k == 2) {
			kvt_codec_params_init(&cc.cold, KVT_CODEC_KIVI);
			cc.cold.bits = k == 1 ? 2 : 4;
		} else if (k >= 3) {
			kvt_codec_params_init(&cc.cold, KVT_CODEC_ZIPCACHE);
			cc.cold.bits = b->o.zip[k - 3].bits;
			cc.cold.high_bits = b->o.zip[k - 3].high;
			cc.cold.salient_ratio = b->o.zip[k - 3].ratio;
		}
		static const char *base[3] = {"raw", "KIVI-2", "KIVI-4"};
		if (k < 3)
			snprintf(b->codec_name[k], sizeof(b->codec_name[k]), "%s", base[k]);
		else
			snprintf(b->codec_name[k], sizeof(b->codec_name[k]), "Zip-%u/%u/%.2g%s",
				 cc.cold.bits, cc.cold.high_bits, (double)cc.cold.salient_ratio,
				 b->o.no_saliency ? "-nosal" : "");
		const char *codec_name = b->codec_name[k];
		char name[32];
		snprintf(name, sizeof(name), "bench-%d", k);
		int r = llm_kvstore_local(b->store, name, &cc, &b->kv[b->n_kv]);
		if (r == KVT_ECODEC) {
			printf("%s: not available in this build (%s), skipped\n", codec_name,
			       kvt_strerror(r));
			continue;
		}
		rc = r;
		if (rc == 0 && k == 0)
			rc = llm_kvstore_index(b->kv[b->n_kv], NULL); /* kvtier's retrieval */
		b->have[k] = rc == 0;
		b->idx[k] = b->n_kv++;
	}
	return rc;
}

/* Prefills the model alone and into the caches in lockstep, chunk by chunk,
 * so that the load of other processes falls on both alike. */
static int timed_prefill(struct bench *b, double *alone, double *with)
{
	struct llm_rekv_config cfg;
	struct llm_rekv *solo = NULL;
	llm_rekv_config_init(&cfg);
	cfg.rope_free = b->o.rope_free;
	cfg.saliency = !b->o.no_saliency;
	int rc = llm_rekv_create(b->m, b->pool, &cfg, b->kv, 0, b->doc.n, &solo);
	if (rc == 0)
		rc = llm_rekv_create(b->m, b->pool, &cfg, b->kv, b->n_kv, b->doc.n, &b->rk);
	double t_solo = 0, t_with = 0;
	for (uint32_t at = 0; at < b->doc.n && rc == 0; at += cfg.chunk) {
		uint32_t n = b->doc.n - at < cfg.chunk ? b->doc.n - at : cfg.chunk;
		double t0 = bench_now();
		rc = llm_rekv_prefill(solo, b->doc.ids + at, n, NULL, NULL);
		double t1 = bench_now();
		if (rc == 0)
			rc = llm_rekv_prefill(b->rk, b->doc.ids + at, n, NULL, NULL);
		t_solo += t1 - t0;
		t_with += bench_now() - t1;
		fprintf(stderr, "\r  prefill %u/%u", at + n, b->doc.n);
	}
	fprintf(stderr, "\n");
	*alone = b->doc.n / t_solo;
	*with = b->doc.n / t_with;
	llm_rekv_free(solo);
	return rc;
}

static int prefill(struct bench *b)
{
	double alone, with;
	printf("document: Debian FAQ prefix of %u tokens, %u sections inside; "
	       "chunk 128, window 1024\n", b->doc.n, b->doc.n_sec);
	fflush(stdout);
	int rc = timed_prefill(b, &alone, &with);
	if (rc == 0)
		rc = llm_rekv_flush(b->rk); /* ZipCache caches: the window's tokens */
	if (rc == 0)
		printf("prefill (chunk by chunk in lockstep): model alone %.1f tokens/s; into %u "
		       "kvtier caches %.1f tokens/s (ratio %.3f)\n", alone, b->n_kv, with,
		       with / alone);
	struct kvt_stats st;
	if (rc == 0 && kvt_store_stats(b->store, &st) == 0)
		for (uint32_t k = 0; k < b->n_codecs; k++) {
			struct kvt_cache_info inf;
			if (b->have[k] && llm_kvstore_info(b->kv[b->idx[k]], &inf) == 0)
				printf("  cache %-16s raw %.2f MiB stored %.2f MiB (x%.2f)\n",
				       b->codec_name[k], inf.raw_bytes / 1048576.0,
				       inf.stored_bytes / 1048576.0,
				       (double)inf.raw_bytes / (double)inf.stored_bytes);
		}
	return rc;
}

/* Teacher-forced logits of A over the blocks `sel` of store s. */
static int forced_logits(struct bench *b, uint32_t s, const struct llm_selection *sel,
			 const int32_t *seq, uint32_t nq, uint32_t na, float *logits)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct llm_kvbuf *kb;
	struct llm_hooks hk;
	int rc = llm_kvbuf_create(c, llm_selection_max(sel) * llm_rekv_block_tokens(b->rk) + nq + na,
				  &kb);
	if (rc == 0)
		rc = llm_rekv_load(b->rk, s, sel, kb, NULL);
	llm_kvbuf_hooks(kb, &hk);
	if (rc == 0)
		rc = llm_forward(b->m, b->pool, seq, nq + na - 1, llm_rekv_answer_pos(b->rk, sel),
				 &hk, logits, na);
	llm_kvbuf_free(kb);
	return rc;
}

static int free_answer(struct bench *b, uint32_t s, const struct llm_selection *sel,
		       const int32_t *q, uint32_t nq, int32_t *out, uint32_t *got)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct llm_kvbuf *kb;
	int32_t stops[3];
	int rc = llm_kvbuf_create(c, llm_selection_max(sel) * llm_rekv_block_tokens(b->rk) + nq +
					     b->o.max_new, &kb);
	if (rc == 0)
		rc = llm_rekv_load(b->rk, s, sel, kb, NULL);
	if (rc == 0)
		rc = llm_generate(b->m, b->pool, kb, q, nq, llm_rekv_answer_pos(b->rk, sel),
				  b->o.max_new, stops,
				  llm_qa_stops(b->tok, stops), out, got, NULL);
	llm_kvbuf_free(kb);
	return rc;
}

static void log_softmax(float *x, uint32_t n)
{
	double mx = x[0], sum = 0;
	for (uint32_t i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (uint32_t i = 0; i < n; i++)
		sum += exp(x[i] - mx);
	float lse = (float)(mx + log(sum));
	for (uint32_t i = 0; i < n; i++)
		x[i] -= lse;
}

static void score(struct cell *cl, const float *ref, float *got, const int32_t *ans,
		  uint32_t na, uint32_t vocab)
{
	for (uint32_t t = 0; t < na; t++) {
		float *g = got + (size_t)t * vocab;
		const float *r = ref + (size_t)t * vocab;
		cl->agree += (int32_t)llm_argmax(g, vocab) == ans[t];
		log_softmax(g, vocab);
		double kl = 0;
		for (uint32_t v = 0; v < vocab; v++)
			kl += exp(r[v]) * (r[v] - g[v]);
		cl->kl += kl;
		cl->positions++;
	}
}

/* Oracle selection: blocks ranked by the attention mass the question's own
 * queries give them over the full cache (the upper bound of retrieval). */
struct oracle {
	struct llm_kvbuf *kb;
	struct llm_hooks inner;
	const struct llm_config *c;
	uint32_t n_doc, bt, nb;
	float *mass; /* [layer][block] */
};

static int oracle_emit(void *arg, uint32_t l, uint32_t T, const float *q, const float *k,
		       const float *v)
{
	struct oracle *o = arg;
	const struct llm_config *c = o->c;
	uint32_t hd = c->head_dim, group = c->n_head / c->n_kv_head, cap;
	float *K, *V, *p = malloc(o->n_doc * sizeof(float));
	if (!p)
		return -ENOMEM;
	llm_kvbuf_layer(o->kb, l, &K, &V, &cap);
	for (uint32_t t = 0; t < T; t++)
		for (uint32_t h = 0; h < c->n_head; h++) {
			const float *qv = q + ((size_t)t * c->n_head + h) * hd;
			const float *kh = K + (size_t)(h / group) * cap * hd;
			float mx = -INFINITY;
			double sum = 0;
			for (uint32_t j = 0; j < o->n_doc; j++) {
				float d = 0;
				for (uint32_t i = 0; i < hd; i++)
					d += qv[i] * kh[(size_t)j * hd + i];
				p[j] = d / sqrtf((float)hd);
				mx = p[j] > mx ? p[j] : mx;
			}
			for (uint32_t j = 0; j < o->n_doc; j++)
				sum += (p[j] = expf(p[j] - mx));
			for (uint32_t j = 0; j < o->n_doc; j++)
				o->mass[(size_t)l * o->nb + j / o->bt] += (float)(p[j] / sum);
		}
	free(p);
	return o->inner.emit(o->inner.arg, l, T, q, k, v);
}

static int oracle_context(void *arg, uint32_t l, struct llm_ctx_view *view)
{
	struct oracle *o = arg;
	return o->inner.context(o->inner.arg, l, view);
}

static int oracle_scores(struct bench *b, const int32_t *q, uint32_t nq, float *scores)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct llm_selection all = {0};
	struct oracle o = {.c = c, .n_doc = b->doc.n, .bt = llm_rekv_block_tokens(b->rk),
			   .nb = llm_rekv_blocks(b->rk), .mass = scores};
	memset(scores, 0, (size_t)c->n_layers * o.nb * sizeof(float));
	int rc = llm_rekv_select_all(b->rk, &all);
	if (rc == 0)
		rc = llm_kvbuf_create(c, b->doc.n + nq, &o.kb);
	if (rc == 0)
		rc = llm_rekv_load(b->rk, b->idx[0], &all, o.kb, NULL);
	if (rc == 0) {
		llm_kvbuf_hooks(o.kb, &o.inner);
		struct llm_hooks hk = {oracle_context, oracle_emit, &o};
		rc = llm_forward(b->m, b->pool, q, nq, llm_rekv_answer_pos(b->rk, &all), &hk, NULL, 0);
	}
	llm_kvbuf_free(o.kb);
	llm_selection_free(&all);
	return rc;
}

/* Share of the question's full-cache attention mass on the selected blocks. */
static double mass_covered(const float *mass, uint32_t nb, const struct llm_selection *sel)
{
	double in = 0, all = 0;
	for (uint32_t l = 0; l < sel->n_layers; l++) {
		for (uint32_t i = 0; i < nb; i++)
			all += mass[(size_t)l * nb + i];
		for (uint32_t i = 0; i < sel->count[l]; i++)
			in += mass[(size_t)l * nb + sel->blocks[(size_t)l * sel->stride + i]];
	}
	return all > 0 ? in / all : 0;
}

struct qctx {
	int32_t *q, *ans, *seq, *alt;
	uint32_t nq, na;
	struct llm_query qq;
	float *ref, *got;
};

static int reference(struct bench *b, uint32_t s, struct qctx *x)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct llm_selection all = {0};
	int rc = llm_qa_question(b->tok, b->faq.sec[s].question, &x->q, &x->nq);
	if (rc == 0)
		rc = llm_rekv_probe(b->rk, x->q, x->nq, &x->qq);
	if (rc == 0)
		rc = llm_rekv_select_all(b->rk, &all);
	if (rc == 0)
		rc = free_answer(b, b->idx[0], &all, x->q, x->nq, x->ans, &x->na);
	if (rc == 0 && !(x->seq = malloc((x->nq + x->na) * sizeof(int32_t))))
		rc = -ENOMEM;
	if (rc == 0) {
		memcpy(x->seq, x->q, x->nq * sizeof(int32_t));
		memcpy(x->seq + x->nq, x->ans, x->na * sizeof(int32_t));
		x->ref = malloc((size_t)x->na * c->vocab * sizeof(float));
		x->got = malloc((size_t)x->na * c->vocab * sizeof(float));
		rc = x->ref && x->got ? forced_logits(b, b->idx[0], &all, x->seq, x->nq, x->na, x->ref)
				      : -ENOMEM;
	}
	for (uint32_t t = 0; rc == 0 && t < x->na; t++)
		log_softmax(x->ref + (size_t)t * c->vocab, c->vocab);
	llm_selection_free(&all);
	return rc;
}

static int one_config(struct bench *b, struct qctx *x, int k, uint32_t bi,
		      const struct llm_selection *sel)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct cell *cl = &b->cell[k][bi];
	int rc = forced_logits(b, b->idx[k], sel, x->seq, x->nq, x->na, x->got);
	if (rc == 0)
		score(cl, x->ref, x->got, x->ans, x->na, c->vocab);
	if (rc == 0 && b->o.free_run) {
		uint32_t got = 0;
		rc = free_answer(b, b->idx[k], sel, x->q, x->nq, x->alt, &got);
		cl->exact += rc == 0 && got == x->na &&
			     memcmp(x->alt, x->ans, got * sizeof(int32_t)) == 0;
		cl->answers++;
	}
	return rc;
}

static int select_method(struct bench *b, int m, const struct llm_query *q,
			 const float *oracle, uint32_t budget, struct llm_selection *sel)
{
	switch (m) {
	case 0: return llm_rekv_select(b->rk, q, budget, sel);
	case 1: return llm_rekv_retrieve(b->rk, b->idx[0], KVT_RETRIEVE_REKV, q, budget, sel);
	case 2: return llm_rekv_retrieve(b->rk, b->idx[0], KVT_RETRIEVE_CLUSTERKV, q, budget, sel);
	case 3: return llm_rekv_retrieve(b->rk, b->idx[0], KVT_RETRIEVE_QUEST, q, budget, sel);
	default: return llm_rekv_select_scores(b->rk, oracle, budget, sel);
	}
}

static int question(struct bench *b, uint32_t s)
{
	const struct llm_config *c = llm_model_config(b->m);
	struct qctx x = {0};
	x.ans = malloc(b->o.max_new * sizeof(int32_t));
	x.alt = malloc(b->o.max_new * sizeof(int32_t));
	int rc = x.ans && x.alt ? 0 : -ENOMEM;
	if (rc == 0 && b->o.recall_only) {
		rc = llm_qa_question(b->tok, b->faq.sec[s].question, &x.q, &x.nq);
		if (rc == 0)
			rc = llm_rekv_probe(b->rk, x.q, x.nq, &x.qq);
	} else if (rc == 0) {
		rc = reference(b, s, &x);
	}
	float *osc = malloc((size_t)c->n_layers * llm_rekv_blocks(b->rk) * sizeof(float));
	if (rc == 0)
		rc = osc ? oracle_scores(b, x.q, x.nq, osc) : -ENOMEM;
	for (uint32_t bi = 0; bi < b->o.n_budgets && rc == 0; bi++) {
		uint32_t budget = (uint32_t)((uint64_t)b->doc.n * b->o.budgets[bi] / 100);
		struct llm_selection sel[N_METHODS] = {{0}};
		for (int m = 0; m < N_METHODS && rc == 0; m++) {
			rc = select_method(b, m, &x.qq, osc, budget, &sel[m]);
			if (rc == 0) {
				b->recall[m][bi] += llm_qa_recall(&b->doc, s, llm_rekv_block_tokens(b->rk),
								  &sel[m]);
				b->mass[m][bi] += mass_covered(osc, llm_rekv_blocks(b->rk), &sel[m]);
			}
		}
		for (int k = 0; k < (int)b->n_codecs && rc == 0 && !b->o.recall_only; k++)
			if (b->have[k])
				rc = one_config(b, &x, k, bi, &sel[b->o.method]);
		for (int m = 0; m < N_METHODS; m++)
			llm_selection_free(&sel[m]);
	}
	free(x.q); free(x.ans); free(x.seq); free(x.alt);
	llm_query_free(&x.qq); free(x.ref); free(x.got); free(osc);
	return rc;
}

static void report_quality(const struct bench *b)
{
	printf("\n%u questions, retrieval %s; per cell: answer-token agreement (teacher-forced "
	       "on the full-cache answer) / mean KL(full||retrieved) nats%s\n", b->n_q,
	       method_name[b->o.method], b->o.free_run ? " / identical free-run answers" : "");
	printf("%-9s", "budget");
	for (uint32_t k = 0; k < b->n_codecs; k++)
		if (b->have[k])
			printf(" %-20s", b->codec_name[k]);
	printf("\n");
	for (uint32_t bi = 0; bi < b->o.n_budgets; bi++) {
		printf("%6u%%  ", b->o.budgets[bi]);
		for (uint32_t k = 0; k < b->n_codecs; k++) {
			const struct cell *cl = &b->cell[k][bi];
			if (!b->have[k])
				continue;
			char s[64];
			double np = cl->positions ? (double)cl->positions : 1;
			int n = snprintf(s, sizeof(s), "%.3f / %.4f", cl->agree / np, cl->kl / np);
			if (b->o.free_run)
				snprintf(s + n, sizeof(s) - (size_t)n, " / %llu/%llu",
					 (unsigned long long)cl->exact, (unsigned long long)cl->answers);
			printf(" %-20s", s);
		}
		printf("\n");
	}
}

static void report(const struct bench *b)
{
	if (!b->o.recall_only)
		report_quality(b);
	printf("\nretrieval, %u questions; per cell: evidence-section recall / share of the "
	       "question's full-cache attention mass on the selected blocks\n", b->n_q);
	printf("%-9s", "budget");
	for (int m = 0; m < N_METHODS; m++)
		printf(" %-16s", method_name[m]);
	printf("\n");
	double nq = b->n_q ? b->n_q : 1;
	for (uint32_t bi = 0; bi < b->o.n_budgets; bi++) {
		printf("%6u%%  ", b->o.budgets[bi]);
		for (int m = 0; m < N_METHODS; m++) {
			char s[40];
			snprintf(s, sizeof(s), "%.3f / %.3f", b->recall[m][bi] / nq, b->mass[m][bi] / nq);
			printf(" %-16s", s);
		}
		printf("\n");
	}
}

static int run(struct bench *b)
{
	int rc = load(b);
	if (rc == 0)
		rc = open_caches(b);
	if (rc == 0)
		rc = prefill(b);
	uint32_t n = b->o.questions < b->doc.n_sec ? b->o.questions : b->doc.n_sec;
	double t0 = bench_now();
	for (uint32_t i = 0; i < n && rc == 0; i++) {
		uint32_t s = (uint32_t)((uint64_t)i * b->doc.n_sec / n);
		fprintf(stderr, "\r  question %u/%u (section %s)   ", i + 1, n, b->faq.sec[s].number);
		rc = question(b, s);
		b->n_q += rc == 0;
	}
	fprintf(stderr, "\n");
	if (rc == 0) {
		report(b);
		printf("questions took %.1f s\n", bench_now() - t0);
	}
	return rc;
}

static void cleanup(struct bench *b)
{
	llm_rekv_free(b->rk);
	for (uint32_t i = 0; i < b->n_kv; i++)
		llm_kvstore_close(b->kv[i]);
	kvt_store_close(b->store);
	llm_qa_doc_free(&b->doc);
	llm_faq_free(&b->faq);
	llm_set_close(b->g, b->m, b->tok, b->pool);
}

int main(int argc, char **argv)
{
	static struct bench b;
	if (parse(argc, argv, &b.o))
		return 2;
	int rc = run(&b);
	if (rc)
		fprintf(stderr, "bench_llm_qa: %s\n", b.err[0] ? b.err : kvt_strerror(rc));
	cleanup(&b);
	return rc ? 1 : 0;
}
