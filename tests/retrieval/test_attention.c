/* test_attention.c - the CPU reference attention and quality figures
 * against a plain double-precision computation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvtier/retrieval.h"
#include "retrieval/synth.h"

#define H 2
#define HQ 4
#define NQ 2
#define D 16
#define N 100

static void fill(float *x, size_t n, uint64_t *st, float scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = scale * synth_normal(st);
}

/* Naive attention of q vector j (of q head qh) over tokens with mask. */
static void naive(const float *q, const float *k, const float *v, int qh,
		  const uint8_t *mask, double *out, double *mass)
{
	int h = qh / (HQ / H);
	double lg[N], mx = -1e300, z = 0, zs = 0;
	for (int t = 0; t < N; t++) {
		double s = 0;
		for (int e = 0; e < D; e++)
			s += (double)q[e] * k[(h * N + t) * D + e];
		lg[t] = s / sqrt(D);
		mx = lg[t] > mx ? lg[t] : mx;
	}
	for (int t = 0; t < N; t++)
		z += exp(lg[t] - mx);
	memset(out, 0, D * sizeof *out);
	for (int t = 0; t < N; t++) {
		if (mask && !mask[t])
			continue;
		double p = exp(lg[t] - mx);
		zs += p;
		for (int e = 0; e < D; e++)
			out[e] += p * v[(h * N + t) * D + e];
	}
	double norm = mask ? zs : z;
	for (int e = 0; e < D; e++)
		out[e] /= norm;
	if (mass)
		*mass = zs / z;
}

static const struct kvt_shape shape32 = {1, H, D, 16, KVT_DTYPE_F32};

Test(attention, full_matches_naive)
{
	float q[HQ * NQ * D], k[H * N * D], v[H * N * D], out[HQ * NQ * D];
	uint64_t st = 1;
	fill(q, sizeof q / 4, &st, 2.0f), fill(k, sizeof k / 4, &st, 1.0f);
	fill(v, sizeof v / 4, &st, 1.0f);
	cr_assert_eq(kvt_attn_full(&shape32, HQ, NQ, q, k, v, N, out), 0);
	for (int j = 0; j < HQ * NQ; j++) {
		double ref[D];
		naive(q + j * D, k, v, j / NQ, NULL, ref, NULL);
		for (int e = 0; e < D; e++)
			cr_assert_float_eq(out[j * D + e], ref[e], 1e-5, "q %d dim %d", j, e);
	}
}

Test(attention, half_precision_keys_match_their_float_values)
{
	float q[HQ * NQ * D], k[H * N * D], v[H * N * D];
	float o32[HQ * NQ * D], o16[HQ * NQ * D];
	uint16_t k16[H * N * D], v16[H * N * D];
	uint64_t st = 2;
	fill(q, sizeof q / 4, &st, 2.0f), fill(k, sizeof k / 4, &st, 1.0f);
	fill(v, sizeof v / 4, &st, 1.0f);
	for (int i = 0; i < H * N * D; i++) {
		k16[i] = kvt_f32_to_bf16(k[i]), k[i] = kvt_bf16_to_f32(k16[i]);
		v16[i] = kvt_f32_to_bf16(v[i]), v[i] = kvt_bf16_to_f32(v16[i]);
	}
	struct kvt_shape s16 = shape32;
	s16.dtype = KVT_DTYPE_BF16;
	cr_assert_eq(kvt_attn_full(&shape32, HQ, NQ, q, k, v, N, o32), 0);
	cr_assert_eq(kvt_attn_full(&s16, HQ, NQ, q, k16, v16, N, o16), 0);
	cr_assert_eq(memcmp(o32, o16, sizeof o32), 0);
}

static struct kvt_selection select_blocks(const uint32_t *blocks, uint32_t n)
{
	struct kvt_selection s = {0, 16, n, malloc(n * 4), malloc(n * 4), 0, N};
	for (uint32_t i = 0; i < n; i++) {
		s.blocks[i] = blocks[i];
		s.n_valid[i] = blocks[i] == N / 16 ? N % 16 : 16;
		s.n_tokens += s.n_valid[i];
	}
	return s;
}

