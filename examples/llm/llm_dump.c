/*
 * llm_dump - dumps one or more layers' real attention tensors of
 * SmolLM2-135M over the Debian FAQ as .npy files, for bench_zipcache and
 * the CLI: the first N tokens of the QA document (chat header + FAQ, as
 * qa_demo builds it) are prefilled with full attention (every earlier token
 * visible, no sliding window) and, for each layer asked for, the post-RoPE
 * keys and values [kv_heads][N][head_dim] and queries [heads][N][head_dim]
 * are written as float32 to DIR/L<layer>_{k,v,q}.npy.
 *
 * With --store SDIR, every layer's keys and values of the first N - E
 * tokens also go (fp16, raw) into cache NAME of a kvtier store at SDIR,
 * and the queries of the last E tokens of every layer into
 * DIR/retrieve_q.npy [layers][heads][E][head_dim], for `kvtier retrieve`.
 *
 *   llm_dump [--tokens N] [--layers 0,15,29] --out DIR [--store SDIR]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "half.h"
#include "kvbuf.h"
#include "kvtier/kvtier.h"
#include "llm_set.h"
#include "npy.h"
#include "qa.h"

#define DUMP_MAX_LAYERS 64

struct opts {
	const char *model, *faq, *out, *store, *name;
	uint32_t tokens, chunk, threads, eval;
	uint32_t layers[DUMP_MAX_LAYERS];
	uint32_t n_layers;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: llm_dump --out DIR [OPTIONS]\n"
		"Prefills the first N tokens of the Debian FAQ through SmolLM2-135M with\n"
		"full attention and writes, per layer L asked for, the post-RoPE keys and\n"
		"values DIR/L<L>_k.npy, DIR/L<L>_v.npy [kv_heads][N][head_dim] and the\n"
		"queries DIR/L<L>_q.npy [heads][N][head_dim], float32 (e.g. for\n"
		"bench_zipcache --keys/--values/--queries).\n"
		"  --out DIR         output directory (created if missing; required)\n"
		"  --layers LIST     comma-separated layer indices (default 0,15,29)\n"
		"  --tokens N        tokens to prefill (default 2048)\n"
		"  --model PATH      GGUF model (default .model/SmolLM2-135M-Instruct.Q4_1.gguf;\n"
		"                    scripts/fetch_model.sh downloads it)\n"
		"  --faq PATH        FAQ text (default " LLM_FAQ_PATH ")\n"
		"  --chunk N         prefill chunk (default 256)\n"
		"  --threads T       worker threads (default: online CPUs)\n"
		"  --store SDIR      also store K/V of the first N-E tokens of every layer\n"
		"                    (fp16, raw) as a cache in the kvtier store at SDIR and\n"
		"                    write the last E tokens' queries of every layer to\n"
		"                    DIR/retrieve_q.npy [layers][heads][E][head_dim]\n"
		"  --name NAME       --store: cache name (default faq; replaced if present)\n"
		"  --eval E          --store: held-out query tokens (default 64)\n");
}

static int parse_layers(const char *s, struct opts *o)
{
	o->n_layers = 0;
	while (*s) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || errno || v > 1000 || o->n_layers == DUMP_MAX_LAYERS ||
		    (*end && *end != ','))
			return -1;
		o->layers[o->n_layers++] = (uint32_t)v;
		s = *end ? end + 1 : end;
	}
	return o->n_layers ? 0 : -1;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (end == s || *end || errno || v > 0xffffffffUL)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"model", 1, 0, 'm'}, {"faq", 1, 0, 'f'}, {"out", 1, 0, 'o'},
		{"layers", 1, 0, 'l'}, {"tokens", 1, 0, 'n'}, {"chunk", 1, 0, 'c'},
		{"threads", 1, 0, 't'}, {"store", 1, 0, 's'}, {"name", 1, 0, 'N'},
		{"eval", 1, 0, 'E'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){".model/SmolLM2-135M-Instruct.Q4_1.gguf", LLM_FAQ_PATH, NULL,
			   NULL, "faq", 2048, 256, 0, 64, {0, 15, 29}, 3};
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'f': o->faq = optarg; break;
		case 'o': o->out = optarg; break;
		case 'l': bad |= parse_layers(optarg, o); break;
		case 'n': bad |= parse_u32(optarg, &o->tokens); break;
		case 'c': bad |= parse_u32(optarg, &o->chunk); break;
		case 't': bad |= parse_u32(optarg, &o->threads); break;
		case 's': o->store = optarg; break;
		case 'N': o->name = optarg; break;
		case 'E': bad |= parse_u32(optarg, &o->eval); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (bad || optind != argc || !o->out || !o->tokens || !o->chunk ||
	    (o->store && (!o->eval || o->eval >= o->tokens))) {
		fprintf(stderr, "llm_dump: %s\n",
			!o->out ? "--out DIR is required" : "bad arguments (see --help)");
		return -1;
	}
	return 0;
}

/* The run: kvbuf hooks for full attention, plus the queries of the
 * layers being dumped, copied head-major as they are emitted. */
