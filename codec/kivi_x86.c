/*
 * kivi_x86.c - AVX2/F16C fast paths of the KIVI codec for fp16 tensors.
 *
 * Same arithmetic as the reference in kivi.c, operation for operation:
 * directed fp16 rounding of minima and scales (vcvtps2ph with an explicit
 * rounding mode), an IEEE division for the scale and its reciprocal,
 * round-to-nearest-even codes, decode as one multiply then one add. The
 * test suite checks that both paths produce the same bytes.
 *
 * Keys: lanes are channels (8 per vector), the tile is one group of G
 * tokens. Values: lanes are channels of one token row; the min/max of each
 * group is reduced horizontally and the fp16 parameters of a whole row are
 * computed 8 groups at a time.
 */
#include <immintrin.h>
#include <string.h>

#include "cpu_x86.h"
#include "half.h"
#include "kivi_internal.h"

#define SIMD __attribute__((target("avx2,f16c")))
#define F16_MAX 65504.0f
#define MAX_WPG 8

int kvt_kivi_simd_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && kvt_cpu_has_f16c();
}

static int shape_ok(const struct kvt_codec_header *h)
{
	unsigned wpg = (unsigned)h->group * h->bits / 32;
	if (h->dtype != KVT_DTYPE_F16 || h->dim % 8 || wpg > MAX_WPG)
		return 0;
	return h->kind == KVT_KIND_KEY || h->group % 8 == 0;
}

static SIMD inline __m256 load_f16(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* Vector form of kvt_kivi_group_params: 8 groups at once. */
struct params8 {
	__m256 m, inv;
	__m128i sh, mh;
};

static SIMD struct params8 params8(__m256 mn, __m256 mx, float qmax)
{
	struct params8 p;
	mn = _mm256_add_ps(mn, _mm256_setzero_ps()); /* -0 -> +0, as the reference */
	mx = _mm256_add_ps(mx, _mm256_setzero_ps());
	mn = _mm256_max_ps(mn, _mm256_set1_ps(-F16_MAX));
	p.mh = _mm256_cvtps_ph(mn, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
	p.m = _mm256_cvtph_ps(p.mh);
	__m256 range = _mm256_div_ps(_mm256_sub_ps(mx, p.m), _mm256_set1_ps(qmax));
	range = _mm256_min_ps(range, _mm256_set1_ps(F16_MAX));
	p.sh = _mm256_cvtps_ph(range, _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC);
	__m256 s = _mm256_cvtph_ps(p.sh);
	__m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), s);
	__m256 pos = _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_GT_OQ);
	p.inv = _mm256_and_ps(inv, pos);
	return p;
}

static SIMD inline __m256i quant8(__m256 x, __m256 m, __m256 inv, __m256 qmax)
{
	__m256 v = _mm256_mul_ps(_mm256_sub_ps(x, m), inv);
	v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	v = _mm256_min_ps(_mm256_max_ps(v, _mm256_setzero_ps()), qmax);
	return _mm256_cvttps_epi32(v);
}

/* ---------------------------------------------------------------- keys */

static SIMD void key_lanes(const struct kvt_codec_header *h,
			   const uint16_t *tile, uint32_t d0, uint16_t *scales,
			   uint16_t *mins, uint32_t *words)
{
	const uint32_t dim = h->dim, g = h->group, bits = h->bits;
	const uint32_t wpg = g * bits / 32;
	const float qf = (float)((1u << bits) - 1);
	/* Two independent chains hide the min/max latency. */
	__m256 mn = load_f16(tile + d0), mx = mn, mn2 = mn, mx2 = mn;
	for (uint32_t j = 1; j + 1 < g; j += 2) {
		__m256 x = load_f16(tile + (size_t)j * dim + d0);
		__m256 y = load_f16(tile + (size_t)(j + 1) * dim + d0);
		mn = _mm256_min_ps(mn, x);
		mx = _mm256_max_ps(mx, x);
		mn2 = _mm256_min_ps(mn2, y);
		mx2 = _mm256_max_ps(mx2, y);
	}
	if (g % 2 == 0) {
		__m256 x = load_f16(tile + (size_t)(g - 1) * dim + d0);
		mn = _mm256_min_ps(mn, x);
		mx = _mm256_max_ps(mx, x);
	}
	mn = _mm256_min_ps(mn, mn2);
	mx = _mm256_max_ps(mx, mx2);
	struct params8 p = params8(mn, mx, qf);
	_mm_storeu_si128((__m128i *)(void *)(scales + d0), p.sh);
	_mm_storeu_si128((__m128i *)(void *)(mins + d0), p.mh);
	const __m256 qmax = _mm256_set1_ps(qf);
	const uint32_t per_word = 32 / bits;
	uint32_t lanes[8];
	for (uint32_t w = 0; w < wpg; w++) {
		__m256i acc = _mm256_setzero_si256();
		for (uint32_t k = 0; k < per_word; k++) {
			uint32_t j = w * per_word + k;
			__m256 x = load_f16(tile + (size_t)j * dim + d0);
			__m256i c = quant8(x, p.m, p.inv, qmax);
			acc = _mm256_or_si256(acc, _mm256_slli_epi32(c, (int)(k * bits)));
		}
		_mm256_storeu_si256((__m256i *)(void *)lanes, acc);
		for (uint32_t l = 0; l < 8; l++)
			words[(size_t)(d0 + l) * wpg + w] = lanes[l];
	}
}

