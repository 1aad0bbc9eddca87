/* zipcache_simd_none.c - portable conversions where there is no F16C path. */
#include "half.h"
#include "zipcache_internal.h"

void kvt_zip_to_f32(enum kvt_dtype dtype, const void *src, float *dst, size_t n)
{
	kvt_to_f32(dtype, src, dst, n);
}

void kvt_zip_from_f32(enum kvt_dtype dtype, const float *src, void *dst, size_t n)
{
	kvt_from_f32(dtype, src, dst, n);
}