struct dump {
	struct opts o;
	const struct llm_config *cfg;
	struct llm_hooks kb;  /* the kvbuf's own hooks */
	float **q;            /* per model layer: [heads][tokens][hd] or NULL */
	uint32_t *qlen;
	float *qlast;         /* --store: [layers][heads][eval][hd] */
};

static int dump_context(void *arg, uint32_t layer, struct llm_ctx_view *view)
{
	struct dump *d = arg;
	return d->kb.context(d->kb.arg, layer, view);
}

static int dump_emit(void *arg, uint32_t layer, uint32_t T, const float *q,
		     const float *k, const float *v)
{
	struct dump *d = arg;
	uint32_t H = d->cfg->n_head, hd = d->cfg->head_dim, n = d->qlen[layer];
	uint32_t E = d->o.eval, t0 = d->o.tokens - E;
	for (uint32_t t = 0; d->qlast && t < T; t++)
		for (uint32_t h = 0; n + t >= t0 && n + t < d->o.tokens && h < H; h++)
			memcpy(d->qlast + (((size_t)layer * H + h) * E + n + t - t0) * hd,
			       q + ((size_t)t * H + h) * hd, hd * sizeof(float));
	d->qlen[layer] = n + T;
	int rc = d->kb.emit(d->kb.arg, layer, T, q, k, v);
	if (rc || !d->q[layer])
		return rc;
	if (n + T > d->o.tokens)
		return -ENOSPC;
	for (uint32_t t = 0; t < T; t++)
		for (uint32_t h = 0; h < H; h++)
			memcpy(d->q[layer] + ((size_t)h * d->o.tokens + n + t) * hd,
			       q + ((size_t)t * H + h) * hd, hd * sizeof(float));
	return 0;
}

static int write_layer(struct dump *d, struct llm_kvbuf *b, uint32_t l)
{
	char path[4096];
	float *k, *v;
	uint32_t cap;
	llm_kvbuf_layer(b, l, &k, &v, &cap);
	const float *arr[3] = {k, v, d->q[l]};
	const char *name[3] = {"k", "v", "q"};
	for (int i = 0; i < 3; i++) {
		uint64_t shape[3] = {i < 2 ? d->cfg->n_kv_head : d->cfg->n_head,
				     d->o.tokens, d->cfg->head_dim};
		snprintf(path, sizeof(path), "%s/L%u_%s.npy", d->o.out, l, name[i]);
		int rc = kvt_npy_write(path, KVT_DTYPE_F32, 3, shape, arr[i]);
		if (rc) {
			fprintf(stderr, "llm_dump: %s: %s\n", path, strerror(-rc));
			return rc;
		}
		printf("wrote %s [%llu][%llu][%llu]\n", path, (unsigned long long)shape[0],
		       (unsigned long long)shape[1], (unsigned long long)shape[2]);
	}
	return 0;
}

