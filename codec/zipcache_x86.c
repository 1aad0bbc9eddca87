/*
 * zipcache_x86.c - F16C conversions for the ZipCache codec's fp16 rows.
 *
 * vcvtph2ps is exact and vcvtps2ph with round-to-nearest-even rounds like
 * kvt_from_f32, so the codes and the decoded output are the same bytes as
 * with the portable conversions (the tests compare both).
 */
#include <immintrin.h>

#include "cpu_x86.h"
#include "half.h"
#include "zipcache_internal.h"

#define SIMD __attribute__((target("avx,f16c")))

static int f16c(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx") && kvt_cpu_has_f16c();
}

static SIMD void f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(
						  (const __m128i *)(const void *)(src + i))));
	kvt_to_f32(KVT_DTYPE_F16, src + i, dst + i, n - i);
}

static SIMD void f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(void *)(dst + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
						 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	kvt_from_f32(KVT_DTYPE_F16, src + i, dst + i, n - i);
}

void kvt_zip_to_f32(enum kvt_dtype dtype, const void *src, float *dst, size_t n)
{
	if (dtype == KVT_DTYPE_F16 && f16c())
		f16_to_f32(src, dst, n);
	else
		kvt_to_f32(dtype, src, dst, n);
}

void kvt_zip_from_f32(enum kvt_dtype dtype, const float *src, void *dst, size_t n)
{
	if (dtype == KVT_DTYPE_F16 && f16c())
		f32_to_f16(src, dst, n);
	else
		kvt_from_f32(dtype, src, dst, n);
}
