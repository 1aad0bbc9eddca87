/*
 * zipcache.c - ZipCache mixed-precision quantization with salient tokens.
 *
 * Tensor [heads][tokens][dim], one kind (keys or values). The salient set
 * is chosen per token (shared by every head): the n_salient tokens with the
 * highest saliency score get high_bits, the others bits. Each token row of
 * each head is quantized on its own (tokenwise, one scale/min per row),
 * after dividing each channel by a per-(head, channel) normaliser
 * (channel-separable, the default for keys and values: both have outlier
 * channels) or as is (plain tokenwise, params.zip_tokenwise).
 *
 * Arithmetic (fixed so the GPU path can reproduce the codes bit for bit;
 * built with -ffp-contract=off):
 *     a   = max over tokens of |x[c]|                  (per head, channel)
 *     nh  = fp16 of sqrtf(a), round to nearest, clamped to [2^-14, 65504];
 *           1.0 when a = 0                             (stored)
 *     r   = 1.0f / nh                                  (fp32)
 *     xn  = x * r            (plain tokenwise: xn = x, no normalisers)
 *   per row, bits b (bits or high_bits by the token's class):
 *     mh, sh, inv, code exactly as a KIVI group over the row's xn
 *     (kvtier/codec.h: mh rounded toward -inf, sh toward +inf,
 *     code = clamp(rint((xn - mh) * inv), 0, 2^b - 1))
 *     decode: x' = ((float)code * sh + mh) * nh        (three roundings)
 * so |x - x'| <= nh * sh / 2, up to fp32 rounding.
 *
 * Header: bits = low bits, high_bits, n_salient, group 0, residual 0.
 * Payload sections, in order, each at a 4-byte aligned offset:
 *     flags   u32             bit 0: normalisers present; other bits 0
 *     bitmap  u32 [ceil(T/32)] bit t%32 of word t/32 set: token t salient
 *                             (exactly n_salient bits, none past T)
 *     norms   f16 [heads][dim]   only when flags bit 0 is set
 *     scales  f16 [heads][T]     per row, token order
 *     mins    f16 [heads][T]
 *     low     u32 [heads][T - n_salient][wl]   wl = ceil(dim * bits / 32)
 *     high    u32 [heads][n_salient][wh]       wh = ceil(dim * high_bits / 32)
 * Rows of each class are in token order; channel c of a row at word
 * c / (32/b), bit (c % (32/b)) * b; unused bits and padding are zero.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "codec_internal.h"
#include "half.h"
#include "kivi_internal.h"
#include "salient.h"
#include "zipcache_internal.h"

#define F16_MAX 65504.0f
#define F16_MIN_NORMAL 6.103515625e-05f /* 2^-14 */
#define CHUNK 64                        /* rows converted to fp32 at once */

static int bits_ok(unsigned bits)
{
	return bits == 2 || bits == 4 || bits == 8;
}

static uint32_t row_words(uint32_t dim, unsigned bits)
{
	return (uint32_t)(((size_t)dim * bits + 31) / 32);
}

void kvt_zip_layout(const struct kvt_codec_header *h, int norms,
		    struct kvt_zip_layout *l)
{
	const size_t heads = h->heads, t = h->tokens;
	memset(l, 0, sizeof *l);
	l->n_sal = h->n_salient;
	l->n_low = h->tokens - h->n_salient;
	l->wl = row_words(h->dim, h->bits);
	l->wh = row_words(h->dim, h->high_bits);
	l->norms = norms;
	l->flags = 0;
	l->bitmap = 4;
	l->norm = l->bitmap + (t + 31) / 32 * 4;
	l->scales = l->norm + (norms ? kvt_align4(heads * h->dim * 2) : 0);
	l->mins = l->scales + kvt_align4(heads * t * 2);
	l->low = l->mins + kvt_align4(heads * t * 2);
	l->high = l->low + heads * l->n_low * l->wl * 4;
	l->total = l->high + heads * l->n_sal * l->wh * 4;
}