/* Layer l's first n tokens (kvbuf layout, stride cap) as fp16 [H][n][hd]. */
static void to_f16(const float *src, uint32_t H, uint32_t cap, uint32_t n, uint32_t hd,
		   uint16_t *dst)
{
	for (uint32_t h = 0; h < H; h++)
		for (size_t i = 0; i < (size_t)n * hd; i++)
			dst[(size_t)h * n * hd + i] = kvt_f32_to_f16(src[(size_t)h * cap * hd + i]);
}

static int store_layers(struct kvt_cache *c, struct dump *d, struct llm_kvbuf *b,
			uint32_t n)
{
	uint32_t H = d->cfg->n_kv_head, hd = d->cfg->head_dim;
	uint16_t *k16 = malloc((size_t)H * n * hd * 2), *v16 = malloc((size_t)H * n * hd * 2);
	int rc = k16 && v16 ? 0 : -ENOMEM;
	for (uint32_t l = 0; rc == 0 && l < d->cfg->n_layers; l++) {
		float *k, *v;
		uint32_t cap;
		llm_kvbuf_layer(b, l, &k, &v, &cap);
		to_f16(k, H, cap, n, hd, k16);
		to_f16(v, H, cap, n, hd, v16);
		rc = kvt_cache_append(c, l, n, k16, v16);
	}
	free(k16);
	free(v16);
	return rc;
}

/* --store: the cache of the first N - E tokens, and the held-out queries. */
static int write_store(struct dump *d, struct llm_kvbuf *b)
{
	struct kvt_store_config sc;
	kvt_store_config_init(&sc);
	sc.data_dir = d->o.store;
	struct kvt_cache_config cc;
	kvt_cache_config_init(&cc);
	cc.shape = (struct kvt_shape){d->cfg->n_layers, d->cfg->n_kv_head, d->cfg->head_dim,
				      16, KVT_DTYPE_F16};
	struct kvt_store *s = NULL;
	struct kvt_cache *c = NULL;
	uint32_t n = d->o.tokens - d->o.eval;
	int rc = kvt_store_open(&sc, &s);
	if (rc == 0) {
		kvt_cache_drop(s, d->o.name); /* KVT_ENOTFOUND when new */
		rc = kvt_cache_create(s, d->o.name, &cc, &c);
	}
	if (rc == 0)
		rc = store_layers(c, d, b, n);
	kvt_cache_close(c);
	kvt_store_close(s);
	if (rc) {
		fprintf(stderr, "llm_dump: store %s: %s\n", d->o.store, kvt_strerror(rc));
		return rc;
	}
	printf("stored cache %s in %s: %u layers x %u tokens\n", d->o.name, d->o.store,
	       d->cfg->n_layers, n);
	char path[4096];
	snprintf(path, sizeof(path), "%s/retrieve_q.npy", d->o.out);
	uint64_t shape[4] = {d->cfg->n_layers, d->cfg->n_head, d->o.eval, d->cfg->head_dim};
	rc = kvt_npy_write(path, KVT_DTYPE_F32, 4, shape, d->qlast);
	if (rc)
		fprintf(stderr, "llm_dump: %s: %s\n", path, strerror(-rc));
	else
		printf("wrote %s [%u][%u][%u][%u]\n", path, d->cfg->n_layers, d->cfg->n_head,
		       d->o.eval, d->cfg->head_dim);
	return rc;
}

static int prefill(struct dump *d, struct llm_model *m, struct llm_pool *pool,
		   const int32_t *ids, struct llm_kvbuf *b)
{
	struct llm_hooks hk = {dump_context, dump_emit, d};
	llm_kvbuf_hooks(b, &d->kb);
	for (uint32_t at = 0; at < d->o.tokens; at += d->o.chunk) {
		uint32_t T = d->o.tokens - at < d->o.chunk ? d->o.tokens - at : d->o.chunk;
		int rc = llm_forward(m, pool, ids + at, T, at, &hk, NULL, 0);
		if (rc) {
			fprintf(stderr, "llm_dump: forward at token %u: %s\n", at, strerror(-rc));
			return rc;
		}
		fprintf(stderr, "\rprefill %u/%u tokens", at + T, d->o.tokens);
	}
	fprintf(stderr, "\n");
	return 0;
}

