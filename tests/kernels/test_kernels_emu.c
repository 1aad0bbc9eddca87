/*
 * test_kernels_emu.c - the kernels' per-thread bodies run on the CPU
 * (kernels/emu_internal.h) against the CPU codec: plans, index
 * computations, packing, headers and rounding, on machines without a GPU.
 * CUDA builds only; test_kernels checks the same on a real device.
 */
#include <errno.h>

#include "emu_internal.h"
#include "kernel_test.h"
#include "kivi_internal.h"

#define F16 KVT_DTYPE_F16
#define BF16 KVT_DTYPE_BF16
#define F32 KVT_DTYPE_F32

static const struct kvt_kivi_geom geoms[] = {
	{8, 16, 128, F16, 2, 16, 0}, {8, 16, 128, F16, 4, 16, 0},
	{8, 16, 128, F16, 8, 16, 0}, {2, 32, 64, BF16, 2, 32, 0},
	{2, 32, 64, F32, 4, 32, 0},  {3, 40, 64, F16, 2, 32, 4},
	{1, 20, 32, F32, 8, 4, 2},   {2, 8, 64, BF16, 2, 16, 0},
	{4, 64, 128, BF16, 4, 32, 0}, {2, 32, 96, F16, 8, 32, 0},
	{1, 64, 128, F16, 2, 64, 0},  {2, 128, 128, F32, 4, 128, 0},
	{2, 16, 64, F16, 8, 4, 0},    {2, 48, 64, BF16, 8, 16, 8},
};
#define N_GEOMS (sizeof geoms / sizeof geoms[0])

Test(kernels_emu, quantize_writes_the_cpu_codec_bytes)
{
	for (size_t gi = 0; gi < N_GEOMS; gi++) {
		const struct kvt_kivi_geom *g = &geoms[gi];
		size_t enc, len;
		cr_assert_eq(kvt_kivi_geom_sizes(g, NULL, NULL, &enc), 0);
		for (uint64_t seed = 1; seed <= 3; seed++) {
			uint8_t *raw = kt_raw_block(g, seed * 31 + gi);
			uint8_t *want = kt_cpu_encode(g, raw, &len);
			uint8_t *got = malloc(enc);
			memset(got, 0xab, enc);
			cr_assert_eq(kvt_emu_kivi_quantize(g, raw, got), 0);
			for (size_t b = 0; b < enc; b++)
				cr_assert_eq(got[b], want[b],
					     "geometry %zu byte %zu of %zu", gi, b, enc);
			free(got);
			free(want);
			free(raw);
		}
	}
}

Test(kernels_emu, dequantize_equals_the_cpu_decode)
{
	for (size_t gi = 0; gi < N_GEOMS; gi++) {
		const struct kvt_kivi_geom *g = &geoms[gi];
		size_t raw_len, len;
		cr_assert_eq(kvt_kivi_geom_sizes(g, &raw_len, NULL, NULL), 0);
		uint8_t *raw = kt_raw_block(g, gi + 5);
		uint8_t *enc = kt_cpu_encode(g, raw, &len);
		uint8_t *want = malloc(raw_len), *got = malloc(raw_len);
		kt_cpu_decode(g, enc, len, want);
		for (int fused = 0; fused < 2; fused++) {
			memset(got, 0xcd, raw_len);
			cr_assert_eq(kvt_emu_kivi_dequantize(g, enc, got, fused), 0);
			cr_assert_eq(memcmp(got, want, raw_len), 0,
				     "geometry %zu fused %d", gi, fused);
		}
		enc[len - 1 - (len / 2)] ^= 0; /* payload bytes are not checked */
		enc[8] = g->bits == 2 ? 4 : 2;  /* K header: other bits */
		memset(got, 0x11, raw_len);
		cr_assert_eq(kvt_emu_kivi_dequantize(g, enc, got, 1), KVT_EFORMAT);
		for (size_t b = 0; b < raw_len; b++)
			cr_assert_eq(got[b], 0x11);
		free(got);
		free(want);
		free(enc);
		free(raw);
	}
}

