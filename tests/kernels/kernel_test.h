/* kernel_test.h - helpers of the GPU kernel tests: skipping without a
 * device, test tensors, CPU reference encoding of whole blocks. */
#ifndef KVTIER_TESTS_KERNEL_TEST_H
#define KVTIER_TESTS_KERNEL_TEST_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvt_kernels.h"
#include "kvtier/codec.h"

/* Skips the calling test, with the reason, on a machine without a GPU. */
static inline void need_gpu(void)
{
	if (kvt_gpu_available())
		cr_skip_test("no usable CUDA device (or a build without CUDA): "
			     "GPU test skipped; run scripts/device_check.sh on a GPU machine");
}

static inline float kt_uniform(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)(*s >> 40) / (float)(1u << 24) - 0.5f;
}

/* A raw block (K then V) of geometry g in its dtype: key-like channel
 * outliers, no exact zeros (their sign is not part of the contract). */
static inline uint8_t *kt_raw_block(const struct kvt_kivi_geom *g, uint64_t seed)
{
	size_t n = 2 * (size_t)g->heads * g->tokens * g->dim;
	float *x = malloc(n * sizeof *x);
	uint8_t *raw = malloc(n * kvt_dtype_size(g->dtype));
	cr_assert(x && raw);
	for (size_t i = 0; i < n; i++) {
		size_t d = i % g->dim;
		float v = kt_uniform(&seed) * (d % 13 == 5 ? 24.0f : 2.0f) +
			  (float)(d % 7) * 0.3f;
		x[i] = v;
	}
	kvt_from_f32(g->dtype, x, raw, n);
	/* Replace values that became zero in the dtype. */
	kvt_to_f32(g->dtype, raw, x, n);
	for (size_t i = 0; i < n; i++)
		if (x[i] == 0.0f)
			x[i] = 0.5f;
	kvt_from_f32(g->dtype, x, raw, n);
	free(x);
	return raw;
}

static inline void kt_params(const struct kvt_kivi_geom *g,
			     struct kvt_codec_params *p,
			     struct kvt_tensor_desc *d)
{
	kvt_codec_params_init(p, KVT_CODEC_KIVI);
	p->bits = g->bits;
	p->group = g->group;
	p->residual = g->residual;
	*d = (struct kvt_tensor_desc){g->heads, g->tokens, g->dim, g->dtype};
}

/* The CPU codec's encoding of a block (K stream then V stream), as the
 * store writes it; *len gets its size. */
static inline uint8_t *kt_cpu_encode(const struct kvt_kivi_geom *g,
				     const uint8_t *raw, size_t *len)
{
	struct kvt_codec_params p;
	struct kvt_tensor_desc d;
	size_t kn, vn, kw, vw;
	size_t half = (size_t)g->heads * g->tokens * g->dim * kvt_dtype_size(g->dtype);
	kt_params(g, &p, &d);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &kn), 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_VALUE, &d, &vn), 0);
	uint8_t *out = malloc(kn + vn);
	cr_assert(out);
	cr_assert_eq(kvt_codec_encode(&p, KVT_KIND_KEY, &d, raw, out, kn, &kw), 0);
	cr_assert_eq(kvt_codec_encode(&p, KVT_KIND_VALUE, &d, raw + half,
				      out + kn, vn, &vw), 0);
	*len = kn + vn;
	return out;
}

/* The CPU decode of an encoded block into a raw block of the dtype. */
static inline void kt_cpu_decode(const struct kvt_kivi_geom *g,
				 const uint8_t *enc, size_t len, uint8_t *raw)
{
	size_t half = (size_t)g->heads * g->tokens * g->dim * kvt_dtype_size(g->dtype);
	uint32_t payload;
	memcpy(&payload, enc + 32, 4); /* payload_len of the K header */
	size_t kn = KVT_CODEC_HEADER_BYTES + payload;
	cr_assert_eq(kvt_codec_decode(enc, kn, raw, half, NULL), 0);
	cr_assert_eq(kvt_codec_decode(enc + kn, len - kn, raw + half, half, NULL), 0);
}

/* ---- ZipCache */

struct kt_zip_case {
	struct kvt_zip_geom g;
	float ratio;   /* salient ratio; < 0: no saliency scores */
	int tokenwise; /* 1: no channel normalisers */
};

static inline struct kvt_kivi_geom kt_zip_as_kivi(const struct kvt_zip_geom *g)
{
	return (struct kvt_kivi_geom){g->heads, g->tokens, g->dim, g->dtype, 2, 4, 0};
}

/* Per-token scores from seed (malloc'd). */
static inline float *kt_zip_scores(uint32_t tokens, uint64_t seed)
{
	float *scores = malloc(tokens * sizeof *scores);
	cr_assert(scores);
	for (uint32_t t = 0; t < tokens; t++)
		scores[t] = kt_uniform(&seed);
	return scores;
}

/* The salient count the codec picks for case c: round(ratio * tokens). */
static inline uint32_t kt_zip_n_salient(const struct kt_zip_case *c)
{
	if (c->ratio < 0)
		return 0;
	double n = (double)(uint32_t)((double)c->ratio * c->g.tokens + 0.5);
	return (uint32_t)n > c->g.tokens ? c->g.tokens : (uint32_t)n;
}

