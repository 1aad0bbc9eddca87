/*
 * fuzz_codec.c - libFuzzer target for the codecs (raw, KIVI, ZipCache).
 *
 * The first input byte picks the mode (the seeds of make_codec_seeds have
 * both):
 *  even: decode. The rest is taken as an encoded tensor and fed, as is and
 *     with its codec id byte set to each codec's, to kvt_codec_read_header,
 *     kvt_codec_decode_f32 and kvt_codec_decode. The output buffers are
 *     allocated at exactly the size the header asks for (ASan sees one byte
 *     past) and are also offered one element short (must be -ENOBUFS); the
 *     two decodes must accept the same inputs and agree value for value.
 *  odd: round trip. The rest describes a small tensor and codec parameters
 *     (layout in struct fcase below). Encoding must do what kvt_codec_check
 *     says, write every byte (two encodes over different garbage agree),
 *     match the scalar reference encoder (KIVI) and the documented header
 *     fields and salient set (ZipCache), and decode with every value within
 *     the codec's documented error bound (kvtier/codec.h, codec/zipcache.c);
 *     the decode in the tensor's dtype must equal the fp32 decode converted.
 * Any violation aborts, so libFuzzer reports it with the input.
 * Inputs are kept to magnitudes <= 65504, the range the fp16 scales and
 * minima of KIVI and ZipCache cover (see kvtier/codec.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "codec_internal.h"
#include "half.h"
#include "kivi_internal.h"
#include "zipcache_internal.h"

#define MAX_OUT_ELEMS (1u << 22) /* larger claims only get the -ENOBUFS check */
#define MAX_CASE_ELEMS 8192      /* round-trip tensors */
#define F16_MAX 65504.0f

#define CHECK(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fuzz_codec: %s:%d: %s\n", __FILE__, \
				__LINE__, #cond);                          \
			abort();                                           \
		}                                                          \
	} while (0)

/* ---------------------------------------------------------------- decode mode */

static int is_nan_elem(enum kvt_dtype dt, const uint8_t *p)
{
	if (dt == KVT_DTYPE_F32)
		return isnan(kvt_bits_to_f32(kvt_get_u32(p)));
	uint16_t h = kvt_get_u16(p);
	return dt == KVT_DTYPE_F16 ? (h & 0x7fffu) > 0x7c00u
				   : (h & 0x7fffu) > 0x7f80u;
}

/* a and b hold n elements of dt: equal bits, or both NaN (payloads may
 * differ: the SIMD and scalar paths may order NaN operands differently). */
static int same_elems(enum kvt_dtype dt, const void *a, const void *b, size_t n)
{
	const size_t es = kvt_dtype_size(dt);
	const uint8_t *x = a, *y = b;
	for (size_t i = 0; i < n; i++, x += es, y += es)
		if (memcmp(x, y, es) &&
		    !(is_nan_elem(dt, x) && is_nan_elem(dt, y)))
			return 0;
	return 1;
}

/* Both decoders on a buffer of exactly `cap` bytes, then one element short. */
static void decode_both(const uint8_t *p, size_t len,
			const struct kvt_codec_header *h)
{
	const enum kvt_dtype dt = h->dtype;
	const size_t n = kvt_header_elems(h), es = kvt_dtype_size(dt);
	float *f = malloc(n ? n * sizeof *f : 1);
	uint8_t *nat = malloc(n ? n * es : 1), *conv = malloc(n ? n * es : 1);
	CHECK(f && nat && conv);
	struct kvt_tensor_desc d1, d2;
	int rf = kvt_codec_decode_f32(p, len, f, n * sizeof *f, &d1);
	int rn = kvt_codec_decode(p, len, nat, n * es, &d2);
	CHECK(rf == rn);
	CHECK(rf == 0 || rf == KVT_EFORMAT || rf == -ENOMEM);
	if (rf == 0) {
		CHECK(d1.heads == h->heads && d1.tokens == h->tokens &&
		      d1.dim == h->dim && d1.dtype == dt);
		CHECK(!memcmp(&d1, &d2, sizeof d1));
		kvt_from_f32(dt, f, conv, n);
		CHECK(same_elems(dt, nat, conv, n));
	}
	if (n) {
		CHECK(kvt_codec_decode_f32(p, len, f, (n - 1) * sizeof *f, NULL) ==
		      -ENOBUFS);
		CHECK(kvt_codec_decode(p, len, nat, (n - 1) * es, NULL) == -ENOBUFS);
	}
	free(f);
	free(nat);
	free(conv);
}