Test(kernels_emu, gather_is_byte_exact)
{
	enum { N = 20, STRIDE = 200000 };
	uint8_t *src = malloc((size_t)N * STRIDE), *dst = calloc(N, STRIDE);
	uint8_t *want = calloc(N, STRIDE);
	uint64_t seed = 3;
	for (size_t i = 0; i < (size_t)N * STRIDE; i++)
		src[i] = (uint8_t)(kt_uniform(&seed) * 256.0f);
	struct kvt_gpu_item it[N];
	for (uint32_t i = 0; i < N; i++) {
		size_t len = (size_t)(i * 104729u) % (STRIDE - 16);
		size_t off = i % 4 == 0 ? i % 16 : (i % 4 == 1 ? 4 * (i % 4) : 0);
		uint32_t d = (i * 7 + 1) % N;
		it[i] = (struct kvt_gpu_item){src + (size_t)i * STRIDE + off,
					      dst + (size_t)d * STRIDE + off, len};
		memcpy(want + (size_t)d * STRIDE + off, src + (size_t)i * STRIDE + off, len);
	}
	cr_assert_eq(kvt_emu_gather(it, N), 0);
	cr_assert_eq(memcmp(dst, want, (size_t)N * STRIDE), 0);
	free(src);
	free(dst);
	free(want);
}


static void check_topk(uint32_t sets, uint32_t nq, uint32_t m, uint32_t dim,
		       uint32_t k)
{
	const size_t nqs = (size_t)sets * nq, nk = (size_t)sets * m;
	float *q = malloc(nqs * dim * 4), *keys = malloc(nk * dim * 4);
	float *s = malloc(nqs * m * 4), *ts = malloc(nqs * k * 4);
	uint32_t *ti = malloc(nqs * k * 4);
	uint64_t seed = m * 3 + k + sets;
	for (size_t i = 0; i < nqs * dim; i++)
		q[i] = kt_uniform(&seed);
	for (size_t j = 0; j < nk; j++)
		for (uint32_t d = 0; d < dim; d++)
			keys[j * dim + d] = j % 10 == 9 ? keys[(j - 4) * dim + d]
							: kt_uniform(&seed);
	cr_assert_eq(kvt_emu_score_topk(q, sets, nq, keys, m, dim, k, s, ti, ts), 0);
	check_topk_ref(sets, nq, m, dim, k, q, keys, s, ti, ts);
	free(q), free(keys), free(s), free(ts), free(ti);
}

Test(kernels_emu, scores_and_topk_equal_the_cpu)
{
	check_topk(1, 3, 1000, 64, 10);
	check_topk(1, 2, 3000, 128, 300);
	check_topk(1, 2, 129, 32, 129);
	check_topk(1, 1, 1, 16, 1);
	check_topk(1, 1, 700, 8, 700);
	check_topk(8, 3, 500, 64, 32); /* one set per kv head */
}

/* Groups whose minimum or maximum is a zero of both signs: the kernels
 * keep the first one met, as the scalar reference does (the x86 SIMD path
 * of the CPU codec may keep the other: see docs/gpu.md). */
Test(kernels_emu, signed_zero_ties_follow_the_scalar_reference)
{
	enum { H = 1, T = 32, D = 64, N = H * T * D };
	const struct kvt_kivi_geom g = {H, T, D, F16, 2, 32, 0};
	uint16_t x[2 * N];
	for (int i = 0; i < 2 * N; i++)
		x[i] = kvt_f32_to_f16(1.0f + (float)(i % 7) * 0.25f);
	x[3] = 0x8000, x[D + 3] = 0x0000;         /* K channel 3: -0, then +0 */
	x[N + 0] = 0x0000, x[N + 5] = 0x8000;     /* V row 0: +0, then -0 */
	x[N + D + 1] = 0x8000, x[N + D + 9] = 0x0000;
	size_t ks, enc;
	cr_assert_eq(kvt_kivi_geom_sizes(&g, NULL, &ks, &enc), 0);
	uint8_t *got = malloc(enc), *want = calloc(1, enc);
	cr_assert_eq(kvt_emu_kivi_quantize(&g, x, got), 0);
	memcpy(want, got, 40);
	memcpy(want + ks, got + ks, 40);
	struct kvt_codec_header h;
	cr_assert_eq(kvt_codec_read_header(got, ks, &h), 0);
	cr_assert_eq(kvt_kivi_encode_ref(&h, x, want + 40), 0);
	cr_assert_eq(kvt_codec_read_header(got + ks, enc - ks, &h), 0);
	cr_assert_eq(kvt_kivi_encode_ref(&h, x + N, want + ks + 40), 0);
	cr_assert_eq(memcmp(got, want, enc), 0);
	free(got);
	free(want);
}

