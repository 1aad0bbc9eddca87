/*
 * llm_dump - dumps one or more layers' real attention tensors of
 * SmolLM2-135M over the Debian FAQ as .npy files, for bench_zipcache and
 * the CLI: the first N tokens of the QA document (chat header + FAQ, as
 * qa_demo builds it) are prefilled with full attention (every earlier token
 * visible, no sliding window) and, for each layer asked for, the post-RoPE
 * keys and values [kv_heads][N][head_dim] and queries [heads][N][head_dim]
 * are written as float32 to DIR/L<layer>_{k,v,q}.npy.
 *
 *   llm_dump [--tokens N] [--layers 0,15,29] --out DIR
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kvbuf.h"
#include "npy.h"
#include "qa.h"

#define DUMP_MAX_LAYERS 64

struct opts {
	const char *model, *faq, *out;
	uint32_t tokens, chunk, threads;
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
		"  --threads T       worker threads (default: online CPUs)\n");
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
		{"threads", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){".model/SmolLM2-135M-Instruct.Q4_1.gguf", LLM_FAQ_PATH, NULL,
			   2048, 256, 0, {0, 15, 29}, 3};
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
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (bad || optind != argc || !o->out || !o->tokens || !o->chunk) {
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
	int rc = d->kb.emit(d->kb.arg, layer, T, q, k, v);
	if (rc || !d->q[layer])
		return rc;
	uint32_t H = d->cfg->n_head, hd = d->cfg->head_dim, n = d->qlen[layer];
	if (n + T > d->o.tokens)
		return -ENOSPC;
	for (uint32_t t = 0; t < T; t++)
		for (uint32_t h = 0; h < H; h++)
			memcpy(d->q[layer] + ((size_t)h * d->o.tokens + n + t) * hd,
			       q + ((size_t)t * H + h) * hd, hd * sizeof(float));
	d->qlen[layer] = n + T;
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
	struct llm_kvbuf *b = NULL;
	if (rc == 0)
		rc = llm_kvbuf_create(d->cfg, d->o.tokens, &b);
	if (rc == 0)
		rc = prefill(d, m, pool, doc->ids, b);
	for (uint32_t i = 0; rc == 0 && i < d->o.n_layers; i++)
		rc = write_layer(d, b, d->o.layers[i]);
	llm_kvbuf_free(b);
	for (uint32_t l = 0; d->q && l < d->cfg->n_layers; l++)
		free(d->q[l]);
	free(d->q);
	free(d->qlen);
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
	int rc = llm_gguf_open(d.o.model, &g, err, sizeof(err));
	if (rc == -ENOENT)
		snprintf(err, sizeof(err), "%s: missing; run scripts/fetch_model.sh first",
			 d.o.model);
	if (rc == 0)
		rc = llm_model_load(g, &m, err, sizeof(err));
	if (rc == 0)
		rc = llm_tok_load(g, &tok, err, sizeof(err));
	if (rc == 0)
		rc = llm_pool_create(d.o.threads, &pool);
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
	llm_pool_free(pool);
	llm_tok_free(tok);
	llm_model_free(m);
	llm_gguf_close(g);
	return rc ? 1 : 0;
}