static void decode_one(const uint8_t *p, size_t len)
{
	struct kvt_codec_header h;
	float one;
	int rc = kvt_codec_read_header(p, len, &h);
	if (rc) {
		CHECK(rc == KVT_EFORMAT || rc == KVT_EVERSION || rc == KVT_ECODEC);
		CHECK(kvt_codec_decode_f32(p, len, &one, sizeof one, NULL) == rc);
		CHECK(kvt_codec_decode(p, len, &one, sizeof one, NULL) == rc);
		return;
	}
	CHECK(h.payload_len == len - KVT_CODEC_HEADER_BYTES);
	if (kvt_header_elems(&h) > MAX_OUT_ELEMS) {
		CHECK(kvt_codec_decode_f32(p, len, &one, sizeof one, NULL) == -ENOBUFS);
		return;
	}
	decode_both(p, len, &h);
}

/* data follows the mode byte: copied to its own allocation, aligned (the
 * decoders read u16/u32 fields in place) and exactly sized for ASan. */
static void decode_mode(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	CHECK(copy);
	memcpy(copy, data, size);
	decode_one(copy, size);
	if (size < 6) {
		free(copy);
		return;
	}
	static const uint8_t ids[] = {KVT_CODEC_RAW, KVT_CODEC_KIVI,
				      KVT_CODEC_ZIPCACHE};
	for (size_t i = 0; i < sizeof ids; i++) {
		if (data[5] == ids[i])
			continue;
		copy[5] = ids[i];
		decode_one(copy, size);
	}
	free(copy);
}

/* ---------------------------------------------------------------- round-trip mode */

struct reader {
	const uint8_t *p;
	size_t n;
};

static unsigned take(struct reader *r)
{
	if (!r->n)
		return 0;
	r->n--;
	return *r->p++;
}

/* A test case: parameters from the first 9 bytes, the tensor from the rest
 * (cycled), saliency scores from the same bytes. */
struct fcase {
	struct kvt_codec_params p;
	enum kvt_kv_kind kind;
	struct kvt_tensor_desc d;
	float *scores;
	uint8_t *x; /* the tensor, d.dtype */
	size_t n;
};

static const uint8_t bit_pairs[][2] = {{2, 4}, {2, 8}, {4, 8}, {8, 8}, {2, 2}};

static void case_params(struct reader *r, struct fcase *c)
{
	unsigned b0 = take(r), b1 = take(r), b2 = take(r);
	memset(&c->p, 0, sizeof c->p);
	c->p.id = (enum kvt_codec_id)(b0 % 3);
	c->kind = (enum kvt_kv_kind)(b1 & 1);
	c->d.dtype = (enum kvt_dtype)(1 + (b1 >> 1) % 3);
	c->p.zip_tokenwise = (b1 >> 3) & 1;
	const uint8_t *bp = bit_pairs[b2 % 5];
	c->p.bits = bp[0];
	if (c->p.id == KVT_CODEC_ZIPCACHE) {
		c->p.high_bits = bp[1];
		c->p.salient_ratio = (float)take(r) / 255.0f;
	} else if (c->p.id == KVT_CODEC_KIVI) {
		/* mostly valid groups: whole words of codes */
		c->p.group = (uint16_t)((32 / c->p.bits) * (1 + take(r) % 8));
		if ((b2 >> 4) == 15)
			c->p.group = (uint16_t)(1 + take(r));
		c->p.residual = take(r) % 64;
	}
	c->d.heads = 1 + take(r) % 3;
	c->d.tokens = take(r) % 96;
	unsigned dm = take(r);
	c->d.dim = 1 + dm % 72;
	if (dm & 0x80) /* the SIMD paths want multiples of 8 */
		c->d.dim = (c->d.dim + 7) / 8 * 8;
	if (c->p.id == KVT_CODEC_KIVI && c->kind == KVT_KIND_VALUE &&
	    c->p.group && (b1 & 0x80))
		c->d.dim = c->p.group * (1 + dm % 4);
	while (c->d.tokens && (size_t)c->d.heads * c->d.tokens * c->d.dim >
				      MAX_CASE_ELEMS)
		c->d.tokens /= 2;
	if (c->p.id == KVT_CODEC_ZIPCACHE && (b1 & 0x10))
		c->scores = malloc((c->d.tokens ? c->d.tokens : 1) * sizeof(float));
}