uint32_t kvt_zip_n_salient(const struct kvt_codec_params *p, uint32_t tokens)
{
	if (!p->saliency)
		return 0;
	double n = floor((double)p->salient_ratio * tokens + 0.5);
	return n > tokens ? tokens : (uint32_t)n;
}

uint16_t kvt_zip_norm(float amax)
{
	if (!(amax > 0.0f))
		return kvt_f32_to_f16(1.0f);
	float n = sqrtf(amax);
	n = n < F16_MIN_NORMAL ? F16_MIN_NORMAL : n;
	n = n > F16_MAX ? F16_MAX : n;
	return kvt_f32_to_f16(n);
}

/* ---------------------------------------------------------------- params */

static int zip_check(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		     const struct kvt_tensor_desc *d)
{
	(void)kind, (void)d;
	if (!bits_ok(p->bits) || !bits_ok(p->high_bits) ||
	    p->high_bits <= p->bits || p->residual || p->zip_tokenwise > 1)
		return KVT_ECODEC;
	if (!(p->salient_ratio >= 0.0f && p->salient_ratio <= 1.0f))
		return KVT_ECODEC;
	return 0;
}

static void zip_fill_header(const struct kvt_codec_params *p,
			    enum kvt_kv_kind kind,
			    const struct kvt_tensor_desc *d,
			    struct kvt_codec_header *h)
{
	(void)kind;
	h->bits = p->bits;
	h->high_bits = p->high_bits;
	h->group = 0;
	h->residual = 0;
	h->n_salient = kvt_zip_n_salient(p, d->tokens);
}

static size_t zip_payload_size(const struct kvt_codec_params *p,
			       enum kvt_kv_kind kind,
			       const struct kvt_tensor_desc *d)
{
	struct kvt_codec_header h = {
		.kind = (uint8_t)kind, .dtype = (uint8_t)d->dtype,
		.heads = d->heads, .tokens = d->tokens, .dim = d->dim,
	};
	struct kvt_zip_layout l;
	zip_fill_header(p, kind, d, &h);
	kvt_zip_layout(&h, !p->zip_tokenwise, &l);
	return l.total;
}

/* The payload length tells whether the normaliser section is there; the
 * flags word, checked when decoding, must agree. */
static int zip_validate(const struct kvt_codec_header *h)
{
	struct kvt_zip_layout with, without;
	if (!bits_ok(h->bits) || !bits_ok(h->high_bits) ||
	    h->high_bits <= h->bits || h->group || h->residual ||
	    h->n_salient > h->tokens)
		return KVT_EFORMAT;
	kvt_zip_layout(h, 1, &with);
	kvt_zip_layout(h, 0, &without);
	if (h->payload_len != with.total && h->payload_len != without.total)
		return KVT_EFORMAT;
	return 0;
}

/* ---------------------------------------------------------------- encode */

/* Eight floats as one GCC generic vector (lowered to whatever the target
 * has); a < b gives a lane mask, so min/max are selects, exact either way. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f v8_select(v8i m, v8f a, v8f b)
{
	return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
}

/* Min and max of n floats (the lane order does not change the result);
 * four independent chains of 8 lanes hide the compare/select latency. */
static void row_minmax(const float *restrict x, uint32_t n, float *mn_out,
		       float *mx_out)
{
	v8f mn[4], mx[4], v;
	uint32_t c = 0;
	float a = x[0], b = x[0];
	if (n >= 32) {
		for (int j = 0; j < 4; j++) {
			memcpy(&mn[j], x + 8 * j, sizeof v);
			mx[j] = mn[j];
		}
		for (c = 32; c + 32 <= n; c += 32)
			for (int j = 0; j < 4; j++) {
				memcpy(&v, x + c + 8 * j, sizeof v);
				mn[j] = v8_select(v < mn[j], v, mn[j]);
				mx[j] = v8_select(v > mx[j], v, mx[j]);
			}
		for (int j = 1; j < 4; j++) {
			mn[0] = v8_select(mn[j] < mn[0], mn[j], mn[0]);
			mx[0] = v8_select(mx[j] > mx[0], mx[j], mx[0]);
		}
		for (int k = 0; k < 8; k++) {
			a = mn[0][k] < a ? mn[0][k] : a;
			b = mx[0][k] > b ? mx[0][k] : b;
		}
	}
	for (; c < n; c++) {
		a = x[c] < a ? x[c] : a;
		b = x[c] > b ? x[c] : b;
	}
	*mn_out = a;
	*mx_out = b;
}

