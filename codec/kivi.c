/*
 * kivi.c - KIVI asymmetric quantization (keys per channel, values per token).
 *
 * The payload layout and the arithmetic are specified in kvtier/codec.h.
 * Loops are written over contiguous fp32 so the compiler vectorises them:
 * keys work on a [G][dim] tile (min/max and codes across channels), values on
 * one token row (codes within a channel group). The GPU kernels reproduce
 * the same codes bit for bit, so the arithmetic here is fixed: no FMA
 * (-ffp-contract=off), fp16 bounds rounded outward, rint() to nearest even.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "half.h"
#include "kivi_internal.h"

#define F16_MAX 65504.0f

static int bits_ok(unsigned bits)
{
	return bits == 2 || bits == 4 || bits == 8;
}

int kvt_kivi_group_ok(unsigned bits, unsigned group)
{
	return bits_ok(bits) && group >= 1 && group <= KVT_KIVI_MAX_GROUP &&
	       (group * bits) % 32 == 0;
}

void kvt_kivi_layout(const struct kvt_codec_header *h,
		     struct kvt_kivi_layout *l)
{
	size_t heads = h->heads, dim = h->dim;
	memset(l, 0, sizeof *l);
	l->tq = h->tokens - h->residual;
	l->wpg = (uint32_t)h->group * h->bits / 32;
	size_t n_groups; /* scale/min pairs */
	if (h->kind == KVT_KIND_KEY) {
		l->ng = l->tq / h->group;
		n_groups = heads * l->ng * dim;
	} else {
		l->nc = h->dim / h->group;
		n_groups = heads * l->tq * l->nc;
	}
	l->codes = 0;
	l->scales = n_groups * l->wpg * 4;
	l->mins = l->scales + kvt_align4(n_groups * 2);
	l->residual = l->mins + kvt_align4(n_groups * 2);
	l->total = l->residual +
		   kvt_align4(heads * h->residual * dim * kvt_dtype_size(h->dtype));
}

/* ---------------------------------------------------------------- params */

static uint32_t kivi_tq(const struct kvt_codec_params *p,
			const struct kvt_tensor_desc *d)
{
	uint32_t g = p->group;
	uint32_t t = d->tokens > p->residual ? d->tokens - p->residual : 0;
	return t / g * g;
}

static int kivi_check(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		      const struct kvt_tensor_desc *d)
{
	if (!kvt_kivi_group_ok(p->bits, p->group) || p->high_bits)
		return KVT_ECODEC;
	if (kind == KVT_KIND_VALUE && d->dim % p->group)
		return KVT_ECODEC;
	return 0;
}

static void kivi_fill_header(const struct kvt_codec_params *p,
			     enum kvt_kv_kind kind,
			     const struct kvt_tensor_desc *d,
			     struct kvt_codec_header *h)
{
	(void)kind;
	h->bits = p->bits;
	h->group = p->group;
	h->residual = d->tokens - kivi_tq(p, d);
}

static size_t kivi_payload_size(const struct kvt_codec_params *p,
				enum kvt_kv_kind kind,
				const struct kvt_tensor_desc *d)
{
	struct kvt_codec_header h = {
		.kind = (uint8_t)kind, .dtype = (uint8_t)d->dtype,
		.heads = d->heads, .tokens = d->tokens, .dim = d->dim,
	};
	struct kvt_kivi_layout l;
	kivi_fill_header(p, kind, d, &h);
	kvt_kivi_layout(&h, &l);
	return l.total;
}

static int kivi_validate(const struct kvt_codec_header *h)
{
	struct kvt_kivi_layout l;
	if (!kvt_kivi_group_ok(h->bits, h->group) || h->high_bits ||
	    h->n_salient || h->residual > h->tokens)
		return KVT_EFORMAT;
	if ((h->tokens - h->residual) % h->group)
		return KVT_EFORMAT;
	if (h->kind == KVT_KIND_VALUE && h->dim % h->group)
		return KVT_EFORMAT;
	kvt_kivi_layout(h, &l);
	return l.total == h->payload_len ? 0 : KVT_EFORMAT;
}

/* ---------------------------------------------------------------- groups */

void kvt_kivi_group_params(float mn, float mx, unsigned bits,
			   uint16_t *scale, uint16_t *min, float *inv)
{
	/* + 0.0f turns -0 into +0: a zero bound must not depend on the order
	 * the group was reduced in (the SIMD paths reduce in another order). */
	mn = mn + 0.0f;
	mx = mx + 0.0f;
	if (mn < -F16_MAX)
		mn = -F16_MAX;
	uint16_t mh = kvt_f32_to_f16_rd(mn);
	float range = (mx - kvt_f16_to_f32(mh)) / (float)((1u << bits) - 1);
	if (range > F16_MAX)
		range = F16_MAX;
	uint16_t sh = kvt_f32_to_f16_ru(range);
	float s = kvt_f16_to_f32(sh);
	*scale = sh;
	*min = mh;
	*inv = s > 0.0f ? 1.0f / s : 0.0f;
}

