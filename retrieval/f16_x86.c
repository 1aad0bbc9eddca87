/* f16_x86.c - dot products of fp16 rows with F16C (GCC 12 does not
 * vectorise fp16 to fp32 conversions without AVX512-FP16). */
#include <immintrin.h>
#include <string.h>

#include "f16_internal.h"

#define SIMD __attribute__((target("avx2,f16c")))

static SIMD float dot_f16c(const uint16_t *a, const float *b, size_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	size_t i = 0;
#define H8(k) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(a + i + (k))))
	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_add_ps(s0, _mm256_mul_ps(H8(0), _mm256_loadu_ps(b + i)));
		s1 = _mm256_add_ps(s1, _mm256_mul_ps(H8(8), _mm256_loadu_ps(b + i + 8)));
		s2 = _mm256_add_ps(s2, _mm256_mul_ps(H8(16), _mm256_loadu_ps(b + i + 16)));
		s3 = _mm256_add_ps(s3, _mm256_mul_ps(H8(24), _mm256_loadu_ps(b + i + 24)));
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_add_ps(s0, _mm256_mul_ps(H8(0), _mm256_loadu_ps(b + i)));
#undef H8
	float r[8];
	_mm256_storeu_ps(r, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	float s = ((r[0] + r[4]) + (r[1] + r[5])) + ((r[2] + r[6]) + (r[3] + r[7]));
	for (; i < n; i++)
		s += kvt_f16_to_f32(a[i]) * b[i];
	return s;
}

float kvt_rt_dot_f16(const uint16_t *a, const float *b, size_t n)
{
	if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2"))
		return dot_f16c(a, b, n);
	float s = 0;
	for (size_t i = 0; i < n; i++)
		s += kvt_f16_to_f32(a[i]) * b[i];
	return s;
}

static SIMD void dot4_f16c(const uint16_t *a, const float *b, size_t stride,
			   size_t n, float *out)
{
	__m256 s[8];
	for (int j = 0; j < 8; j++)
		s[j] = _mm256_setzero_ps();
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(a + i)));
		__m256 y = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(a + i + 8)));
		for (int j = 0; j < 4; j++) {
			const float *bj = b + j * stride + i;
			s[2 * j] = _mm256_add_ps(s[2 * j], _mm256_mul_ps(x, _mm256_loadu_ps(bj)));
			s[2 * j + 1] = _mm256_add_ps(s[2 * j + 1],
						     _mm256_mul_ps(y, _mm256_loadu_ps(bj + 8)));
		}
	}
	for (int j = 0; j < 4; j++) {
		float r[8];
		_mm256_storeu_ps(r, _mm256_add_ps(s[2 * j], s[2 * j + 1]));
		out[j] = ((r[0] + r[4]) + (r[1] + r[5])) + ((r[2] + r[6]) + (r[3] + r[7]));
		for (size_t e = i; e < n; e++)
			out[j] += kvt_f16_to_f32(a[e]) * b[j * stride + e];
	}
}

void kvt_rt_dot4_f16(const uint16_t *a, const float *b, size_t stride, size_t n,
		     float *out)
{
	if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2")) {
		dot4_f16c(a, b, stride, n, out);
		return;
	}
	for (int j = 0; j < 4; j++)
		out[j] = kvt_rt_dot_f16(a, b + j * stride, n);
}
