/* half.c - array conversions by dtype; the fp16 rows are in
 * half_row_f16c.c or half_row_scalar.c. */
#include "half.h"

static void bf16_to_f32(const uint16_t *restrict s, float *restrict d, size_t n)
{
	uint32_t *u = (uint32_t *)(void *)d;
	for (size_t i = 0; i < n; i++)
		u[i] = (uint32_t)s[i] << 16;
}

static void f32_to_bf16(const float *restrict s, uint16_t *restrict d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = kvt_f32_to_bf16(s[i]);
}

void kvt_to_f32(enum kvt_dtype dtype, const void *src, float *dst, size_t n)
{
	switch (dtype) {
	case KVT_DTYPE_F16: kvt_f16_to_f32_row(src, dst, n); break;
	case KVT_DTYPE_BF16: bf16_to_f32(src, dst, n); break;
	case KVT_DTYPE_F32: memmove(dst, src, n * sizeof(float)); break;
	}
}

void kvt_from_f32(enum kvt_dtype dtype, const float *src, void *dst, size_t n)
{
	switch (dtype) {
	case KVT_DTYPE_F16: kvt_f32_to_f16_row(src, dst, n); break;
	case KVT_DTYPE_BF16: f32_to_bf16(src, dst, n); break;
	case KVT_DTYPE_F32: memmove(dst, src, n * sizeof(float)); break;
	}
}