static inline uint32_t quant1(float x, float m, float inv, float qmax)
{
	float v = rintf((x - m) * inv);
	v = v < 0.0f ? 0.0f : v;
	v = v > qmax ? qmax : v;
	return (uint32_t)(int32_t)v;
}

/* ---------------------------------------------------------------- keys */

struct key_tile {
	float *x;      /* [G][dim] inputs of one group */
	float *mn;     /* [dim] */
	float *mx;     /* [dim] */
	float *m;      /* [dim] decoded minima */
	float *inv;    /* [dim] */
	uint32_t *acc; /* [wpg][dim] packed words, channel-major later */
};

static void key_minmax(const float *restrict x, uint32_t g, uint32_t dim,
		       float *restrict mn, float *restrict mx)
{
	memcpy(mn, x, dim * sizeof *mn);
	memcpy(mx, x, dim * sizeof *mx);
	for (uint32_t j = 1; j < g; j++) {
		const float *row = x + (size_t)j * dim;
		for (uint32_t d = 0; d < dim; d++) {
			mn[d] = row[d] < mn[d] ? row[d] : mn[d];
			mx[d] = row[d] > mx[d] ? row[d] : mx[d];
		}
	}
}

static void key_codes(const struct kvt_codec_header *h, struct key_tile *t,
		      uint32_t *restrict words)
{
	const uint32_t dim = h->dim, bits = h->bits, wpg = (uint32_t)h->group * bits / 32;
	const float qmax = (float)((1u << bits) - 1);
	uint32_t *restrict acc = t->acc;
	const float *restrict m = t->m, *restrict inv = t->inv;
	memset(acc, 0, (size_t)wpg * dim * sizeof *acc);
	for (uint32_t j = 0; j < h->group; j++) {
		const float *restrict row = t->x + (size_t)j * dim;
		uint32_t *restrict a = acc + (size_t)(j * bits / 32) * dim;
		const uint32_t shift = (j * bits) % 32;
		for (uint32_t d = 0; d < dim; d++)
			a[d] |= quant1(row[d], m[d], inv[d], qmax) << shift;
	}
	for (uint32_t d = 0; d < dim; d++)
		for (uint32_t w = 0; w < wpg; w++)
			words[(size_t)d * wpg + w] = acc[(size_t)w * dim + d];
}

static void key_group(const struct kvt_codec_header *h, struct key_tile *t,
		      uint8_t *payload, const struct kvt_kivi_layout *l,
		      size_t gi)
{
	const uint32_t dim = h->dim;
	uint16_t *scales = (uint16_t *)(void *)(payload + l->scales) + gi * dim;
	uint16_t *mins = (uint16_t *)(void *)(payload + l->mins) + gi * dim;
	uint32_t *words = (uint32_t *)(void *)(payload + l->codes) +
			  gi * dim * l->wpg;
	key_minmax(t->x, h->group, dim, t->mn, t->mx);
	for (uint32_t d = 0; d < dim; d++) {
		kvt_kivi_group_params(t->mn[d], t->mx[d], h->bits, &scales[d],
				      &mins[d], &t->inv[d]);
		t->m[d] = kvt_f16_to_f32(mins[d]);
	}
	key_codes(h, t, words);
}

static int encode_keys(const struct kvt_codec_header *h, const uint8_t *src,
		       uint8_t *payload, const struct kvt_kivi_layout *l)
{
	const size_t dim = h->dim, es = kvt_dtype_size(h->dtype);
	const size_t tile = (size_t)h->group * dim;
	struct key_tile t;
	float *mem = malloc((tile + 4 * dim) * sizeof(float) +
			    (size_t)l->wpg * dim * sizeof(uint32_t));
	if (!mem)
		return -ENOMEM;
	t = (struct key_tile){
		.x = mem, .mn = mem + tile, .mx = mem + tile + dim,
		.m = mem + tile + 2 * dim, .inv = mem + tile + 3 * dim,
		.acc = (uint32_t *)(void *)(mem + tile + 4 * dim),
	};
	for (size_t hd = 0; hd < h->heads; hd++) {
		const uint8_t *head = src + hd * h->tokens * dim * es;
		for (size_t g = 0; g < l->ng; g++) {
			kvt_to_f32(h->dtype, head + g * tile * es, t.x, tile);
			key_group(h, &t, payload, l, hd * l->ng + g);
		}
	}
	free(mem);
	return 0;
}

/* ---------------------------------------------------------------- values */