static inline uint32_t quant1(float x, float m, float inv, float qmax)
{
	float v = rintf((x - m) * inv);
	v = v < 0.0f ? 0.0f : v;
	v = v > qmax ? qmax : v;
	return (uint32_t)(int32_t)v;
}

/* Work buffers of one encode. codes has room for whole words (zero tail). */
struct zip_work {
	float *x;        /* [CHUNK][dim] rows in fp32 */
	uint32_t *amax;  /* [dim] largest magnitude, as input bits */
	float *r;        /* [dim] reciprocal normalisers */
	float *xn;       /* [dim] */
	uint32_t *codes; /* [dim rounded up to 16] */
	uint32_t *bitmap;
};

/* Packs whole words of codes; inlined with a constant bits so the inner
 * loop unrolls. */
static inline __attribute__((always_inline)) void
pack(const uint32_t *restrict codes, uint32_t nw, const unsigned bits,
     uint32_t *restrict words)
{
	const uint32_t per_word = 32 / bits;
	for (uint32_t w = 0; w < nw; w++) {
		const uint32_t *restrict cw = codes + (size_t)w * per_word;
		uint32_t acc = 0;
		for (uint32_t k = 0; k < per_word; k++)
			acc |= cw[k] << (k * bits);
		words[w] = acc;
	}
}

/* Quantizes one (normalised) row at `bits` into its words, scale and min. */
static void quant_row(const float *restrict xn, uint32_t dim, unsigned bits,
		      uint32_t *restrict codes, uint32_t *restrict words,
		      uint16_t *scale, uint16_t *min)
{
	const float qmax = (float)((1u << bits) - 1);
	const uint32_t nw = row_words(dim, bits);
	float mn, mx, inv;
	row_minmax(xn, dim, &mn, &mx);
	kvt_kivi_group_params(mn, mx, bits, scale, min, &inv);
	const float m = kvt_f16_to_f32(*min);
	for (uint32_t c = 0; c < dim; c++)
		codes[c] = quant1(xn[c], m, inv, qmax);
	switch (bits) {
	case 2: pack(codes, nw, 2, words); break;
	case 4: pack(codes, nw, 4, words); break;
	default: pack(codes, nw, 8, words); break;
	}
}

/* Largest |x| per channel from the raw bits: clearing the sign leaves
 * integers ordered like the magnitudes (inputs are finite), so no
 * conversion is needed and the loops vectorise. */
static void amax16(const uint16_t *restrict p, uint32_t tokens, uint32_t dim,
		   uint32_t *restrict m)
{
	for (uint32_t t = 0; t < tokens; t++, p += dim)
		for (uint32_t c = 0; c < dim; c++) {
			uint32_t a = p[c] & 0x7fffu;
			m[c] = a > m[c] ? a : m[c];
		}
}

static void amax32(const uint32_t *restrict p, uint32_t tokens, uint32_t dim,
		   uint32_t *restrict m)
{
	for (uint32_t t = 0; t < tokens; t++, p += dim)
		for (uint32_t c = 0; c < dim; c++) {
			uint32_t a = p[c] & 0x7fffffffu;
			m[c] = a > m[c] ? a : m[c];
		}
}

static float bits_value(enum kvt_dtype dtype, uint32_t b)
{
	if (dtype == KVT_DTYPE_F16)
		return kvt_f16_to_f32((uint16_t)b);
	if (dtype == KVT_DTYPE_BF16)
		return kvt_bf16_to_f32((uint16_t)b);
	return kvt_bits_to_f32(b);
}