static int check_layers(const struct opts *o, const struct llm_config *c)
{
	for (uint32_t i = 0; i < o->n_layers; i++)
		if (o->layers[i] >= c->n_layers) {
			fprintf(stderr, "llm_dump: layer %u out of range (model has %u)\n",
				o->layers[i], c->n_layers);
			return -EINVAL;
		}
	return 0;
}

static int run(struct dump *d, struct llm_model *m, struct llm_pool *pool,
	       const struct llm_qa_doc *doc)
{
	d->cfg = llm_model_config(m);
	int rc = check_layers(&d->o, d->cfg);
	if (rc)
		return rc;
	if (doc->n < d->o.tokens) {
		fprintf(stderr, "llm_dump: the document has only %u tokens\n", doc->n);
		return -EINVAL;
	}
	if (mkdir(d->o.out, 0777) && errno != EEXIST) {
		rc = -errno;
		fprintf(stderr, "llm_dump: %s: %s\n", d->o.out, strerror(errno));
		return rc;
	}
	d->q = calloc(d->cfg->n_layers, sizeof(float *));
	d->qlen = calloc(d->cfg->n_layers, sizeof(uint32_t));
	rc = d->q && d->qlen ? 0 : -ENOMEM;
	size_t qn = (size_t)d->cfg->n_head * d->o.tokens * d->cfg->head_dim;
	for (uint32_t i = 0; rc == 0 && i < d->o.n_layers; i++)
		if (!d->q[d->o.layers[i]] && !(d->q[d->o.layers[i]] = malloc(qn * sizeof(float))))
			rc = -ENOMEM;
	size_t ql = (size_t)d->cfg->n_layers * d->cfg->n_head * d->o.eval * d->cfg->head_dim;
	if (rc == 0 && d->o.store && !(d->qlast = malloc(ql * sizeof(float))))
		rc = -ENOMEM;
	struct llm_kvbuf *b = NULL;
	if (rc == 0)
		rc = llm_kvbuf_create(d->cfg, d->o.tokens, &b);
	if (rc == 0)
		rc = prefill(d, m, pool, doc->ids, b);
	for (uint32_t i = 0; rc == 0 && i < d->o.n_layers; i++)
		rc = write_layer(d, b, d->o.layers[i]);
	if (rc == 0 && d->o.store)
		rc = write_store(d, b);
	llm_kvbuf_free(b);
	for (uint32_t l = 0; d->q && l < d->cfg->n_layers; l++)
		free(d->q[l]);
	free(d->q);
	free(d->qlen);
	free(d->qlast);
	return rc;
}

int main(int argc, char **argv)
{
	struct dump d = {0};
	if (parse(argc, argv, &d.o))
		return 2;
	char err[512] = "";
	struct llm_gguf *g = NULL;
	struct llm_model *m = NULL;
	struct llm_tok *tok = NULL;
	struct llm_pool *pool = NULL;
	struct llm_faq faq = {0};
	struct llm_qa_doc doc = {0};
	int rc = llm_set_open(d.o.model, d.o.threads, &g, &m, &tok, &pool, err,
			      sizeof(err));
	if (rc == 0)
		rc = llm_faq_load(d.o.faq, &faq, err, sizeof(err));
	if (rc == 0)
		rc = llm_qa_doc_build(tok, &faq, d.o.tokens, &doc);
	if (rc && !err[0])
		snprintf(err, sizeof(err), "%s", strerror(rc < 0 ? -rc : rc));
	if (rc)
		fprintf(stderr, "llm_dump: %s\n", err);
	else
		rc = run(&d, m, pool, &doc);
	llm_qa_doc_free(&doc);
	llm_faq_free(&faq);
	llm_set_close(g, m, tok, pool);
	return rc ? 1 : 0;
}
