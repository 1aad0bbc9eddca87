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

/* Rounding directions of kvt_f32_to_f16_sw. */
#define KVT_ROUND_NEAREST 0 /* to nearest, ties to even */
#define KVT_ROUND_DOWN (-1) /* toward -inf */
#define KVT_ROUND_UP 1      /* toward +inf */

/*
 * Portable exact conversions by integer arithmetic. They give the same bits
 * as the F16C instructions, NaNs included (quieted, payload kept as far as
 * it fits). kvt_f16_to_f32 / kvt_f32_to_f16 use them where the compiler has
 * no hardware conversion; tests compare both.
 */
static inline float kvt_f16_to_f32_sw(uint16_t h)
{
	const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
	if (exp == 0x1fu) /* inf, or NaN made quiet */
		return kvt_bits_to_f32(sign | 0x7f800000u | (man << 13) |
				       (man ? 0x400000u : 0));
	if (exp != 0)
		return kvt_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
	/* zero or subnormal: man * 2^-24 is exact in fp32 */
	return kvt_bits_to_f32(sign | kvt_f32_to_bits((float)man * 0x1p-24f));
}

/* Rounds base + rem / (2 * half) to an integer: to nearest even, or away
 * from zero when `away` (rem != 0), else truncated. */
static inline uint32_t kvt_half_round(uint32_t base, uint32_t rem,
				      uint32_t half, int dir, int away)
{
	if (dir == KVT_ROUND_NEAREST)
		return base + (rem > half || (rem == half && (base & 1u)));
	return base + (away && rem != 0);
}

/* fp32 to fp16 rounded in direction dir (KVT_ROUND_*). */
static inline uint16_t kvt_f32_to_f16_sw(float f, int dir)
{
	const uint32_t u = kvt_f32_to_bits(f), a = u & 0x7fffffffu;
	const uint32_t sign = (u >> 16) & 0x8000u;
	const int away = sign ? dir < 0 : dir > 0; /* magnitude rounds up */
	if (a > 0x7f800000u) /* NaN: quiet, top payload bits */
		return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
	if (a >= 0x47800000u) /* |f| >= 65536, inf included */
		return (uint16_t)(sign | (dir == KVT_ROUND_NEAREST || away ||
						  a == 0x7f800000u
					  ? 0x7c00u : 0x7bffu));
	const uint32_t e = a >> 23;
	if (e >= 113) /* normal fp16; a carry into the exponent is right */
		return (uint16_t)(sign | kvt_half_round(((e - 112) << 10) |
							((a >> 13) & 0x3ffu),
							a & 0x1fffu, 0x1000u,
							dir, away));
	/* subnormal fp16 (units of 2^-24): full * 2^(e - 126) */
	const uint32_t full = e ? (a & 0x7fffffu) | 0x800000u : a;
	uint32_t shift = 126 - (e ? e : 1);
	shift = shift > 25 ? 25 : shift; /* full < 2^24: below half anyway */
	return (uint16_t)(sign | kvt_half_round(full >> shift,
						full & ((1u << shift) - 1),
						1u << (shift - 1), dir, away));
}

/*
 * KVT_HALF_HW is 1 where the compiler converts _Float16 with the F16C
 * instructions (GCC 12 or later on x86 with F16C enabled): the conversions
 * then compile to vcvtph2ps / vcvtps2ph and the loops using them can be
 * vectorised. Elsewhere (clang 14 has no _Float16 on x86, other targets,
 * no F16C) the portable versions above are used; the results are the same.
 */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && \
	defined(__F16C__) && (defined(__x86_64__) || defined(__i386__))
#define KVT_HALF_HW 1
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
#else
#define KVT_HALF_HW 0
static inline float kvt_f16_to_f32(uint16_t h)
{
	return kvt_f16_to_f32_sw(h);
}

/* Round to nearest, ties to even. */
static inline uint16_t kvt_f32_to_f16(float f)
{
	return kvt_f32_to_f16_sw(f, KVT_ROUND_NEAREST);
}
#endif

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

/*
 * n fp16 values to fp32, and n fp32 values to fp16 rounded to nearest even:
 * the bits of kvt_f16_to_f32 / kvt_f32_to_f16, vectorised with F16C where
 * the compiler targets it. src and dst must not overlap.
 */
void kvt_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void kvt_f32_to_f16_row(const float *src, uint16_t *dst, size_t n);

/* Which row conversions were built: "f16c" or "scalar". */
const char *kvt_half_row_variant(void);

/* Converts n elements of dtype at src to fp32 (no overlap unless fp32). */
void kvt_to_f32(enum kvt_dtype dtype, const void *src, float *dst, size_t n);

/* Converts n fp32 values to dtype (round to nearest even; no overlap
 * unless fp32). */
void kvt_from_f32(enum kvt_dtype dtype, const float *src, void *dst, size_t n);

#endif /* KVTIER_COMMON_HALF_H */
