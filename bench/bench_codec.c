/*
 * bench_codec - KIVI / raw encode and decode throughput on one core, in GB/s
 * of fp16 input, next to memcpy of the same bytes measured in the same run,
 * plus the mean absolute error of each setting on the same tensor.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "half.h"
#include "kvtier/codec.h"

struct opts {
	unsigned heads, tokens, dim, reps;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_codec [--heads H] [--tokens T] [--dim D] [--reps N]\n"
		"Encode/decode throughput of the codecs on one core (GB/s of fp16\n"
		"input) next to memcpy of the same bytes, and the mean absolute\n"
		"error of each setting. Defaults: 8 heads, 65536 tokens (128 MiB, past the caches), dim 128, 5 reps.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"heads", 1, 0, 'H'}, {"tokens", 1, 0, 'T'}, {"dim", 1, 0, 'D'},
		{"reps", 1, 0, 'r'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){8, 65536, 128, 5};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'H': o->heads = (unsigned)atoi(optarg); break;
		case 'T': o->tokens = (unsigned)atoi(optarg); break;
		case 'D': o->dim = (unsigned)atoi(optarg); break;
		case 'r': o->reps = (unsigned)atoi(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!o->heads || !o->tokens || !o->dim || !o->reps) {
		fprintf(stderr, "bench_codec: sizes must be positive\n");
		return -1;
	}
	return 0;
}

struct setting {
	const char *label;
	enum kvt_codec_id id;
	unsigned bits;
	enum kvt_kv_kind kind;
};

static int run_setting(const struct setting *s, const struct opts *o,
		       const struct kvt_tensor_desc *d, const uint16_t *src,
		       const float *ref, double t_memcpy)
{
	struct kvt_codec_params p;
	size_t n = (size_t)d->heads * d->tokens * d->dim, cap, len = 0;
	kvt_codec_params_init(&p, s->id);
	if (s->id == KVT_CODEC_KIVI) {
		p.bits = (uint8_t)s->bits;
		p.residual = 0;
	}
	int rc = kvt_codec_encoded_size(&p, s->kind, d, &cap);
	if (rc)
		return rc;
	uint8_t *enc = malloc(cap);
	uint16_t *dec = malloc(n * 2);
	float *f = malloc(n * sizeof *f);
	if (!enc || !dec || !f)
		return -ENOMEM;
	double te = 1e30, td = 1e30;
	for (unsigned r = 0; r < o->reps && rc == 0; r++) {
		double t = bench_now();
		rc = kvt_codec_encode(&p, s->kind, d, src, enc, cap, &len);
		t = bench_now() - t;
		te = t < te ? t : te;
		t = bench_now();
		rc = rc ? rc : kvt_codec_decode(enc, len, dec, n * 2, NULL);
		t = bench_now() - t;
		td = t < td ? t : td;
	}
	if (rc == 0) {
		kvt_to_f32(KVT_DTYPE_F16, dec, f, n);
		double mae = 0;
		for (size_t i = 0; i < n; i++)
			mae += fabs((double)f[i] - ref[i]);
		double gb = (double)n * 2 / 1e9;
		printf("%-10s %-6s %7.2f %6.3f %7.2f %6.3f %7.2f %9.5f\n", s->label,
		       s->kind == KVT_KIND_KEY ? "keys" : "values", gb / te,
		       t_memcpy / te, gb / td, t_memcpy / td,
		       (double)n * 2 / (double)len, mae / (double)n);
	}
	free(enc), free(dec), free(f);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 2;
	struct kvt_tensor_desc d = {o.heads, o.tokens, o.dim, KVT_DTYPE_F16};
	size_t n = (size_t)o.heads * o.tokens * o.dim;
	float *ref = malloc(n * sizeof *ref);
	uint16_t *src = malloc(n * 2), *dst = malloc(n * 2);
	if (!ref || !src || !dst) {
		fprintf(stderr, "bench_codec: out of memory\n");
		return 1;
	}
	bench_fill_keys(ref, o.heads, o.tokens, o.dim, 42);
	kvt_from_f32(KVT_DTYPE_F16, ref, src, n);
	kvt_to_f32(KVT_DTYPE_F16, src, ref, n);
	memset(dst, 1, n * 2);
	double t_memcpy = bench_best_memcpy(dst, src, n * 2, o.reps * 3);
	printf("tensor [%u][%u][%u] fp16, %.1f MiB; memcpy %.2f GB/s (one core)\n",
	       o.heads, o.tokens, o.dim, (double)n * 2 / (1 << 20),
	       (double)n * 2 / 1e9 / t_memcpy);
	printf("%-10s %-6s %7s %6s %7s %6s %7s %9s\n", "codec", "kind", "enc GB/s",
	       "/memcpy", "dec GB/s", "/memcpy", "ratio", "MAE");
	static const struct setting settings[] = {
		{"raw", KVT_CODEC_RAW, 0, KVT_KIND_KEY},
		{"kivi-2", KVT_CODEC_KIVI, 2, KVT_KIND_KEY},
		{"kivi-2", KVT_CODEC_KIVI, 2, KVT_KIND_VALUE},
		{"kivi-4", KVT_CODEC_KIVI, 4, KVT_KIND_KEY},
		{"kivi-4", KVT_CODEC_KIVI, 4, KVT_KIND_VALUE},
		{"kivi-8", KVT_CODEC_KIVI, 8, KVT_KIND_KEY},
		{"kivi-8", KVT_CODEC_KIVI, 8, KVT_KIND_VALUE},
	};
	int status = 0;
	for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
		int rc = run_setting(&settings[i], &o, &d, src, ref, t_memcpy);
		if (rc) {
			fprintf(stderr, "bench_codec: %s: %s\n", settings[i].label,
				kvt_strerror(rc));
			status = 1;
		}
	}
	free(ref), free(src), free(dst);
	return status;
}
