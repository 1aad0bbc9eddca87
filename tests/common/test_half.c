/* test_half.c - fp16/bf16 conversions, directed rounding included. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

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

/* ---------------------------------------------------------------- both paths
 * kvt_f16_to_f32 / kvt_f32_to_f16 are _Float16 (F16C) or the portable bit
 * manipulation depending on the compiler (KVT_HALF_HW). Both must give the
 * same bits: compared here with each other, with the F16C instructions
 * where the CPU has them, and with a reference built from exact arithmetic
 * on the sorted list of fp16 values. */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "cpu_x86.h"

static int have_f16c(void)
{
	return kvt_cpu_has_f16c();
}

__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* imm: 0 nearest, 1 down, 2 up (the vcvtps2ph rounding field). */
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f, int dir)
{
	if (dir == KVT_ROUND_DOWN)
		return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEG_INF);
	if (dir == KVT_ROUND_UP)
		return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_POS_INF);
	return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
#else
static int have_f16c(void) { return 0; }
static float hw_f16_to_f32(uint16_t h) { return kvt_f16_to_f32_sw(h); }
static uint16_t hw_f32_to_f16(float f, int dir) { return kvt_f32_to_f16_sw(f, dir); }
#endif

/* Exact value of fp16 h (not NaN) as a double, from its fields. */
static double f16_value(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v = e == 0x1f ? INFINITY
		 : e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
	return h & 0x8000u ? -v : v;
}

Test(half, f16_to_f32_both_paths_on_every_value)
{
	int hw = have_f16c();
	cr_log_info("KVT_HALF_HW=%d, F16C on this CPU: %d", KVT_HALF_HW, hw);
	for (uint32_t i = 0; i < 0x10000; i++) {
		uint16_t h = (uint16_t)i;
		uint32_t sw = kvt_f32_to_bits(kvt_f16_to_f32_sw(h));
		cr_assert_eq(kvt_f32_to_bits(kvt_f16_to_f32(h)), sw, "h=%#x", i);
		if (hw)
			cr_assert_eq(kvt_f32_to_bits(hw_f16_to_f32(h)), sw,
				     "h=%#x", i);
		if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) {
			/* NaN: quiet, sign and payload kept */
			uint32_t want = ((uint32_t)(h & 0x8000u) << 16) |
					0x7fc00000u | ((uint32_t)(h & 0x3ffu) << 13);
			cr_assert_eq(sw, want, "h=%#x", i);
		} else {
			cr_assert_eq((double)kvt_f16_to_f32_sw(h), f16_value(h),
				     "h=%#x", i);
			cr_assert_eq(sw >> 31, (uint32_t)(h >> 15));
		}
	}
}

/* Sorted values of the non-NaN fp16 with +0 only: -inf .. +inf. */
struct f16_table {
	double v[0xf802];
	uint16_t h[0xf802];
	size_t n;
};

static void table_fill(struct f16_table *t)
{
	t->n = 0;
	for (int32_t i = 0xfc00; i >= 0x8001; i--) { /* -inf up to -min */
		t->v[t->n] = f16_value((uint16_t)i);
		t->h[t->n++] = (uint16_t)i;
	}
	for (uint32_t i = 0; i <= 0x7c00; i++) {
		t->v[t->n] = f16_value((uint16_t)i);
		t->h[t->n++] = (uint16_t)i;
	}
}

