/*
 * vec.h - float32 dot products for retrieval, with GCC vector extensions.
 *
 * The build uses -ffp-contract=off and no reassociation, so the compiler
 * will not vectorise a reduction on its own; eight-lane partial sums make
 * the order explicit (and become AVX with -march=native).
 */
#ifndef KVTIER_RETRIEVAL_VEC_H
#define KVTIER_RETRIEVAL_VEC_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef float kvt_v8 __attribute__((vector_size(32)));

static inline kvt_v8 kvt_v8_load(const float *p)
{
	kvt_v8 v;
	memcpy(&v, p, sizeof v);
	return v;
}

static inline float kvt_v8_sum(kvt_v8 v)
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Four independent partial sums: a dot product is bound by the latency
 * of its additions, not by the multiplies. */
static inline float kvt_dot(const float *a, const float *b, size_t n)
{
	kvt_v8 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		s0 += kvt_v8_load(a + i) * kvt_v8_load(b + i);
		s1 += kvt_v8_load(a + i + 8) * kvt_v8_load(b + i + 8);
		s2 += kvt_v8_load(a + i + 16) * kvt_v8_load(b + i + 16);
		s3 += kvt_v8_load(a + i + 24) * kvt_v8_load(b + i + 24);
	}
	for (; i + 8 <= n; i += 8)
		s0 += kvt_v8_load(a + i) * kvt_v8_load(b + i);
	float s = kvt_v8_sum((s0 + s1) + (s2 + s3));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

/* out[j] = a . b_j for four vectors b_j spaced stride floats apart: one
 * pass over a, two partial sums per vector. */
static inline void kvt_dot4(const float *a, const float *b, size_t stride,
			    size_t n, float *out)
{
	kvt_v8 s[8] = {{0}};
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		kvt_v8 x = kvt_v8_load(a + i), y = kvt_v8_load(a + i + 8);
		for (int j = 0; j < 4; j++) {
			s[2 * j] += x * kvt_v8_load(b + j * stride + i);
			s[2 * j + 1] += y * kvt_v8_load(b + j * stride + i + 8);
		}
	}
	for (; i + 8 <= n; i += 8) {
		kvt_v8 x = kvt_v8_load(a + i);
		for (int j = 0; j < 4; j++)
			s[2 * j] += x * kvt_v8_load(b + j * stride + i);
	}
	float r[4];
	for (int j = 0; j < 4; j++)
		r[j] = kvt_v8_sum(s[2 * j] + s[2 * j + 1]);
	for (; i < n; i++)
		for (int j = 0; j < 4; j++)
			r[j] += a[i] * b[j * stride + i];
	memcpy(out, r, sizeof r);
}

/* y += a * x */
static inline void kvt_axpy(float *restrict y, float a, const float *restrict x,
			    size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

static inline float kvt_norm(const float *a, size_t n)
{
	return sqrtf(kvt_dot(a, a, n));
}

#endif
