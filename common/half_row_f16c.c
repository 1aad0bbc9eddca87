/*
 * half_row_f16c.c - fp16 rows through the F16C instructions; CMake builds
 * this file instead of half_row_scalar.c when the compiler targets F16C.
 *
 * vcvtph2ps is exact and vcvtps2ph with round-to-nearest-even (immediate 0,
 * not MXCSR) rounds as kvt_f32_to_f16, so the bits are those of the scalar
 * conversions (tests/common/test_half.c compares them). GCC 12 leaves the
 * plain loops scalar, hence the intrinsics.
 */
#include <immintrin.h>

#include "half.h"

/* a macro: clang wants the rounding immediate as a constant expression */
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

const char *kvt_half_row_variant(void)
{
	return "f16c";
}

void kvt_f16_to_f32_row(const uint16_t *restrict src, float *restrict dst,
			size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 8));
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
		_mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(b));
	}
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(
						  (const __m128i *)(const void *)(src + i))));
	for (; i < n; i++)
		dst[i] = kvt_f16_to_f32(src[i]);
}

void kvt_f32_to_f16_row(const float *restrict src, uint16_t *restrict dst,
			size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), RNE);
		__m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(src + i + 8), RNE);
		_mm_storeu_si128((__m128i *)(void *)(dst + i), a);
		_mm_storeu_si128((__m128i *)(void *)(dst + i + 8), b);
	}
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(void *)(dst + i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(src + i), RNE));
	for (; i < n; i++)
		dst[i] = kvt_f32_to_f16(src[i]);
}