/* Element i from the data bytes, made finite and |x| <= 65504. */
static void case_elem(struct fcase *c, const struct reader *r, size_t i,
		      uint8_t *out)
{
	const size_t es = kvt_dtype_size(c->d.dtype);
	uint8_t b[4] = {0};
	for (size_t k = 0; r->n && k < es; k++)
		b[k] = r->p[(i * es + k) % r->n];
	if (c->d.dtype == KVT_DTYPE_F16) {
		uint16_t h = kvt_get_u16(b);
		if ((h & 0x7c00u) == 0x7c00u)
			h &= 0xbfffu; /* inf/NaN -> a finite value */
		kvt_put_u16(out, h);
	} else if (c->d.dtype == KVT_DTYPE_BF16) {
		uint16_t h = kvt_get_u16(b);
		if (!(fabsf(kvt_bf16_to_f32(h)) <= F16_MAX))
			h &= 0x8000u | 0x3fffu; /* exponent below 2^1 */
		kvt_put_u16(out, h);
	} else {
		float f = kvt_bits_to_f32(kvt_get_u32(b));
		if (!(fabsf(f) <= F16_MAX))
			f = isfinite(f) ? fmodf(f, F16_MAX) : 0.0f;
		kvt_put_u32(out, kvt_f32_to_bits(f));
	}
}

static int case_build(const uint8_t *data, size_t size, struct fcase *c)
{
	struct reader r = {data, size};
	memset(c, 0, sizeof *c);
	case_params(&r, c);
	c->n = (size_t)c->d.heads * c->d.tokens * c->d.dim;
	const size_t es = kvt_dtype_size(c->d.dtype);
	c->x = malloc(c->n ? c->n * es : 1);
	if (!c->x)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++)
		case_elem(c, &r, i, c->x + i * es);
	for (uint32_t t = 0; c->scores && t < c->d.tokens; t++) {
		unsigned v = r.n ? r.p[t % r.n] : 0;
		c->scores[t] = v == 255 ? NAN : (float)(v % 16); /* ties */
	}
	c->p.saliency = c->scores;
	return 0;
}

static void case_free(struct fcase *c)
{
	free(c->x);
	free(c->scores);
}

/* Token t ranks among the n_sal highest scores (ties: lower index; NaN
 * lowest): the documented choice, by counting. */
static int ref_salient(const struct fcase *c, uint32_t n_sal, uint32_t t)
{
	if (!c->scores)
		return 0;
	uint32_t before = 0;
	float st = isnan(c->scores[t]) ? -INFINITY : c->scores[t];
	for (uint32_t u = 0; u < c->d.tokens; u++) {
		float su = isnan(c->scores[u]) ? -INFINITY : c->scores[u];
		before += su > st || (su == st && u < t);
	}
	return before < n_sal;
}

/* The documented bound: |x - y| <= nh * sh / 2 up to fp32 rounding, which
 * is allowed as 2^-19 of the magnitudes involved (the worst case is a few
 * 2^-24), plus, absolutely, qmax + 1 fp32 subnormal steps (scaled by nh):
 * a row spanning less than qmax * 2^-150 gets a range that underflows to
 * 0 in fp32, so sh = 0 and the row decodes to mh. nh is 1 for KIVI and
 * plain tokenwise ZipCache. */
static void check_bound(double x, double y, double sh, double mh, double nh,
			unsigned bits)
{
	const double qmax = (double)((1u << bits) - 1);
	double tol = nh * sh / 2 +
		     ldexp(nh * qmax * sh + nh * fabs(mh) + fabs(x) + fabs(y), -19) +
		     ldexp(nh * (qmax + 1), -149) + ldexp(1.0, -140);
	if (!(fabs(x - y) <= tol)) {
		fprintf(stderr, "fuzz_codec: x=%a decoded %a: error %g > bound %g "
			"(sh %a mh %a nh %a bits %u)\n", x, y, fabs(x - y), tol,
			sh, mh, nh, bits);
		abort();
	}
}