/* Per-channel normalisers of one head and their reciprocals. */
static void head_norms(const struct kvt_codec_header *h, const uint8_t *head,
		       struct zip_work *w, uint16_t *norms)
{
	const uint32_t dim = h->dim;
	uint32_t *m = w->amax;
	memset(m, 0, dim * sizeof *m);
	if (h->dtype == KVT_DTYPE_F32)
		amax32((const uint32_t *)(const void *)head, h->tokens, dim, m);
	else
		amax16((const uint16_t *)(const void *)head, h->tokens, dim, m);
	for (uint32_t c = 0; c < dim; c++) {
		norms[c] = kvt_zip_norm(bits_value(h->dtype, m[c]));
		w->r[c] = 1.0f / kvt_f16_to_f32(norms[c]);
	}
}

struct zip_out {
	uint16_t *scales, *mins; /* of this head */
	uint32_t *low, *high;    /* next row of each class */
};

static void head_rows(const struct kvt_codec_header *h,
		      const struct kvt_zip_layout *l, const uint8_t *head,
		      struct zip_work *w, struct zip_out *o)
{
	const uint32_t dim = h->dim;
	const size_t es = kvt_dtype_size(h->dtype);
	for (uint32_t t0 = 0; t0 < h->tokens; t0 += CHUNK) {
		uint32_t n = h->tokens - t0 < CHUNK ? h->tokens - t0 : CHUNK;
		kvt_zip_to_f32(h->dtype, head + (size_t)t0 * dim * es, w->x,
			       (size_t)n * dim);
		for (uint32_t i = 0; i < n; i++) {
			const float *restrict row = w->x + (size_t)i * dim;
			const float *xn = row;
			const uint32_t t = t0 + i;
			if (l->norms) {
				const float *restrict r = w->r;
				float *restrict y = w->xn;
				for (uint32_t c = 0; c < dim; c++)
					y[c] = row[c] * r[c];
				xn = y;
			}
			int sal = kvt_zip_is_salient(w->bitmap, t);
			uint32_t **dst = sal ? &o->high : &o->low;
			quant_row(xn, dim, sal ? h->high_bits : h->bits,
				  w->codes, *dst, &o->scales[t], &o->mins[t]);
			*dst += sal ? l->wh : l->wl;
		}
	}
}

static int work_alloc(uint32_t dim, struct zip_work *w)
{
	size_t pad = ((size_t)dim + 15) / 16 * 16;
	float *mem = calloc((size_t)CHUNK * dim + 3 * (size_t)dim + pad, 4);
	if (!mem)
		return -ENOMEM;
	w->x = mem;
	w->amax = (uint32_t *)(void *)(mem + (size_t)CHUNK * dim);
	w->r = mem + (size_t)CHUNK * dim + dim;
	w->xn = w->r + dim;
	w->codes = (uint32_t *)(void *)(w->xn + dim);
	return 0;
}

/* Zeroes the padding at the end of the fp16 sections. */
static void zero_padding(uint8_t *payload, const struct kvt_zip_layout *l)
{
	if (l->norms && l->scales > l->norm)
		memset(payload + l->scales - 4, 0, 4);
	if (l->mins > l->scales) {
		memset(payload + l->mins - 4, 0, 4);
		memset(payload + l->low - 4, 0, 4);
	}
}

static int zip_encode(const struct kvt_codec_params *p,
		      const struct kvt_codec_header *h, const void *src,
		      uint8_t *payload)
{
	struct kvt_zip_layout l;
	struct zip_work w;
	kvt_zip_layout(h, !p->zip_tokenwise, &l);
	if (l.total != h->payload_len || work_alloc(h->dim, &w))
		return l.total != h->payload_len ? KVT_ECODEC : -ENOMEM;
	w.bitmap = (uint32_t *)(void *)(payload + l.bitmap);
	int rc = kvt_salient_bitmap(p->saliency, h->tokens, h->n_salient, w.bitmap);
	if (rc) {
		free(w.x);
		return rc;
	}
	kvt_put_u32(payload + l.flags, l.norms ? KVT_ZIP_FLAG_NORMS : 0);
	zero_padding(payload, &l);
	const size_t head_bytes = (size_t)h->tokens * h->dim * kvt_dtype_size(h->dtype);
	struct zip_out o = {
		.low = (uint32_t *)(void *)(payload + l.low),
		.high = (uint32_t *)(void *)(payload + l.high),
	};
	for (size_t hd = 0; hd < h->heads; hd++) {
		const uint8_t *head = (const uint8_t *)src + hd * head_bytes;
		if (l.norms)
			head_norms(h, head, &w,
				   (uint16_t *)(void *)(payload + l.norm) + hd * h->dim);
		o.scales = (uint16_t *)(void *)(payload + l.scales) + hd * h->tokens;
		o.mins = (uint16_t *)(void *)(payload + l.mins) + hd * h->tokens;
		head_rows(h, &l, head, &w, &o);
	}
	free(w.x);
	return 0;
}