Test(attention, quality_of_a_selection)
{
	float q[HQ * NQ * D], k[H * N * D], v[H * N * D];
	uint64_t st = 3;
	fill(q, sizeof q / 4, &st, 3.0f), fill(k, sizeof k / 4, &st, 1.0f);
	fill(v, sizeof v / 4, &st, 1.0f);
	uint32_t all[] = {0, 1, 2, 3, 4, 5, 6}, some[] = {1, 4, 6};
	struct kvt_selection s = select_blocks(all, 7);
	struct kvt_attn_quality qa;
	cr_assert_eq(kvt_attn_quality(&shape32, HQ, NQ, q, k, v, N, &s, &qa), 0);
	cr_assert_float_eq(qa.mass_recall, 1.0, 1e-6);
	cr_assert_float_eq(qa.min_recall, 1.0, 1e-6);
	cr_assert_lt(qa.rel_error, 1e-6);
	kvt_selection_free(&s);

	s = select_blocks(some, 3);
	cr_assert_eq(kvt_attn_quality(&shape32, HQ, NQ, q, k, v, N, &s, &qa), 0);
	uint8_t mask[N] = {0};
	for (int t = 16; t < 32; t++)
		mask[t] = 1;
	for (int t = 64; t < 80; t++)
		mask[t] = 1;
	for (int t = 96; t < N; t++)
		mask[t] = 1;
	double msum = 0, mmin = 1, err = 0, ref = 0;
	for (int j = 0; j < HQ * NQ; j++) {
		double full[D], sel[D], m;
		naive(q + j * D, k, v, j / NQ, NULL, full, NULL);
		naive(q + j * D, k, v, j / NQ, mask, sel, &m);
		msum += m, mmin = m < mmin ? m : mmin;
		for (int e = 0; e < D; e++)
			err += (sel[e] - full[e]) * (sel[e] - full[e]),
				ref += full[e] * full[e];
	}
	cr_assert_float_eq(qa.mass_recall, msum / (HQ * NQ), 1e-5);
	cr_assert_float_eq(qa.min_recall, mmin, 1e-5);
	cr_assert_float_eq(qa.rel_error, sqrt(err / ref), 1e-4);
	cr_assert_lt(qa.mass_recall, 1.0);

	uint32_t past[] = {7};
	struct kvt_selection bad = select_blocks(past, 1);
	cr_assert_eq(kvt_attn_quality(&shape32, HQ, NQ, q, k, v, N, &bad, &qa), -EINVAL);
	kvt_selection_free(&bad);
	kvt_selection_free(&s);
}

Test(attention, blocks_in_any_slot_order_match_full)
{
	/* tokens 0..47 as three blocks stored in slots 2, 0, 1 */
	const struct kvt_shape s = {1, H, D, 16, KVT_DTYPE_F32};
	enum { T = 48 };
	float q[HQ * D], k[H * T * D], v[H * T * D], ref[HQ * D], out[HQ * D];
	uint64_t st = 4;
	fill(q, sizeof q / 4, &st, 2.0f), fill(k, sizeof k / 4, &st, 1.0f);
	fill(v, sizeof v / 4, &st, 1.0f);
	size_t bb = kvt_block_bytes(&s);
	float *pool = malloc(3 * bb);
	uint32_t slot[3] = {2, 0, 1}, blk[3] = {0, 1, 2}, nv[3] = {16, 16, 16};
	for (int b = 0; b < 3; b++)
		for (int h = 0; h < H; h++) {
			float *dst = (float *)((char *)pool + slot[b] * bb);
			memcpy(dst + h * 16 * D, k + (h * T + b * 16) * D, 16 * D * 4);
			memcpy(dst + (H + h) * 16 * D, v + (h * T + b * 16) * D, 16 * D * 4);
		}
	struct kvt_block_table t = {3, 16, bb, blk, slot, nv};
	cr_assert_eq(kvt_attn_full(&s, HQ, 1, q, k, v, T, ref), 0);
	cr_assert_eq(kvt_attn_blocks(&s, HQ, 1, q, pool, &t, out), 0);
	for (int i = 0; i < HQ * D; i++)
		cr_assert_float_eq(out[i], ref[i], 1e-6);
	t.slot_bytes = bb / 2;
	cr_assert_eq(kvt_attn_blocks(&s, HQ, 1, q, pool, &t, out), -EINVAL);
	free(pool);
}

Test(attention, bad_arguments)
{
	float q[HQ * D] = {0}, k[H * N * D] = {0}, out[HQ * D];
	cr_assert_eq(kvt_attn_full(&shape32, 3, 1, q, k, k, N, out), -EINVAL);
	cr_assert_eq(kvt_attn_full(&shape32, HQ, 0, q, k, k, N, out), -EINVAL);
	cr_assert_eq(kvt_attn_full(&shape32, HQ, 1, q, k, k, 0, out), -EINVAL);
	cr_assert_eq(kvt_attn_full(&shape32, HQ, 1, NULL, k, k, N, out), -EINVAL);
}