static SIMD void encode_keys(const struct kvt_codec_header *h,
			     const uint16_t *src, uint8_t *payload,
			     const struct kvt_kivi_layout *l)
{
	const size_t dim = h->dim;
	uint16_t *scales = (uint16_t *)(void *)(payload + l->scales);
	uint16_t *mins = (uint16_t *)(void *)(payload + l->mins);
	uint32_t *words = (uint32_t *)(void *)(payload + l->codes);
	for (size_t hd = 0; hd < h->heads; hd++) {
		for (size_t g = 0; g < l->ng; g++) {
			size_t gi = hd * l->ng + g;
			const uint16_t *tile =
				src + (hd * h->tokens + g * h->group) * dim;
			for (uint32_t d0 = 0; d0 < dim; d0 += 8)
				key_lanes(h, tile, d0, scales + gi * dim,
					  mins + gi * dim,
					  words + gi * dim * l->wpg);
		}
	}
}

/* ---------------------------------------------------------------- values */

static SIMD inline float hmin8(__m256 v)
{
	__m128 x = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	x = _mm_min_ps(x, _mm_movehl_ps(x, x));
	x = _mm_min_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

static SIMD inline float hmax8(__m256 v)
{
	__m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	x = _mm_max_ps(x, _mm_movehl_ps(x, x));
	x = _mm_max_ss(x, _mm_movehdup_ps(x));
	return _mm_cvtss_f32(x);
}

/* OR of the four 32-bit lanes of x. */
static SIMD inline uint32_t hor4(__m128i x)
{
	x = _mm_or_si128(x, _mm_shuffle_epi32(x, 0x4e));
	x = _mm_or_si128(x, _mm_shuffle_epi32(x, 0xb1));
	return (uint32_t)_mm_cvtsi128_si32(x);
}

/* Min and max of every group of one row, into mn/mx [nc]. */
static SIMD void row_minmax(const uint16_t *row, uint32_t dim, uint32_t g,
			    float *mn, float *mx)
{
	for (uint32_t c0 = 0, gi = 0; c0 < dim; c0 += g, gi++) {
		__m256 lo = load_f16(row + c0), hi = lo;
		for (uint32_t c = 8; c < g; c += 8) {
			__m256 x = load_f16(row + c0 + c);
			lo = _mm256_min_ps(lo, x);
			hi = _mm256_max_ps(hi, x);
		}
		mn[gi] = hmin8(lo);
		mx[gi] = hmax8(hi);
	}
}

/* Parameters of n groups: vectors of 8, the tail through the reference. */
static SIMD void params_n(uint32_t n, const float *mn, const float *mx,
			  unsigned bits, uint16_t *scales, uint16_t *mins,
			  float *m, float *inv)
{
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		struct params8 p = params8(_mm256_loadu_ps(mn + i),
					   _mm256_loadu_ps(mx + i),
					   (float)((1u << bits) - 1));
		_mm_storeu_si128((__m128i *)(void *)(scales + i), p.sh);
		_mm_storeu_si128((__m128i *)(void *)(mins + i), p.mh);
		_mm256_storeu_ps(m + i, p.m);
		_mm256_storeu_ps(inv + i, p.inv);
	}
	for (; i < n; i++) {
		kvt_kivi_group_params(mn[i], mx[i], bits, &scales[i], &mins[i],
				      &inv[i]);
		m[i] = kvt_f16_to_f32(mins[i]);
	}
}