/* ---------------------------------------------------------------- ZipCache */

Test(kernels_emu, zipcache_decode_equals_the_cpu_decode)
{
	for (size_t ci = 0; ci < KT_N_ZIP; ci++) {
		const struct kt_zip_case *c = &kt_zip_cases[ci];
		const struct kvt_kivi_geom kg = kt_zip_as_kivi(&c->g);
		size_t len, raw_len = 2 * (size_t)c->g.heads * c->g.tokens * c->g.dim *
				      kvt_dtype_size(c->g.dtype);
		uint8_t *raw = kt_raw_block(&kg, ci + 70);
		uint8_t *enc = kt_zip_encode(c, raw, &len, ci + 3);
		uint8_t *want = malloc(raw_len), *got = malloc(raw_len);
		kt_zip_decode(&c->g, enc, len, want);
		memset(got, 0xcd, raw_len);
		cr_assert_eq(kvt_emu_zip_dequantize(&c->g, enc, len, got), 0, "case %zu", ci);
		cr_assert_eq(memcmp(got, want, raw_len), 0, "case %zu", ci);
		free(got), free(want), free(enc), free(raw);
	}
}

Test(kernels_emu, zipcache_bad_blocks_are_eformat)
{
	const struct kt_zip_case *c = &kt_zip_cases[0];
	const struct kvt_kivi_geom kg = kt_zip_as_kivi(&c->g);
	size_t len, raw_len = 2 * (size_t)c->g.heads * c->g.tokens * c->g.dim * 2;
	uint8_t *raw = kt_raw_block(&kg, 5), *got = malloc(raw_len);
	uint8_t *enc = kt_zip_encode(c, raw, &len, 9);
	uint32_t kn;
	memcpy(&kn, enc + 32, 4);
	kn += 40;
	/* offsets: K bitmap word, K flags, V magic, the first normaliser */
	const size_t at[] = {44, 40, kn, 44 + 4 + 1};
	const uint8_t x[] = {0x01, 0x02, 0x01, 0x80};
	for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
		enc[at[i]] ^= x[i];
		memset(got, 0x11, raw_len);
		cr_assert_eq(kvt_emu_zip_dequantize(&c->g, enc, len, got), KVT_EFORMAT, "%zu", i);
		cr_assert_eq(got[0], 0x11);
		enc[at[i]] ^= x[i];
	}
	cr_assert_eq(kvt_emu_zip_dequantize(&c->g, enc, len - 4, got), KVT_EFORMAT);
	struct kvt_zip_geom other = c->g;
	other.high_bits = 8;
	cr_assert_eq(kvt_emu_zip_dequantize(&other, enc, len, got), KVT_EFORMAT);
	other.high_bits = 2;
	cr_assert_eq(kvt_emu_zip_dequantize(&other, enc, len, got), KVT_ECODEC);
	cr_assert_eq(kvt_emu_zip_dequantize(&c->g, enc, len, got), 0);
	free(enc), free(raw), free(got);
}

Test(kernels_emu, zipcache_quantize_writes_the_cpu_codec_bytes)
{
	for (size_t ci = 0; ci < KT_N_ZIP; ci++) {
		const struct kt_zip_case *c = &kt_zip_cases[ci];
		const struct kvt_kivi_geom kg = kt_zip_as_kivi(&c->g);
		const uint32_t n_sal = kt_zip_n_salient(c);
		size_t len, enc_len;
		cr_assert_eq(kvt_zip_block_size(&c->g, c->tokenwise, n_sal, NULL, &enc_len), 0);
		uint8_t *raw = kt_raw_block(&kg, ci + 40);
		uint8_t *want = kt_zip_encode(c, raw, &len, ci + 11);
		cr_assert_eq(len, enc_len, "case %zu", ci);
		float *scores = kt_zip_scores(c->g.tokens, ci + 11);
		uint32_t bm[64];
		cr_assert_eq(kvt_zip_salient_bitmap(scores, c->g.tokens, n_sal, bm), 0);
		uint8_t *got = malloc(len);
		memset(got, 0xab, len);
		cr_assert_eq(kvt_emu_zip_quantize(&c->g, c->tokenwise, n_sal, bm, raw, got), 0);
		for (size_t b = 0; b < len; b++)
			cr_assert_eq(got[b], want[b], "case %zu byte %zu of %zu", ci, b, len);
		free(got), free(want), free(raw), free(scores);
	}
}