static void value_row(const struct kvt_codec_header *h, const float *restrict x,
		      uint32_t *restrict codes, uint32_t *restrict words,
		      uint16_t *scales, uint16_t *mins)
{
	const uint32_t g = h->group, bits = h->bits, per_word = 32 / bits;
	const float qmax = (float)((1u << bits) - 1);
	for (uint32_t c0 = 0, gi = 0; c0 < h->dim; c0 += g, gi++) {
		const float *restrict xs = x + c0;
		float mn = xs[0], mx = xs[0], inv;
		for (uint32_t c = 1; c < g; c++) {
			mn = xs[c] < mn ? xs[c] : mn;
			mx = xs[c] > mx ? xs[c] : mx;
		}
		kvt_kivi_group_params(mn, mx, bits, &scales[gi], &mins[gi], &inv);
		const float m = kvt_f16_to_f32(mins[gi]);
		for (uint32_t c = 0; c < g; c++)
			codes[c0 + c] = quant1(xs[c], m, inv, qmax);
	}
	for (uint32_t w = 0; w < h->dim / per_word; w++) {
		const uint32_t *restrict cw = codes + (size_t)w * per_word;
		uint32_t acc = 0;
		for (uint32_t k = 0; k < per_word; k++)
			acc |= cw[k] << (k * bits);
		words[w] = acc;
	}
}

static int encode_values(const struct kvt_codec_header *h, const uint8_t *src,
			 uint8_t *payload, const struct kvt_kivi_layout *l)
{
	const size_t dim = h->dim, es = kvt_dtype_size(h->dtype);
	const size_t row_words = (size_t)l->nc * l->wpg;
	float *x = malloc(dim * (sizeof(float) + sizeof(uint32_t)));
	if (!x)
		return -ENOMEM;
	uint32_t *codes = (uint32_t *)(void *)(x + dim);
	uint32_t *words = (uint32_t *)(void *)(payload + l->codes);
	uint16_t *scales = (uint16_t *)(void *)(payload + l->scales);
	uint16_t *mins = (uint16_t *)(void *)(payload + l->mins);
	for (size_t hd = 0; hd < h->heads; hd++) {
		for (size_t t = 0; t < l->tq; t++) {
			size_t r = hd * l->tq + t;
			kvt_to_f32(h->dtype, src + (hd * h->tokens + t) * dim * es,
				   x, dim);
			value_row(h, x, codes, words + r * row_words,
				  scales + r * l->nc, mins + r * l->nc);
		}
	}
	free(x);
	return 0;
}

/* ---------------------------------------------------------------- residual */

static void copy_residual(const struct kvt_codec_header *h, const uint8_t *src,
			  uint8_t *payload, const struct kvt_kivi_layout *l)
{
	const size_t row = (size_t)h->dim * kvt_dtype_size(h->dtype);
	uint8_t *dst = payload + l->residual;
	for (size_t hd = 0; hd < h->heads; hd++)
		memcpy(dst + hd * h->residual * row,
		       src + (hd * h->tokens + l->tq) * row, h->residual * row);
	size_t used = h->heads * h->residual * row;
	memset(dst + used, 0, l->total - l->residual - used);
}

int kvt_kivi_encode_ref(const struct kvt_codec_header *h, const void *src,
			uint8_t *payload)
{
	struct kvt_kivi_layout l;
	kvt_kivi_layout(h, &l);
	int rc = h->kind == KVT_KIND_KEY ? encode_keys(h, src, payload, &l)
					 : encode_values(h, src, payload, &l);
	if (rc)
		return rc;
	copy_residual(h, src, payload, &l);
	return 0;
}

static int kivi_encode(const struct kvt_codec_params *p,
		       const struct kvt_codec_header *h, const void *src,
		       uint8_t *payload)
{
	(void)p;
	struct kvt_kivi_layout l;
	kvt_kivi_layout(h, &l);
	/* Section padding is part of the format: zero the last word of each
	 * fp16 section before the data lands in it. */
	if (l.mins > l.scales) {
		memset(payload + l.mins - 4, 0, 4);
		memset(payload + l.residual - 4, 0, 4);
	}
	if (!kvt_kivi_simd_supported())
		return kvt_kivi_encode_ref(h, src, payload);
	float *tmp = malloc(((size_t)l.nc * 4 * KVT_KIVI_VALUE_ROWS + 1) *
			    sizeof(float));
	if (!tmp)
		return -ENOMEM;
	int done = kvt_kivi_encode_simd(h, src, payload, &l, tmp);
	free(tmp);
	if (!done)
		return kvt_kivi_encode_ref(h, src, payload);
	copy_residual(h, src, payload, &l);
	return 0;
}

/* ---------------------------------------------------------------- decode */

