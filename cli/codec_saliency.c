/*
 * codec_saliency.c - ZipCache saliency for `kvtier codec`: scores read from
 * a .npy, or computed from queries and keys (exact or probe estimate), and
 * the `kvtier codec saliency` subcommand that writes them out so keys and
 * values can be encoded with the same salient set.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_saliency.h"
#include "half.h"
#include "npy.h"

#define DEFAULT_PROBE 0.1f

int kvt_cli_saliency_given(const struct kvt_cli_saliency *s)
{
	return s->queries || s->scores;
}

/* Reads any float .npy as fp32; returns 0 or 1 (message printed). */
static int read_f32(const char *path, struct kvt_npy *h, float **out)
{
	void *data;
	char msg[256] = "";
	int rc = kvt_npy_read(path, h, &data, msg, sizeof msg);
	if (rc) {
		fprintf(stderr, "kvtier codec: %s: %s\n", path,
			msg[0] ? msg : kvt_strerror(rc));
		return 1;
	}
	size_t n = h->data_len / kvt_dtype_size(h->dtype);
	float *f = malloc(n ? n * sizeof *f : 1);
	if (!f) {
		free(data);
		fprintf(stderr, "kvtier codec: %s: %s\n", path, kvt_strerror(-ENOMEM));
		return 1;
	}
	kvt_to_f32(h->dtype, data, f, n);
	free(data);
	*out = f;
	return 0;
}

static int read_scores(const char *path, uint32_t tokens, float **out)
{
	struct kvt_npy h;
	if (read_f32(path, &h, out))
		return 1;
	if (h.data_len / kvt_dtype_size(h.dtype) != tokens) {
		fprintf(stderr,
			"kvtier codec: %s: need %u scores (one per token), got %zu\n",
			path, tokens, h.data_len / kvt_dtype_size(h.dtype));
		free(*out);
		return 1;
	}
	return 0;
}

/* A 3-D [heads, tokens, dim] array as fp32. */
static int read_3d(const char *path, struct kvt_tensor_desc *d, float **out)
{
	struct kvt_npy h;
	if (read_f32(path, &h, out))
		return 1;
	if (h.ndim != 3 || !h.shape[0] || !h.shape[1] || !h.shape[2] ||
	    h.shape[0] > UINT32_MAX || h.shape[1] > UINT32_MAX ||
	    h.shape[2] > UINT32_MAX) {
		fprintf(stderr,
			"kvtier codec: %s: need a 3-D array [heads, tokens, head_dim], got %u dimensions\n",
			path, h.ndim);
		free(*out);
		return 1;
	}
	*d = (struct kvt_tensor_desc){(uint32_t)h.shape[0], (uint32_t)h.shape[1],
				      (uint32_t)h.shape[2], KVT_DTYPE_F32};
	return 0;
}

static int shapes_fit(const struct kvt_tensor_desc *q,
		      const struct kvt_tensor_desc *k, uint32_t tokens)
{
	if (q->tokens != tokens || k->tokens != tokens || q->dim != k->dim) {
		fprintf(stderr,
			"kvtier codec: queries [%u, %u, %u] and keys [%u, %u, %u] must have %u tokens and one head_dim\n",
			q->heads, q->tokens, q->dim, k->heads, k->tokens, k->dim,
			tokens);
		return 0;
	}
	if (q->heads % k->heads) {
		fprintf(stderr,
			"kvtier codec: %u query heads are not a multiple of %u kv heads\n",
			q->heads, k->heads);
		return 0;
	}
	return 1;
}

/* The keys as fp32: from s->keys, else the input tensor. */
static int get_keys(const struct kvt_cli_saliency *s,
		    const struct kvt_tensor_desc *in_desc, const void *in,
		    struct kvt_tensor_desc *kd, float **k)
{
	if (s->keys)
		return read_3d(s->keys, kd, k);
	if (!in) {
		fprintf(stderr,
			"kvtier codec: --queries with values needs --keys K.npy\n");
		return 1;
	}
	size_t n = (size_t)in_desc->heads * in_desc->tokens * in_desc->dim;
	if (!(*k = malloc(n * sizeof **k))) {
		fprintf(stderr, "kvtier codec: %s\n", kvt_strerror(-ENOMEM));
		return 1;
	}
	kvt_to_f32(in_desc->dtype, in, *k, n);
	*kd = *in_desc;
	return 0;
}