/* Index of the largest table value <= x. */
static size_t table_floor(const struct f16_table *t, double x)
{
	size_t lo = 0, hi = t->n - 1;
	while (lo < hi) {
		size_t mid = (lo + hi + 1) / 2;
		if (t->v[mid] <= x)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* The correctly rounded fp16 of finite or infinite f in direction dir. */
static uint16_t ref_f32_to_f16(const struct f16_table *t, float f, int dir)
{
	const double x = f;
	const uint16_t sign = (kvt_f32_to_bits(f) >> 16) & 0x8000u;
	size_t i = table_floor(t, x);
	uint16_t r;
	if (t->v[i] == x) {
		r = t->h[i];
	} else if (dir == KVT_ROUND_DOWN) {
		r = t->h[i];
	} else if (dir == KVT_ROUND_UP) {
		r = t->h[i + 1];
	} else if (fabs(x) >= 65520.0) { /* IEEE overflow threshold */
		r = sign | 0x7c00u;
	} else {
		double dl = x - t->v[i], du = t->v[i + 1] - x; /* exact */
		r = dl < du ? t->h[i] : du < dl ? t->h[i + 1]
		  : (t->h[i] & 1u) ? t->h[i + 1] : t->h[i];
	}
	if ((r & 0x7fffu) == 0) /* a zero result keeps the sign of f */
		r = sign;
	return r;
}

static void check_f32(const struct f16_table *t, int hw, float f)
{
	static const int dirs[3] = {KVT_ROUND_NEAREST, KVT_ROUND_DOWN, KVT_ROUND_UP};
	const uint16_t got[3] = {kvt_f32_to_f16(f), kvt_f32_to_f16_rd(f),
				 kvt_f32_to_f16_ru(f)};
	const uint32_t u = kvt_f32_to_bits(f);
	for (int k = 0; k < 3; k++) {
		uint16_t sw = kvt_f32_to_f16_sw(f, dirs[k]);
		cr_assert_eq(got[k], sw, "f=%#x dir=%d: %#x vs sw %#x", u,
			     dirs[k], got[k], sw);
		if (hw)
			cr_assert_eq(hw_f32_to_f16(f, dirs[k]), sw,
				     "f=%#x dir=%d: F16C %#x vs sw %#x", u,
				     dirs[k], hw_f32_to_f16(f, dirs[k]), sw);
		if (f != f) {
			uint16_t want = ((u >> 16) & 0x8000u) | 0x7e00u |
					((u >> 13) & 0x3ffu);
			cr_assert_eq(sw, want, "nan %#x", u);
		} else {
			uint16_t want = ref_f32_to_f16(t, f, dirs[k]);
			cr_assert_eq(sw, want, "f=%#x (%a) dir=%d: sw %#x, exact %#x",
				     u, (double)f, dirs[k], sw, want);
		}
	}
}

/* Every fp16 value and, around it and around each midpoint between
 * neighbours, the nearby fp32 values (ties and their neighbours). */
Test(half, f32_to_f16_both_paths_near_every_boundary)
{
	struct f16_table *t = malloc(sizeof *t);
	cr_assert(t);
	table_fill(t);
	int hw = have_f16c();
	for (size_t i = 0; i + 1 < t->n; i++) {
		/* the infinities stand for 2^16, whose midpoint is 65520 */
		double a = isinf(t->v[i]) ? -65536.0 : t->v[i];
		double b = isinf(t->v[i + 1]) ? 65536.0 : t->v[i + 1];
		float lo = (float)a, mid = (float)((a + b) / 2); /* exact */
		for (int d = -3; d <= 3; d++) {
			check_f32(t, hw, kvt_bits_to_f32(kvt_f32_to_bits(lo) + d));
			check_f32(t, hw, kvt_bits_to_f32(kvt_f32_to_bits(mid) + d));
		}
	}
	for (float f = 65000.0f; f < 66000.0f; f += 0.5f) {
		check_f32(t, hw, f);
		check_f32(t, hw, -f);
	}
	free(t);
}

/* A stride through all 2^32 bit patterns (every exponent, NaNs, infinities,
 * fp32 subnormals) plus the special values. */
Test(half, f32_to_f16_both_paths_on_a_sample_of_all_floats)
{
	struct f16_table *t = malloc(sizeof *t);
	cr_assert(t);
	table_fill(t);
	int hw = have_f16c();
	for (uint64_t u = 0; u < (1ull << 32); u += 257)
		check_f32(t, hw, kvt_bits_to_f32((uint32_t)u));
	static const uint32_t special[] = {
		0x00000000u, 0x80000000u, 0x00000001u, 0x80000001u, 0x007fffffu,
		0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7f800001u,
		0x7fc00000u, 0xffffffffu, 0x33000000u, 0x33000001u, 0xb3000000u,
		0x33800000u, 0x33c00000u, 0x387fc000u, 0x387fe000u, 0x38800000u,
		0x477fe000u, 0x477fefffu, 0x477ff000u, 0x47800000u, 0xc77ff000u,
	};
	for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
		check_f32(t, hw, kvt_bits_to_f32(special[i]));
	free(t);
}

/* ---------------------------------------------------------------- rows
 * kvt_f16_to_f32_row / kvt_f32_to_f16_row (F16C or scalar, as built) must
 * give the scalar bits at every length and alignment, and write nothing
 * past n. */

Test(half, f16_row_matches_scalar_on_every_value)
{
	cr_log_info("row conversions: %s", kvt_half_row_variant());
	const size_t n = 0x10000;
	uint16_t *h = malloc((n + 8) * sizeof *h);
	float *f = malloc((n + 8) * sizeof *f);
	cr_assert(h && f);
	for (size_t i = 0; i < n + 8; i++)
		h[i] = (uint16_t)(i * 40503u); /* every value, shuffled */
	for (size_t off = 0; off < 4; off++) {
		f[n - off] = 12345.0f;
		kvt_f16_to_f32_row(h + off, f, n - off);
		for (size_t i = 0; i < n - off; i++)
			cr_assert_eq(kvt_f32_to_bits(f[i]),
				     kvt_f32_to_bits(kvt_f16_to_f32_sw(h[off + i])),
				     "h=%#x", h[off + i]);
		cr_assert_eq(f[n - off], 12345.0f, "written past the end");
	}
	for (size_t len = 0; len <= 40; len++) /* every tail */
		for (size_t off = 0; off < 3; off++) {
			f[len] = -1.0f;
			kvt_f16_to_f32_row(h + 1000 + off, f, len);
			for (size_t i = 0; i < len; i++)
				cr_assert_eq(kvt_f32_to_bits(f[i]),
					     kvt_f32_to_bits(kvt_f16_to_f32_sw(h[1000 + off + i])));
			cr_assert_eq(f[len], -1.0f);
		}
	free(h);
	free(f);
}

/* Floats near every fp16 boundary and tie, then a stride through all bit
 * patterns (NaNs, infinities, fp32 subnormals). */
static size_t row_sample(float *f, size_t cap)
{
	size_t n = 0;
	for (uint32_t h = 0; h < 0x7c00u && n + 14 <= cap; h++) {
		float a = kvt_f16_to_f32_sw((uint16_t)h);
		float b = h + 1 < 0x7c00u ? kvt_f16_to_f32_sw((uint16_t)(h + 1)) : 65536.0f;
		float mid = (float)(((double)a + b) / 2);
		for (int d = -3; d <= 3; d++) {
			f[n++] = kvt_bits_to_f32(kvt_f32_to_bits(mid) + (uint32_t)d);
			f[n++] = -kvt_bits_to_f32(kvt_f32_to_bits(a) + (uint32_t)(d + 3));
		}
	}
	for (uint64_t u = 0; u < (1ull << 32) && n < cap; u += 4099)
		f[n++] = kvt_bits_to_f32((uint32_t)u);
	return n;
}

Test(half, f32_row_matches_scalar_on_a_large_sample)
{
	const size_t cap = 0x7c00u * 14 + (1u << 20) + 16;
	float *f = malloc(cap * sizeof *f);
	uint16_t *h = malloc((cap + 1) * sizeof *h);
	cr_assert(f && h);
	size_t n = row_sample(f, cap);
	for (size_t off = 0; off < 3; off++) {
		h[n - off] = 0x1234;
		kvt_f32_to_f16_row(f + off, h, n - off);
		for (size_t i = 0; i < n - off; i++)
			cr_assert_eq(h[i], kvt_f32_to_f16_sw(f[off + i], KVT_ROUND_NEAREST),
				     "f=%#x", kvt_f32_to_bits(f[off + i]));
		cr_assert_eq(h[n - off], 0x1234, "written past the end");
	}
	for (size_t len = 0; len <= 40; len++) {
		h[len] = 0x4321;
		kvt_from_f32(KVT_DTYPE_F16, f + 5000, h, len);
		for (size_t i = 0; i < len; i++)
			cr_assert_eq(h[i], kvt_f32_to_f16_sw(f[5000 + i], KVT_ROUND_NEAREST));
		cr_assert_eq(h[len], 0x4321);
	}
	free(f);
	free(h);
}