/* Codes of one group of g channels into g*bits/32 words. */
static SIMD void value_group(const uint16_t *x, uint32_t g, unsigned bits,
			     float m, float inv, uint32_t *words)
{
	const __m256 vm = _mm256_set1_ps(m), vi = _mm256_set1_ps(inv);
	const __m256 qmax = _mm256_set1_ps((float)((1u << bits) - 1));
	/* Lane l of vector v holds channel 8v + l: its bit offset in its
	 * word is ((8v + l) * bits) % 32. */
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	const uint32_t per_word = 32 / bits; /* channels per word: 16, 8, 4 */
	if (per_word >= 8) {
		for (uint32_t c = 0, w = 0; c < g; c += per_word, w++) {
			__m256i acc = _mm256_setzero_si256();
			for (uint32_t k = 0; k < per_word; k += 8) {
				__m256i code = quant8(load_f16(x + c + k), vm, vi, qmax);
				__m256i sh = _mm256_mullo_epi32(
					_mm256_add_epi32(lane, _mm256_set1_epi32((int)k)),
					_mm256_set1_epi32((int)bits));
				acc = _mm256_or_si256(acc, _mm256_sllv_epi32(code, sh));
			}
			words[w] = hor4(_mm_or_si128(_mm256_castsi256_si128(acc),
						     _mm256_extracti128_si256(acc, 1)));
		}
		return;
	}
	/* 8 bits: four channels per word, two words per vector. */
	const __m256i sh = _mm256_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24);
	for (uint32_t c = 0, w = 0; c < g; c += 8, w += 2) {
		__m256i code = quant8(load_f16(x + c), vm, vi, qmax);
		__m256i acc = _mm256_sllv_epi32(code, sh);
		words[w] = hor4(_mm256_castsi256_si128(acc));
		words[w + 1] = hor4(_mm256_extracti128_si256(acc, 1));
	}
}

/* Rows are handled VALUE_ROWS at a time so the fp16 parameters of their
 * groups are computed in full vectors even when a row has few groups. */
#define VALUE_ROWS KVT_KIVI_VALUE_ROWS

static SIMD void encode_values(const struct kvt_codec_header *h,
			       const uint16_t *src, uint8_t *payload,
			       const struct kvt_kivi_layout *l, float *tmp)
{
	const uint32_t dim = h->dim, g = h->group, nc = l->nc;
	const size_t row_words = (size_t)nc * l->wpg, chunk = VALUE_ROWS * nc;
	float *mn = tmp, *mx = tmp + chunk, *m = tmp + 2 * chunk;
	float *inv = tmp + 3 * chunk;
	uint32_t *words = (uint32_t *)(void *)(payload + l->codes);
	uint16_t *scales = (uint16_t *)(void *)(payload + l->scales);
	uint16_t *mins = (uint16_t *)(void *)(payload + l->mins);
	for (size_t hd = 0; hd < h->heads; hd++) {
		for (size_t t0 = 0; t0 < l->tq; t0 += VALUE_ROWS) {
			size_t n = l->tq - t0 < VALUE_ROWS ? l->tq - t0 : VALUE_ROWS;
			size_t r0 = hd * l->tq + t0;
			const uint16_t *rows = src + (hd * h->tokens + t0) * dim;
			for (size_t i = 0; i < n; i++)
				row_minmax(rows + i * dim, dim, g, mn + i * nc,
					   mx + i * nc);
			params_n((uint32_t)(n * nc), mn, mx, h->bits,
				 scales + r0 * nc, mins + r0 * nc, m, inv);
			for (size_t i = 0; i < n; i++)
				for (uint32_t gi = 0; gi < nc; gi++)
					value_group(rows + i * dim + (size_t)gi * g,
						    g, h->bits, m[i * nc + gi],
						    inv[i * nc + gi],
						    words + (r0 + i) * row_words +
							    gi * l->wpg);
		}
	}
}

int kvt_kivi_encode_simd(const struct kvt_codec_header *h, const void *src,
			 uint8_t *payload, const struct kvt_kivi_layout *l,
			 float *tmp)
{
	if (!shape_ok(h))
		return 0;
	if (h->kind == KVT_KIND_KEY)
		encode_keys(h, src, payload, l);
	else
		encode_values(h, src, payload, l, tmp);
	return 1;
}

/* ---------------------------------------------------------------- decode */

static SIMD void decode_key_lanes(const struct kvt_codec_header *h,
				  const uint32_t *words, const uint16_t *scales,
				  const uint16_t *mins, uint32_t d0,
				  uint16_t *out)
{
	const uint32_t dim = h->dim, bits = h->bits;
	const uint32_t wpg = (uint32_t)h->group * bits / 32;
	const __m256i mask = _mm256_set1_epi32((int)((1u << bits) - 1));
	const __m256 s = load_f16(scales + d0), m = load_f16(mins + d0);
	__m256i wv[MAX_WPG];
	const __m256i idx = _mm256_mullo_epi32(
		_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
		_mm256_set1_epi32((int)wpg));
	for (uint32_t w = 0; w < wpg; w++)
		wv[w] = _mm256_i32gather_epi32(
			(const int *)(const void *)(words + (size_t)d0 * wpg + w),
			idx, 4);
	for (uint32_t j = 0; j < h->group; j++) {
		__m128i sh = _mm_cvtsi32_si128((int)((j * bits) % 32));
		__m256i c = _mm256_and_si256(_mm256_srl_epi32(wv[j * bits / 32], sh), mask);
		__m256 x = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(c), s), m);
		_mm_storeu_si128((__m128i *)(void *)(out + (size_t)j * dim + d0),
				 _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
	}
}