static void check_kivi(const struct fcase *c, const uint8_t *enc,
		       const float *x, const float *y)
{
	struct kvt_codec_header h;
	struct kvt_kivi_layout l;
	CHECK(kvt_codec_read_header(enc, KVT_CODEC_HEADER_BYTES +
				    kvt_get_u32(enc + 32), &h) == 0);
	kvt_kivi_layout(&h, &l);
	const uint8_t *pl = enc + KVT_CODEC_HEADER_BYTES;
	const uint32_t T = h.tokens, D = h.dim, G = h.group;
	for (uint32_t hd = 0; hd < h.heads; hd++)
		for (uint32_t t = 0; t < T; t++)
			for (uint32_t ch = 0; ch < D; ch++) {
				size_t i = ((size_t)hd * T + t) * D + ch;
				if (t >= l.tq) { /* residual: exact */
					CHECK(kvt_f32_to_bits(x[i]) ==
					      kvt_f32_to_bits(y[i]));
					continue;
				}
				size_t gi = c->kind == KVT_KIND_KEY
					? ((size_t)hd * l.ng + t / G) * D + ch
					: ((size_t)hd * l.tq + t) * l.nc + ch / G;
				double sh = kvt_f16_to_f32(kvt_get_u16(pl + l.scales + 2 * gi));
				double mh = kvt_f16_to_f32(kvt_get_u16(pl + l.mins + 2 * gi));
				check_bound(x[i], y[i], sh, mh, 1.0, h.bits);
			}
}

static void check_zip(const struct fcase *c, const uint8_t *enc,
		      const float *x, const float *y)
{
	struct kvt_codec_header h;
	struct kvt_zip_layout l;
	CHECK(kvt_codec_read_header(enc, KVT_CODEC_HEADER_BYTES +
				    kvt_get_u32(enc + 32), &h) == 0);
	const uint8_t *pl = enc + KVT_CODEC_HEADER_BYTES;
	CHECK(kvt_get_u32(pl) == (c->p.zip_tokenwise ? 0 : KVT_ZIP_FLAG_NORMS));
	kvt_zip_layout(&h, !c->p.zip_tokenwise, &l);
	CHECK(l.total == h.payload_len);
	CHECK(h.n_salient == kvt_zip_n_salient(&c->p, h.tokens));
	const uint32_t T = h.tokens, D = h.dim;
	const uint32_t *bm = (const uint32_t *)(const void *)(pl + l.bitmap);
	for (uint32_t t = 0; t < T; t++)
		CHECK(kvt_zip_is_salient(bm, t) == ref_salient(c, h.n_salient, t));
	for (uint32_t hd = 0; hd < h.heads; hd++)
		for (uint32_t t = 0; t < T; t++) {
			size_t r = (size_t)hd * T + t;
			double sh = kvt_f16_to_f32(kvt_get_u16(pl + l.scales + 2 * r));
			double mh = kvt_f16_to_f32(kvt_get_u16(pl + l.mins + 2 * r));
			unsigned bits = kvt_zip_is_salient(bm, t) ? h.high_bits : h.bits;
			for (uint32_t ch = 0; ch < D; ch++) {
				double nh = l.norms ? kvt_f16_to_f32(kvt_get_u16(
						pl + l.norm + 2 * ((size_t)hd * D + ch)))
						    : 1.0;
				size_t i = r * D + ch;
				check_bound(x[i], y[i], sh, mh, nh, bits);
			}
		}
}

/* The scalar reference encoder must give the same bytes (KIVI). */
static void check_kivi_ref(const uint8_t *enc, size_t len, const void *src)
{
	struct kvt_codec_header h;
	struct kvt_kivi_layout l;
	CHECK(kvt_codec_read_header(enc, len, &h) == 0);
	kvt_kivi_layout(&h, &l);
	uint8_t *ref = malloc(len);
	CHECK(ref);
	memset(ref, 0x33, len);
	uint8_t *pl = ref + KVT_CODEC_HEADER_BYTES;
	if (l.mins > l.scales) { /* the padding the caller zeroes */
		memset(pl + l.mins - 4, 0, 4);
		memset(pl + l.residual - 4, 0, 4);
	}
	memcpy(ref, enc, KVT_CODEC_HEADER_BYTES);
	CHECK(kvt_kivi_encode_ref(&h, src, pl) == 0);
	for (size_t i = 0; i < len; i++) {
		if (ref[i] == enc[i])
			continue;
		size_t o = i - KVT_CODEC_HEADER_BYTES;
		fprintf(stderr, "fuzz_codec: KIVI %s dtype %u bits %u group %u "
			"%ux%ux%u residual %u: byte %zu of the payload differs "
			"from the reference (%#x vs %#x); sections: scales %zu "
			"mins %zu residual %zu\n",
			h.kind ? "values" : "keys", h.dtype, h.bits, h.group,
			h.heads, h.tokens, h.dim, h.residual, o, enc[i], ref[i],
			l.scales, l.mins, l.residual);
		abort();
	}
	free(ref);
}