/* ---------------------------------------------------------------- decode */

static int bitmap_ok(const struct kvt_codec_header *h, const uint32_t *bm)
{
	uint32_t nw = (h->tokens + 31) / 32, count = 0;
	for (uint32_t i = 0; i < nw; i++)
		count += (uint32_t)__builtin_popcount(bm[i]);
	if (h->tokens % 32 && (bm[nw - 1] >> (h->tokens % 32)))
		return 0;
	return count == h->n_salient;
}

/* Reads the flags word and checks what the header could not. */
static int zip_parse(const struct kvt_codec_header *h, const uint8_t *payload,
		     struct kvt_zip_layout *l)
{
	uint32_t flags = kvt_get_u32(payload);
	if (flags & ~KVT_ZIP_FLAG_NORMS)
		return KVT_EFORMAT;
	kvt_zip_layout(h, (flags & KVT_ZIP_FLAG_NORMS) != 0, l);
	if (l->total != h->payload_len)
		return KVT_EFORMAT;
	if (!bitmap_ok(h, (const uint32_t *)(const void *)(payload + l->bitmap)))
		return KVT_EFORMAT;
	const uint16_t *norms = (const uint16_t *)(const void *)(payload + l->norm);
	for (size_t i = 0; l->norms && i < (size_t)h->heads * h->dim; i++) {
		float n = kvt_f16_to_f32(norms[i]);
		if (!(n > 0.0f) || isinf(n))
			return KVT_EFORMAT;
	}
	return 0;
}

/* Codes of whole words to floats (code * s + m); constant bits inlined. */
static inline __attribute__((always_inline)) void
unpack(const uint32_t *restrict words, uint32_t nw, const unsigned bits,
       float s, float m, float *restrict out)
{
	const uint32_t per_word = 32 / bits, mask = (1u << bits) - 1;
	for (uint32_t w = 0; w < nw; w++) {
		const uint32_t word = words[w];
		for (uint32_t k = 0; k < per_word; k++)
			out[w * per_word + k] =
				(float)((word >> (k * bits)) & mask) * s + m;
	}
}

/* One row into out, which has room for whole words of codes. */
static void decode_row(const uint32_t *words, unsigned bits, uint32_t dim,
		       float s, float m, const float *restrict nh,
		       float *restrict out)
{
	const uint32_t nw = row_words(dim, bits);
	switch (bits) {
	case 2: unpack(words, nw, 2, s, m, out); break;
	case 4: unpack(words, nw, 4, s, m, out); break;
	default: unpack(words, nw, 8, s, m, out); break;
	}
	if (nh)
		for (uint32_t c = 0; c < dim; c++)
			out[c] = out[c] * nh[c];
}

/* Decoding state: where the next row of each class is. */
struct zip_cursor {
	const struct kvt_codec_header *h;
	struct kvt_zip_layout l;
	const uint32_t *bm, *low, *high;
	const uint16_t *norms, *scales, *mins;
	float *nh;  /* [dim] normalisers of the current head */
	float *row; /* [dim rounded up to 16] */
};

static void cursor_head(struct zip_cursor *z, size_t hd)
{
	for (uint32_t c = 0; z->l.norms && c < z->h->dim; c++)
		z->nh[c] = kvt_f16_to_f32(z->norms[hd * z->h->dim + c]);
}