static int compute(const struct kvt_cli_saliency *s, uint32_t tokens,
		   const struct kvt_tensor_desc *in_desc, const void *in,
		   float **out)
{
	struct kvt_tensor_desc qd, kd;
	float *q = NULL, *k = NULL, *sc = NULL;
	int rc = 1;
	if (read_3d(s->queries, &qd, &q) || get_keys(s, in_desc, in, &kd, &k) ||
	    !shapes_fit(&qd, &kd, tokens))
		goto out;
	if (!(sc = malloc((size_t)tokens * sizeof *sc))) {
		fprintf(stderr, "kvtier codec: %s\n", kvt_strerror(-ENOMEM));
		goto out;
	}
	if (!s->quiet)
		fprintf(stderr,
			"computing saliency: %u query heads over %u kv heads, %u tokens, %s...\n",
			qd.heads, kd.heads, tokens,
			s->probe >= 1.0f ? "exact" : "probe estimate");
	int err = kvt_zipcache_saliency(q, qd.heads, k, kd.heads, tokens, qd.dim,
					s->probe, s->seed, sc);
	if (err) {
		fprintf(stderr, "kvtier codec: saliency: %s\n", kvt_strerror(err));
		goto out;
	}
	*out = sc;
	sc = NULL;
	rc = 0;
out:
	free(q), free(k), free(sc);
	return rc;
}

int kvt_cli_saliency_get(const struct kvt_cli_saliency *s, uint32_t tokens,
			 const struct kvt_tensor_desc *in_desc, const void *in,
			 float **out)
{
	if (s->queries && s->scores) {
		fprintf(stderr, "kvtier codec: give --queries or --saliency, not both\n");
		return 1;
	}
	if (s->scores)
		return read_scores(s->scores, tokens, out);
	return compute(s, tokens, in_desc, in, out);
}

/* ---------------------------------------------------------------- subcommand */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvtier codec saliency --queries Q.npy --keys K.npy [--probe[=R]]\n"
		"                             [--seed N] [--quiet] OUT.npy\n"
		"\n"
		"Writes ZipCache token saliency (normalised attention scores: column\n"
		"sums of the causal attention matrix divided by the number of queries\n"
		"that see each token, summed over heads) as a float32 array [tokens].\n"
		"Q.npy [q_heads, tokens, dim], K.npy [kv_heads, tokens, dim]; q head h\n"
		"uses kv head h / (q_heads / kv_heads). Pass OUT.npy to\n"
		"`kvtier codec encode --codec zipcache --saliency OUT.npy` for keys and\n"
		"values alike.\n"
		"  --probe[=R]  fast estimate from a probe set of about R of the queries\n"
		"               (the newest 5%% plus a random sample; default R 0.1)\n"
		"  --seed N     seed of the random sample (default 0)\n");
}

int kvt_cli_saliency_cmd(int argc, char **argv)
{
	static const struct option lo[] = {
		{"queries", 1, 0, 'Q'}, {"keys", 1, 0, 'K'}, {"probe", 2, 0, 'P'},
		{"seed", 1, 0, 'S'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'},
		{0, 0, 0, 0},
	};
	struct kvt_cli_saliency s = {.probe = 1.0f};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'Q': s.queries = optarg; break;
		case 'K': s.keys = optarg; break;
		case 'P': s.probe = optarg ? strtof(optarg, NULL) : DEFAULT_PROBE; break;
		case 'S': s.seed = strtoull(optarg, NULL, 10); break;
		case 'q': s.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!s.queries || !s.keys || argc - optind != 1 || !(s.probe > 0.0f)) {
		usage(stderr);
		return 2;
	}
	struct kvt_tensor_desc kd;
	float *k, *sc;
	if (read_3d(s.keys, &kd, &k))
		return 1;
	s.keys = NULL; /* already read: pass them as the input */
	int rc = compute(&s, kd.tokens, &kd, k, &sc);
	free(k);
	if (rc)
		return rc;
	uint64_t shape[1] = {kd.tokens};
	rc = kvt_npy_write(argv[optind], KVT_DTYPE_F32, 1, shape, sc);
	free(sc);
	if (rc) {
		fprintf(stderr, "kvtier codec: %s: %s\n", argv[optind], kvt_strerror(rc));
		return 1;
	}
	return 0;
}