static SIMD void decode_keys(const struct kvt_codec_header *h,
			     const uint8_t *payload,
			     const struct kvt_kivi_layout *l, uint16_t *dst)
{
	const size_t dim = h->dim;
	const uint32_t *words = (const uint32_t *)(const void *)(payload + l->codes);
	const uint16_t *scales = (const uint16_t *)(const void *)(payload + l->scales);
	const uint16_t *mins = (const uint16_t *)(const void *)(payload + l->mins);
	for (size_t hd = 0; hd < h->heads; hd++) {
		for (size_t g = 0; g < l->ng; g++) {
			size_t gi = hd * l->ng + g;
			uint16_t *out = dst + (hd * h->tokens + g * h->group) * dim;
			for (uint32_t d0 = 0; d0 < dim; d0 += 8)
				decode_key_lanes(h, words + gi * dim * l->wpg,
						 scales + gi * dim,
						 mins + gi * dim, d0, out);
		}
	}
}

static SIMD void decode_value_row(const struct kvt_codec_header *h,
				  const uint32_t *words, const uint16_t *scales,
				  const uint16_t *mins, uint16_t *out)
{
	const uint32_t bits = h->bits, per_word = 32 / bits;
	const __m256i mask = _mm256_set1_epi32((int)((1u << bits) - 1));
	const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	for (uint32_t c = 0; c < h->dim; c += 8) {
		uint32_t gi = c / h->group;
		__m256 s = _mm256_set1_ps(kvt_f16_to_f32(scales[gi]));
		__m256 m = _mm256_set1_ps(kvt_f16_to_f32(mins[gi]));
		/* channel c + l: word (c + l) / per_word, shift ((c+l) % per_word) * bits */
		__m256i ch = _mm256_add_epi32(lane, _mm256_set1_epi32((int)c));
		__m256i wi = _mm256_srli_epi32(ch, __builtin_ctz(per_word));
		__m256i sh = _mm256_mullo_epi32(
			_mm256_and_si256(ch, _mm256_set1_epi32((int)per_word - 1)),
			_mm256_set1_epi32((int)bits));
		__m256i wv = _mm256_i32gather_epi32((const int *)(const void *)words,
						    wi, 4);
		__m256i code = _mm256_and_si256(_mm256_srlv_epi32(wv, sh), mask);
		__m256 x = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(code), s), m);
		_mm_storeu_si128((__m128i *)(void *)(out + c),
				 _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
	}
}

static SIMD void decode_values(const struct kvt_codec_header *h,
			       const uint8_t *payload,
			       const struct kvt_kivi_layout *l, uint16_t *dst)
{
	const size_t dim = h->dim, row_words = (size_t)l->nc * l->wpg;
	const uint32_t *words = (const uint32_t *)(const void *)(payload + l->codes);
	const uint16_t *scales = (const uint16_t *)(const void *)(payload + l->scales);
	const uint16_t *mins = (const uint16_t *)(const void *)(payload + l->mins);
	for (size_t hd = 0; hd < h->heads; hd++) {
		for (size_t t = 0; t < l->tq; t++) {
			size_t r = hd * l->tq + t;
			decode_value_row(h, words + r * row_words,
					 scales + r * l->nc, mins + r * l->nc,
					 dst + (hd * h->tokens + t) * dim);
		}
	}
}

int kvt_kivi_decode_simd(const struct kvt_codec_header *h,
			 const uint8_t *payload,
			 const struct kvt_kivi_layout *l, void *dst)
{
	if (!shape_ok(h))
		return 0;
	if (h->kind == KVT_KIND_KEY)
		decode_keys(h, payload, l, dst);
	else
		decode_values(h, payload, l, dst);
	const size_t row = (size_t)h->dim * 2;
	for (size_t hd = 0; hd < h->heads; hd++)
		memcpy((uint8_t *)dst + (hd * h->tokens + l->tq) * row,
		       payload + l->residual + hd * h->residual * row,
		       h->residual * row);
	return 1;
}