/* Decodes the next row (token t of head hd) into out (dim floats). */
static void cursor_row(struct zip_cursor *z, size_t hd, uint32_t t, float *out)
{
	const struct kvt_codec_header *h = z->h;
	const size_t r = hd * h->tokens + t;
	const int sal = kvt_zip_is_salient(z->bm, t);
	const uint32_t **src = sal ? &z->high : &z->low;
	/* out takes whole words of codes when dim is a multiple of 16 */
	float *o = h->dim % 16 ? z->row : out;
	decode_row(*src, sal ? h->high_bits : h->bits, h->dim,
		   kvt_f16_to_f32(z->scales[r]), kvt_f16_to_f32(z->mins[r]),
		   z->l.norms ? z->nh : NULL, o);
	if (o != out)
		memcpy(out, o, h->dim * sizeof *out);
	*src += sal ? z->l.wh : z->l.wl;
}

static int cursor_open(const struct kvt_codec_header *h, const uint8_t *payload,
		       struct zip_cursor *z)
{
	int rc = zip_parse(h, payload, &z->l);
	if (rc)
		return rc;
	const size_t pad = ((size_t)h->dim + 15) / 16 * 16;
	z->h = h;
	z->nh = malloc(((size_t)h->dim + pad) * sizeof(float));
	if (!z->nh)
		return -ENOMEM;
	z->row = z->nh + h->dim;
	z->bm = (const uint32_t *)(const void *)(payload + z->l.bitmap);
	z->norms = (const uint16_t *)(const void *)(payload + z->l.norm);
	z->scales = (const uint16_t *)(const void *)(payload + z->l.scales);
	z->mins = (const uint16_t *)(const void *)(payload + z->l.mins);
	z->low = (const uint32_t *)(const void *)(payload + z->l.low);
	z->high = (const uint32_t *)(const void *)(payload + z->l.high);
	return 0;
}

static int zip_decode_f32(const struct kvt_codec_header *h,
			  const uint8_t *payload, float *dst)
{
	struct zip_cursor z;
	int rc = cursor_open(h, payload, &z);
	if (rc)
		return rc;
	for (size_t hd = 0; hd < h->heads; hd++) {
		cursor_head(&z, hd);
		for (uint32_t t = 0; t < h->tokens; t++)
			cursor_row(&z, hd, t, dst + (hd * h->tokens + t) * h->dim);
	}
	free(z.nh);
	return 0;
}

/* fp16 / bf16 output through a small fp32 chunk, not a whole-tensor copy. */
static int zip_decode_native(const struct kvt_codec_header *h,
			     const uint8_t *payload, void *dst)
{
	struct zip_cursor z;
	const size_t dim = h->dim, es = kvt_dtype_size(h->dtype);
	float *buf = malloc((size_t)CHUNK * dim * sizeof *buf);
	int rc = buf ? cursor_open(h, payload, &z) : -ENOMEM;
	if (rc) {
		free(buf);
		return rc;
	}
	for (size_t hd = 0; hd < h->heads; hd++) {
		cursor_head(&z, hd);
		for (uint32_t t0 = 0; t0 < h->tokens; t0 += CHUNK) {
			uint32_t n = h->tokens - t0 < CHUNK ? h->tokens - t0 : CHUNK;
			for (uint32_t i = 0; i < n; i++)
				cursor_row(&z, hd, t0 + i, buf + i * dim);
			kvt_zip_from_f32(h->dtype, buf,
				     (uint8_t *)dst + (hd * h->tokens + t0) * dim * es,
				     (size_t)n * dim);
		}
	}
	free(z.nh);
	free(buf);
	return 0;
}

const struct kvt_codec_ops kvt_codec_zipcache_ops = {
	.id = KVT_CODEC_ZIPCACHE,
	.name = "zipcache",
	.check = zip_check,
	.payload_size = zip_payload_size,
	.fill_header = zip_fill_header,
	.encode = zip_encode,
	.validate = zip_validate,
	.decode_f32 = zip_decode_f32,
	.decode_native = zip_decode_native,
};
