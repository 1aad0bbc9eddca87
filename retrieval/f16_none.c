/* f16_none.c - dot products of fp16 rows without a vector path. */
#include "f16_internal.h"

float kvt_rt_dot_f16(const uint16_t *a, const float *b, size_t n)
{
	float s = 0;
	for (size_t i = 0; i < n; i++)
		s += kvt_f16_to_f32(a[i]) * b[i];
	return s;
}

void kvt_rt_dot4_f16(const uint16_t *a, const float *b, size_t stride, size_t n,
		     float *out)
{
	for (int j = 0; j < 4; j++)
		out[j] = kvt_rt_dot_f16(a, b + j * stride, n);
}