static void check_header(const struct fcase *c, const struct kvt_codec_header *h,
			 size_t len)
{
	CHECK(h->codec == c->p.id && h->kind == c->kind &&
	      h->dtype == c->d.dtype && h->heads == c->d.heads &&
	      h->tokens == c->d.tokens && h->dim == c->d.dim &&
	      h->payload_len == len - KVT_CODEC_HEADER_BYTES);
	uint32_t T = c->d.tokens;
	if (c->p.id == KVT_CODEC_RAW) {
		CHECK(h->residual == T);
	} else if (c->p.id == KVT_CODEC_KIVI) {
		uint32_t tq = T > c->p.residual ? T - c->p.residual : 0;
		tq = tq / c->p.group * c->p.group;
		CHECK(h->bits == c->p.bits && h->group == c->p.group &&
		      h->residual == T - tq);
	} else {
		CHECK(h->bits == c->p.bits && h->high_bits == c->p.high_bits &&
		      h->residual == 0 && h->group == 0);
	}
}

/* Decodes enc both ways and checks the values against the inputs. */
static void check_decode(const struct fcase *c, const uint8_t *enc, size_t len)
{
	const size_t n = c->n, es = kvt_dtype_size(c->d.dtype);
	float *x = malloc(n ? n * sizeof *x : 1), *y = malloc(n ? n * sizeof *y : 1);
	uint8_t *nat = malloc(n ? n * es : 1), *conv = malloc(n ? n * es : 1);
	CHECK(x && y && nat && conv);
	kvt_to_f32(c->d.dtype, c->x, x, n);
	CHECK(kvt_codec_decode_f32(enc, len, y, n * sizeof *y, NULL) == 0);
	CHECK(kvt_codec_decode(enc, len, nat, n * es, NULL) == 0);
	kvt_from_f32(c->d.dtype, y, conv, n);
	CHECK(same_elems(c->d.dtype, nat, conv, n));
	if (c->p.id == KVT_CODEC_RAW) {
		CHECK(!memcmp(nat, c->x, n * es));
		for (size_t i = 0; i < n; i++)
			CHECK(kvt_f32_to_bits(x[i]) == kvt_f32_to_bits(y[i]));
	} else if (c->p.id == KVT_CODEC_KIVI) {
		check_kivi(c, enc, x, y);
	} else {
		check_zip(c, enc, x, y);
	}
	free(x);
	free(y);
	free(nat);
	free(conv);
}

static void roundtrip_mode(const uint8_t *data, size_t size)
{
	struct fcase c;
	if (case_build(data, size, &c))
		return;
	size_t need = 0, wa = 0, wb = 0;
	int rc = kvt_codec_check(&c.p, c.kind, &c.d);
	int rs = kvt_codec_encoded_size(&c.p, c.kind, &c.d, &need);
	CHECK(rs == rc || (rc == 0 && rs == KVT_ETOOBIG));
	uint8_t *a = malloc(need ? need : 1), *b = malloc(need ? need : 1);
	CHECK(a && b);
	if (rs) {
		CHECK(kvt_codec_encode(&c.p, c.kind, &c.d, c.x, a, need, &wa) == rs);
		goto out;
	}
	CHECK(need >= KVT_CODEC_HEADER_BYTES);
	CHECK(kvt_codec_encode(&c.p, c.kind, &c.d, c.x, a, need - 1, &wa) ==
	      -ENOBUFS);
	memset(a, 0xa5, need);
	memset(b, 0x5a, need);
	CHECK(kvt_codec_encode(&c.p, c.kind, &c.d, c.x, a, need, &wa) == 0);
	CHECK(kvt_codec_encode(&c.p, c.kind, &c.d, c.x, b, need, &wb) == 0);
	CHECK(wa == need && wb == need);
	CHECK(memcmp(a, b, need) == 0); /* every byte written, deterministic */
	struct kvt_codec_header h;
	CHECK(kvt_codec_read_header(a, need, &h) == 0);
	check_header(&c, &h, need);
	if (c.p.id == KVT_CODEC_KIVI)
		check_kivi_ref(a, need, c.x);
	check_decode(&c, a, need);
out:
	free(a);
	free(b);
	case_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		roundtrip_mode(data + 1, size - 1);
	else
		decode_mode(data + 1, size - 1);
	return 0;
}