static void decode_key_group(const struct kvt_codec_header *h,
			     const uint32_t *words, const uint16_t *scales,
			     const uint16_t *mins, float *tmp, float *out)
{
	const uint32_t dim = h->dim, bits = h->bits, wpg = (uint32_t)h->group * bits / 32;
	const uint32_t mask = (1u << bits) - 1;
	float *restrict s = tmp, *restrict m = tmp + dim;
	uint32_t *restrict tw = (uint32_t *)(void *)(tmp + 2 * dim);
	for (uint32_t d = 0; d < dim; d++) {
		s[d] = kvt_f16_to_f32(scales[d]);
		m[d] = kvt_f16_to_f32(mins[d]);
		for (uint32_t w = 0; w < wpg; w++)
			tw[(size_t)w * dim + d] = words[(size_t)d * wpg + w];
	}
	for (uint32_t j = 0; j < h->group; j++) {
		const uint32_t *restrict a = tw + (size_t)(j * bits / 32) * dim;
		const uint32_t shift = (j * bits) % 32;
		float *restrict row = out + (size_t)j * dim;
		for (uint32_t d = 0; d < dim; d++)
			row[d] = (float)((a[d] >> shift) & mask) * s[d] + m[d];
	}
}

static int decode_keys(const struct kvt_codec_header *h, const uint8_t *payload,
		       const struct kvt_kivi_layout *l, float *dst)
{
	const size_t dim = h->dim;
	float *tmp = malloc(dim * (2 + l->wpg) * sizeof(float));
	if (!tmp)
		return -ENOMEM;
	const uint32_t *words = (const uint32_t *)(const void *)(payload + l->codes);
	const uint16_t *scales = (const uint16_t *)(const void *)(payload + l->scales);
	const uint16_t *mins = (const uint16_t *)(const void *)(payload + l->mins);
	for (size_t hd = 0; hd < h->heads; hd++) {
		for (size_t g = 0; g < l->ng; g++) {
			size_t gi = hd * l->ng + g;
			float *out = dst + (hd * h->tokens + g * h->group) * dim;
			decode_key_group(h, words + gi * dim * l->wpg,
					 scales + gi * dim, mins + gi * dim, tmp,
					 out);
		}
	}
	free(tmp);
	return 0;
}

static void decode_value_row(const struct kvt_codec_header *h,
			     const uint32_t *words, const uint16_t *scales,
			     const uint16_t *mins, float *restrict out)
{
	const uint32_t bits = h->bits, per_word = 32 / bits;
	const uint32_t words_per_group = (uint32_t)h->group / per_word;
	const uint32_t mask = (1u << bits) - 1;
	for (uint32_t w = 0; w < h->dim / per_word; w++) {
		const uint32_t gi = w / words_per_group, word = words[w];
		const float s = kvt_f16_to_f32(scales[gi]);
		const float m = kvt_f16_to_f32(mins[gi]);
		float *restrict o = out + (size_t)w * per_word;
		for (uint32_t k = 0; k < per_word; k++)
			o[k] = (float)((word >> (k * bits)) & mask) * s + m;
	}
}

static void decode_values(const struct kvt_codec_header *h,
			  const uint8_t *payload,
			  const struct kvt_kivi_layout *l, float *dst)
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

static void decode_residual(const struct kvt_codec_header *h,
			    const uint8_t *payload,
			    const struct kvt_kivi_layout *l, float *dst)
{
	const size_t dim = h->dim, es = kvt_dtype_size(h->dtype);
	const uint8_t *src = payload + l->residual;
	for (size_t hd = 0; hd < h->heads; hd++)
		kvt_to_f32(h->dtype, src + hd * h->residual * dim * es,
			   dst + (hd * h->tokens + l->tq) * dim,
			   h->residual * dim);
}

static int kivi_decode_f32(const struct kvt_codec_header *h,
			   const uint8_t *payload, float *dst)
{
	struct kvt_kivi_layout l;
	kvt_kivi_layout(h, &l);
	if (h->kind == KVT_KIND_KEY) {
		int rc = decode_keys(h, payload, &l, dst);
		if (rc)
			return rc;
	} else {
		decode_values(h, payload, &l, dst);
	}
	decode_residual(h, payload, &l, dst);
	return 0;
}

/* fp16 output straight from the codes when the SIMD path applies. */
static int kivi_decode_native(const struct kvt_codec_header *h,
			      const uint8_t *payload, void *dst)
{
	struct kvt_kivi_layout l;
	kvt_kivi_layout(h, &l);
	if (!kvt_kivi_simd_supported())
		return 1;
	return kvt_kivi_decode_simd(h, payload, &l, dst) ? 0 : 1;
}

const struct kvt_codec_ops kvt_codec_kivi_ops = {
	.id = KVT_CODEC_KIVI,
	.name = "kivi",
	.check = kivi_check,
	.payload_size = kivi_payload_size,
	.fill_header = kivi_fill_header,
	.encode = kivi_encode,
	.validate = kivi_validate,
	.decode_f32 = kivi_decode_f32,
	.decode_native = kivi_decode_native,
};
