/* half_row_scalar.c - fp16 rows one value at a time, where the compiler
 * does not target F16C (CMake picks this file or half_row_f16c.c). */
#include "half.h"

const char *kvt_half_row_variant(void)
{
	return "scalar";
}

void kvt_f16_to_f32_row(const uint16_t *restrict src, float *restrict dst,
			size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = kvt_f16_to_f32(src[i]);
}

void kvt_f32_to_f16_row(const float *restrict src, uint16_t *restrict dst,
			size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = kvt_f32_to_f16(src[i]);
}
