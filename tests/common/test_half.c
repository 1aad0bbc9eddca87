/* test_half.c - fp16/bf16 conversions, directed rounding included. */
#include <criterion/criterion.h>
#include <math.h>

#include "half.h"

Test(half, f16_round_trip_of_every_finite_value)
{
	for (uint32_t h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00u) == 0x7c00u)
			continue; /* inf / nan */
		float f = kvt_f16_to_f32((uint16_t)h);
		uint16_t back = kvt_f32_to_f16(f);
		if (f == 0.0f)
			cr_assert_eq(back & 0x7fffu, 0);
		else
			cr_assert_eq(back, h, "h=%#x", h);
	}
}

Test(half, directed_rounding_brackets_the_input)
{
	unsigned seed = 12345;
	for (int i = 0; i < 200000; i++) {
		seed = seed * 1103515245u + 12345u;
		float f = ((float)(seed >> 8) / (1u << 24) - 0.5f) *
			  powf(2.0f, (float)(i % 30) - 15.0f);
		float lo = kvt_f16_to_f32(kvt_f32_to_f16_rd(f));
		float hi = kvt_f16_to_f32(kvt_f32_to_f16_ru(f));
		cr_assert(lo <= f && f <= hi, "f=%g lo=%g hi=%g", f, lo, hi);
		cr_assert(hi == lo || kvt_f16_step(kvt_f32_to_f16_rd(f), 1) ==
					      kvt_f32_to_f16_ru(f),
			  "rd and ru of %g are not neighbours", f);
	}
}

Test(half, directed_rounding_at_overflow)
{
	cr_assert_eq(kvt_f32_to_f16_rd(1e6f), 0x7bffu);
	cr_assert_eq(kvt_f32_to_f16_ru(-1e6f), 0xfbffu);
	cr_assert_eq(kvt_f32_to_f16_ru(1e6f), 0x7c00u);
}

Test(half, bf16_rounds_to_nearest_even)
{
	cr_assert_eq(kvt_f32_to_bf16(1.0f), 0x3f80u);
	/* 1 + 2^-8 is a tie between 0x3f80 and 0x3f81: even wins. */
	cr_assert_eq(kvt_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80u);
	cr_assert_eq(kvt_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82u);
	cr_assert(isnan(kvt_bf16_to_f32(kvt_f32_to_bf16(NAN))));
}

Test(half, array_conversions_match_scalar)
{
	float src[37], back[37];
	uint16_t h[37];
	for (int i = 0; i < 37; i++)
		src[i] = (float)i * 0.37f - 5.0f;
	kvt_from_f32(KVT_DTYPE_F16, src, h, 37);
	kvt_to_f32(KVT_DTYPE_F16, h, back, 37);
	for (int i = 0; i < 37; i++) {
		cr_assert_eq(h[i], kvt_f32_to_f16(src[i]));
		cr_assert_eq(back[i], kvt_f16_to_f32(h[i]));
	}
	kvt_from_f32(KVT_DTYPE_BF16, src, h, 37);
	kvt_to_f32(KVT_DTYPE_BF16, h, back, 37);
	for (int i = 0; i < 37; i++)
		cr_assert_eq(back[i], kvt_bf16_to_f32(kvt_f32_to_bf16(src[i])));
}