/* The CPU codec's ZipCache encoding of a block (K stream then V stream,
 * the same scores for both); *len gets its size. */
static inline uint8_t *kt_zip_encode(const struct kt_zip_case *c,
				     const uint8_t *raw, size_t *len,
				     uint64_t seed)
{
	const struct kvt_zip_geom *g = &c->g;
	struct kvt_codec_params p;
	struct kvt_tensor_desc d = {g->heads, g->tokens, g->dim, g->dtype};
	size_t kn, vn, kw, vw;
	size_t half = (size_t)g->heads * g->tokens * g->dim * kvt_dtype_size(g->dtype);
	float *scores = kt_zip_scores(g->tokens, seed);
	kvt_codec_params_init(&p, KVT_CODEC_ZIPCACHE);
	p.bits = g->bits;
	p.high_bits = g->high_bits;
	p.salient_ratio = c->ratio < 0 ? 0.0f : c->ratio;
	p.saliency = c->ratio < 0 ? NULL : scores;
	p.zip_tokenwise = (uint8_t)c->tokenwise;
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &kn), 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_VALUE, &d, &vn), 0);
	uint8_t *out = malloc(kn + vn);
	cr_assert(out);
	cr_assert_eq(kvt_codec_encode(&p, KVT_KIND_KEY, &d, raw, out, kn, &kw), 0);
	cr_assert_eq(kvt_codec_encode(&p, KVT_KIND_VALUE, &d, raw + half,
				      out + kn, vn, &vw), 0);
	free(scores);
	*len = kn + vn;
	return out;
}

/* The CPU decode of a ZipCache block into a raw block. */
static inline void kt_zip_decode(const struct kvt_zip_geom *g, const uint8_t *enc,
				 size_t len, uint8_t *raw)
{
	size_t half = (size_t)g->heads * g->tokens * g->dim * kvt_dtype_size(g->dtype);
	uint32_t payload;
	memcpy(&payload, enc + 32, 4);
	size_t kn = KVT_CODEC_HEADER_BYTES + payload;
	cr_assert_eq(kvt_codec_decode(enc, kn, raw, half, NULL), 0);
	cr_assert_eq(kvt_codec_decode(enc + kn, len - kn, raw + half, half, NULL), 0);
}

static const struct kt_zip_case kt_zip_cases[] = {
	{{8, 16, 128, KVT_DTYPE_F16, 2, 4}, 0.25f, 0},  /* the store's block */
	{{8, 16, 128, KVT_DTYPE_F16, 2, 8}, 0.25f, 1},  /* tokenwise */
	{{2, 40, 40, KVT_DTYPE_BF16, 2, 8}, 0.2f, 0},   /* partial code words */
	{{3, 33, 64, KVT_DTYPE_F32, 4, 8}, 0.3f, 0},    /* bitmap past 32 tokens */
	{{2, 16, 64, KVT_DTYPE_F16, 2, 4}, -1.0f, 0},   /* no saliency: no salient rows */
	{{2, 16, 64, KVT_DTYPE_BF16, 4, 8}, 1.0f, 0},   /* every token salient */
};
#define KT_N_ZIP (sizeof kt_zip_cases / sizeof kt_zip_cases[0])

/* ---- scoring */

struct kt_ref_cand {
	float s;
	uint32_t i;
};

static inline int kt_ref_cmp(const void *a, const void *b)
{
	const struct kt_ref_cand *x = a, *y = b;
	if (x->s != y->s)
		return x->s > y->s ? -1 : 1;
	return x->i < y->i ? -1 : (x->i > y->i);
}

/* Scores bit for bit and top-k against a CPU loop and qsort. */
static inline void check_topk_ref(uint32_t sets, uint32_t nq, uint32_t m, uint32_t dim,
			   uint32_t k, const float *q, const float *keys,
			   const float *s, const uint32_t *ti, const float *ts)
{
	struct kt_ref_cand *c = malloc(m * sizeof *c);
	for (size_t i = 0; i < (size_t)sets * nq; i++) {
		const float *kz = keys + i / nq * m * dim;
		for (uint32_t j = 0; j < m; j++) {
			float acc = 0.0f; /* -ffp-contract=off: no FMA */
			for (uint32_t d = 0; d < dim; d++)
				acc += q[i * dim + d] * kz[(size_t)j * dim + d];
			cr_assert_eq(kvt_f32_to_bits(s[i * m + j]), kvt_f32_to_bits(acc),
				     "score %zu,%u", i, j);
			c[j] = (struct kt_ref_cand){acc, j};
		}
		qsort(c, m, sizeof *c, kt_ref_cmp);
		for (uint32_t r = 0; r < k; r++) {
			cr_assert_eq(ti[i * k + r], c[r].i, "row %zu rank %u (m %u, k %u)",
				     i, r, m, k);
			cr_assert_eq(ts[i * k + r], c[r].s);
		}
	}
	free(c);
}

#endif
