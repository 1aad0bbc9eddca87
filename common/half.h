/*
 * half.h - fp16 / bf16 <-> fp32 conversions (internal, shared by modules).
 *
 * Scalar conversions are exact IEEE conversions; kvt_f32_to_f16_rd/_ru
 * round toward -inf/+inf (the KIVI codec stores its minima and scales that
 * way so a group's range always covers its inputs). The CUDA kernels use
 * __float2half_rd/_ru, which round identically.
 */
#ifndef KVTIER_COMMON_HALF_H
#define KVTIER_COMMON_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kvtier/kvtier.h"

static inline float kvt_bits_to_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static inline uint32_t kvt_f32_to_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

static inline float kvt_f16_to_f32(uint16_t h)
{
	_Float16 x;
	memcpy(&x, &h, sizeof x);
	return (float)x;
}

/* Round to nearest, ties to even. */
static inline uint16_t kvt_f32_to_f16(float f)
{
	_Float16 x = (_Float16)f;
	uint16_t h;
	memcpy(&h, &x, sizeof h);
	return h;
}

/* The fp16 neighbour of h toward +inf (dir > 0) or -inf (dir < 0). */
static inline uint16_t kvt_f16_step(uint16_t h, int dir)
{
	uint16_t mag = h & 0x7fffu;
	int neg = (h & 0x8000u) != 0;
	if (mag == 0)
		return dir > 0 ? 0x0001u : 0x8001u;
	if ((dir > 0) != neg)
		return (uint16_t)(h + 1); /* away from zero */
	return (uint16_t)(h - 1);         /* toward zero */
}

/* Round toward -inf. */
static inline uint16_t kvt_f32_to_f16_rd(float f)
{
	uint16_t h = kvt_f32_to_f16(f);
	if (f == f && kvt_f16_to_f32(h) > f)
		h = kvt_f16_step(h, -1);
	return h;
}

/* Round toward +inf. */
static inline uint16_t kvt_f32_to_f16_ru(float f)
{
	uint16_t h = kvt_f32_to_f16(f);
	if (f == f && kvt_f16_to_f32(h) < f)
		h = kvt_f16_step(h, +1);
	return h;
}

static inline float kvt_bf16_to_f32(uint16_t h)
{
	return kvt_bits_to_f32((uint32_t)h << 16);
}

/* Round to nearest, ties to even; NaN stays NaN. */
static inline uint16_t kvt_f32_to_bf16(float f)
{
	uint32_t u = kvt_f32_to_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* Converts n elements of dtype at src to fp32. */
void kvt_to_f32(enum kvt_dtype dtype, const void *src, float *dst, size_t n);

/* Converts n fp32 values to dtype (round to nearest even). */
void kvt_from_f32(enum kvt_dtype dtype, const float *src, void *dst, size_t n);

#endif /* KVTIER_COMMON_HALF_H */
