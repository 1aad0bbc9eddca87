/* test_zipcache.c - ZipCache: per-token error bound, salient set, layout,
 * saliency (exact vs brute force, probe vs exact), bad input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvtier/codec.h"
#include "zipcache_internal.h"

static float uni(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (float)(*seed >> 8) / (1u << 24) - 0.5f;
}

/* K or V with a few outlier channels, as real post-RoPE keys have. */
static float *make_tensor(uint32_t heads, uint32_t tokens, uint32_t dim,
			  unsigned seed)
{
	float *x = malloc((size_t)heads * tokens * dim * sizeof *x);
	for (size_t i = 0; i < (size_t)heads * tokens * dim; i++) {
		size_t d = i % dim;
		x[i] = uni(&seed) * (d % 17 == 3 ? 20.0f : 2.0f) +
		       (d % 5 == 0 ? 1.5f : 0.0f);
	}
	return x;
}

static float *make_scores(uint32_t tokens, unsigned seed)
{
	float *s = malloc(tokens * sizeof *s);
	for (uint32_t t = 0; t < tokens; t++)
		s[t] = uni(&seed);
	return s;
}

struct coded {
	uint8_t *buf;
	size_t len;
	struct kvt_codec_header h;
	struct kvt_zip_layout l;
};

static void encode(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		   const struct kvt_tensor_desc *d, const void *src,
		   struct coded *c)
{
	size_t need;
	cr_assert_eq(kvt_codec_encoded_size(p, kind, d, &need), 0);
	c->buf = malloc(need);
	cr_assert_eq(kvt_codec_encode(p, kind, d, src, c->buf, need, &c->len), 0);
	cr_assert_eq(c->len, need);
	cr_assert_eq(kvt_codec_read_header(c->buf, c->len, &c->h), 0);
	kvt_zip_layout(&c->h, !p->zip_tokenwise, &c->l);
	cr_assert_eq(c->l.total, c->h.payload_len);
}

static const uint8_t *payload(const struct coded *c)
{
	return c->buf + KVT_CODEC_HEADER_BYTES;
}

static const uint32_t *bitmap(const struct coded *c)
{
	return (const uint32_t *)(const void *)(payload(c) + c->l.bitmap);
}

static float f16_at(const struct coded *c, size_t off, size_t i)
{
	return kvt_f16_to_f32(((const uint16_t *)(const void *)(payload(c) + off))[i]);
}

/* |x - x'| <= nh * s / 2 for every element of every row. */
static void check_bound(const struct coded *c, const float *x, const float *y)
{
	const struct kvt_codec_header *h = &c->h;
	for (size_t hd = 0; hd < h->heads; hd++)
		for (size_t t = 0; t < h->tokens; t++) {
			float s = f16_at(c, c->l.scales, hd * h->tokens + t);
			for (size_t d = 0; d < h->dim; d++) {
				size_t i = (hd * h->tokens + t) * h->dim + d;
				float nh = c->l.norms ? f16_at(c, c->l.norm, hd * h->dim + d)
						      : 1.0f;
				float err = fabsf(x[i] - y[i]);
				cr_assert(err <= nh * s * 0.5f * (1 + 1e-5f) +
							 2e-6f * fabsf(x[i]),
					  "h%zu t%zu d%zu x=%g y=%g s=%g nh=%g", hd,
					  t, d, x[i], y[i], s, nh);
			}
		}
}

static void params(struct kvt_codec_params *p, unsigned lo, unsigned hi,
		   float ratio, const float *scores, int tokenwise)
{
	kvt_codec_params_init(p, KVT_CODEC_ZIPCACHE);
	p->bits = (uint8_t)lo;
	p->high_bits = (uint8_t)hi;
	p->salient_ratio = ratio;
	p->saliency = scores;
	p->zip_tokenwise = (uint8_t)tokenwise;
}

static void round_trip(unsigned lo, unsigned hi, enum kvt_kv_kind kind,
		       int tokenwise, uint32_t tokens, uint32_t dim)
{
	struct kvt_tensor_desc d = {3, tokens, dim, KVT_DTYPE_F32};
	size_t n = (size_t)d.heads * tokens * dim;
	float *x = make_tensor(3, tokens, dim, lo * 13 + hi + kind);
	float *s = make_scores(tokens, 77);
	float *y = malloc(n * sizeof *y);
	struct kvt_codec_params p;
	params(&p, lo, hi, 0.25f, s, tokenwise);
	struct coded c;
	encode(&p, kind, &d, x, &c);
	cr_assert_eq(c.h.n_salient, (uint32_t)floor(0.25 * tokens + 0.5));
	cr_assert_eq(c.h.bits, lo);
	cr_assert_eq(c.h.high_bits, hi);
	struct kvt_tensor_desc out;
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * sizeof *y, &out), 0);
	cr_assert_eq(out.tokens, tokens);
	cr_assert_eq(out.dim, dim);
	check_bound(&c, x, y);
	free(x), free(s), free(y), free(c.buf);
}

Test(zipcache, every_token_within_its_bound)
{
	static const unsigned bits[][2] = {{2, 4}, {2, 8}, {4, 8}};
	for (int b = 0; b < 3; b++)
		for (int kind = 0; kind < 2; kind++)
			for (int tw = 0; tw < 2; tw++)
				round_trip(bits[b][0], bits[b][1], kind, tw, 300, 64);
}

Test(zipcache, odd_shapes_round_trip)
{
	round_trip(2, 4, KVT_KIND_KEY, 0, 1, 64);
	round_trip(2, 8, KVT_KIND_VALUE, 0, 33, 20); /* rows not whole words */
	round_trip(4, 8, KVT_KIND_KEY, 1, 7, 3);
	round_trip(2, 4, KVT_KIND_VALUE, 0, 0, 64); /* no tokens at all */
}

/* The salient set is the top round(ratio * T) scores, ties to lower index. */
Test(zipcache, salient_set_is_the_top_scores)
{
	const uint32_t tokens = 100;
	struct kvt_tensor_desc d = {2, tokens, 32, KVT_DTYPE_F32};
	float *x = make_tensor(2, tokens, 32, 3);
	float s[100];
	for (uint32_t t = 0; t < tokens; t++)
		s[t] = (float)((t * 37) % 10); /* many ties */
	s[5] = NAN;
	struct kvt_codec_params p;
	params(&p, 2, 4, 0.15f, s, 0);
	struct coded c;
	encode(&p, KVT_KIND_KEY, &d, x, &c);
	cr_assert_eq(c.h.n_salient, 15);
	for (uint32_t t = 0; t < tokens; t++) {
		/* rank of t under (score desc, index asc), NaN lowest */
		uint32_t better = 0;
		float st = isnan(s[t]) ? -INFINITY : s[t];
		for (uint32_t u = 0; u < tokens; u++) {
			float su = isnan(s[u]) ? -INFINITY : s[u];
			better += su > st || (su == st && u < t);
		}
		cr_assert_eq(kvt_zip_is_salient(bitmap(&c), t), better < 15,
			     "token %u", t);
	}
	free(x), free(c.buf);
}

static double row_err(const float *x, const float *y, size_t row, uint32_t dim)
{
	double e = 0;
	for (uint32_t d = 0; d < dim; d++)
		e += fabs((double)x[row * dim + d] - y[row * dim + d]);
	return e / dim;
}

/* High-bit rows carry much less error than low-bit rows of the same data. */
Test(zipcache, salient_tokens_get_the_precision)
{
	const uint32_t tokens = 400, dim = 128;
	struct kvt_tensor_desc d = {1, tokens, dim, KVT_DTYPE_F32};
	float *x = make_tensor(1, tokens, dim, 8);
	float *s = make_scores(tokens, 9), *y = malloc(tokens * dim * 4);
	struct kvt_codec_params p;
	params(&p, 2, 8, 0.3f, s, 0);
	struct coded c;
	encode(&p, KVT_KIND_VALUE, &d, x, &c);
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, tokens * dim * 4, NULL), 0);
	double es = 0, el = 0;
	for (uint32_t t = 0; t < tokens; t++) {
		if (kvt_zip_is_salient(bitmap(&c), t))
			es += row_err(x, y, t, dim) / c.h.n_salient;
		else
			el += row_err(x, y, t, dim) / (tokens - c.h.n_salient);
	}
	cr_assert(es * 10 < el, "salient %g low %g", es, el);
	free(x), free(s), free(y), free(c.buf);
}

static double mse(const float *x, const float *y, size_t n)
{
	double e = 0;
	for (size_t i = 0; i < n; i++)
		e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
	return e / (double)n;
}

/* With outlier channels, the per-channel normalisers reduce the error. */
Test(zipcache, channel_separable_beats_tokenwise_on_outliers)
{
	const uint32_t tokens = 256, dim = 128;
	size_t n = (size_t)2 * tokens * dim;
	struct kvt_tensor_desc d = {2, tokens, dim, KVT_DTYPE_F32};
	float *x = make_tensor(2, tokens, dim, 4), *y = malloc(n * 4);
	double e[2];
	for (int tw = 0; tw < 2; tw++) {
		struct kvt_codec_params p;
		params(&p, 2, 4, 0.2f, NULL, tw);
		struct coded c;
		encode(&p, KVT_KIND_KEY, &d, x, &c);
		cr_assert_eq(c.h.n_salient, 0, "no scores: every token low-bit");
		cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), 0);
		e[tw] = mse(x, y, n);
		free(c.buf);
	}
	cr_assert(e[0] < e[1], "channel-separable %g tokenwise %g", e[0], e[1]);
	free(x), free(y);
}

/* Sizes follow the documented layout exactly. */
Test(zipcache, layout_sizes)
{
	const uint32_t heads = 8, tokens = 1000, dim = 128;
	struct kvt_tensor_desc d = {heads, tokens, dim, KVT_DTYPE_F16};
	float *s = make_scores(tokens, 1);
	struct kvt_codec_params p;
	size_t n;
	params(&p, 2, 4, 0.2f, s, 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &n), 0);
	size_t ns = 200, bm = (tokens + 31) / 32 * 4, norms = heads * dim * 2;
	size_t rows = (size_t)heads * tokens * 2 * 2; /* scale + min */
	size_t codes = (size_t)heads * ((tokens - ns) * dim * 2 + ns * dim * 4) / 8;
	cr_assert_eq(n, KVT_CODEC_HEADER_BYTES + 4 + bm + norms + rows + codes);
	p.zip_tokenwise = 1;
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_VALUE, &d, &n), 0);
	cr_assert_eq(n, KVT_CODEC_HEADER_BYTES + 4 + bm + rows + codes);
	free(s);
}

Test(zipcache, f16_and_bf16_inputs)
{
	const uint32_t tokens = 130, dim = 64;
	size_t n = (size_t)2 * tokens * dim;
	struct kvt_tensor_desc d = {2, tokens, dim, KVT_DTYPE_F16};
	float *x = make_tensor(2, tokens, dim, 6), *y = malloc(n * 4);
	float *s = make_scores(tokens, 2);
	uint16_t *xh = malloc(n * 2), *yh = malloc(n * 2);
	struct kvt_codec_params p;
	params(&p, 2, 8, 0.1f, s, 0);
	for (int dt = 0; dt < 2; dt++) {
		d.dtype = dt ? KVT_DTYPE_BF16 : KVT_DTYPE_F16;
		float *xr = malloc(n * 4);
		kvt_from_f32(d.dtype, x, xh, n);
		kvt_to_f32(d.dtype, xh, xr, n);
		struct coded c;
		encode(&p, KVT_KIND_VALUE, &d, xh, &c);
		cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), 0);
		check_bound(&c, xr, y);
		cr_assert_eq(kvt_codec_decode(c.buf, c.len, yh, n * 2, NULL), 0);
		for (size_t i = 0; i < n; i++) {
			uint16_t want = dt ? kvt_f32_to_bf16(y[i]) : kvt_f32_to_f16(y[i]);
			cr_assert_eq(yh[i], want);
		}
		free(xr), free(c.buf);
	}
	free(x), free(y), free(s), free(xh), free(yh);
}

Test(zipcache, constant_rows_and_zero_channels_decode_exactly)
{
	struct kvt_tensor_desc d = {1, 40, 32, KVT_DTYPE_F32};
	float x[40 * 32], y[40 * 32], s[40];
	for (int i = 0; i < 40 * 32; i++)
		x[i] = i % 32 == 0 ? 0.0f : 0.75f;
	for (int t = 0; t < 40; t++)
		s[t] = (float)t;
	struct kvt_codec_params p;
	params(&p, 2, 4, 0.5f, s, 0);
	for (int kind = 0; kind < 2; kind++) {
		struct coded c;
		encode(&p, kind, &d, x, &c);
		cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, sizeof y, NULL), 0);
		check_bound(&c, x, y);
		free(c.buf);
	}
	for (int i = 0; i < 40 * 32; i++)
		x[i] = -2.5f;
	struct coded c;
	encode(&p, KVT_KIND_KEY, &d, x, &c);
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, sizeof y, NULL), 0);
	for (int i = 0; i < 40 * 32; i++)
		cr_assert_eq(y[i], -2.5f);
	free(c.buf);
}

Test(zipcache, encoding_is_deterministic)
{
	struct kvt_tensor_desc d = {2, 150, 64, KVT_DTYPE_F32};
	float *x = make_tensor(2, 150, 64, 21), *s = make_scores(150, 3);
	struct kvt_codec_params p;
	params(&p, 2, 4, 0.3f, s, 0);
	struct coded a, b;
	encode(&p, KVT_KIND_KEY, &d, x, &a);
	encode(&p, KVT_KIND_KEY, &d, x, &b);
	cr_assert_eq(a.len, b.len);
	cr_assert_eq(memcmp(a.buf, b.buf, a.len), 0);
	free(a.buf), free(b.buf), free(x), free(s);
}

Test(zipcache, unsupported_parameters_are_codec_errors)
{
	struct kvt_tensor_desc d = {1, 64, 64, KVT_DTYPE_F16};
	struct kvt_codec_params p;
	size_t n;
	params(&p, 3, 4, 0.2f, NULL, 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &n), KVT_ECODEC);
	params(&p, 4, 4, 0.2f, NULL, 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &n), KVT_ECODEC);
	params(&p, 2, 4, 1.5f, NULL, 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &n), KVT_ECODEC);
	params(&p, 2, 4, NAN, NULL, 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &n), KVT_ECODEC);
	params(&p, 2, 4, 0.2f, NULL, 0);
	p.residual = 16;
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &n), KVT_ECODEC);
	params(&p, 2, 8, 1.0f, NULL, 0);
	cr_assert_eq(kvt_codec_encoded_size(&p, KVT_KIND_VALUE, &d, &n), 0);
}

/* Truncation, header and payload corruption are clear format errors. */
Test(zipcache, corrupt_and_truncated_payloads)
{
	const uint32_t tokens = 100, dim = 64;
	size_t n = (size_t)2 * tokens * dim;
	struct kvt_tensor_desc d = {2, tokens, dim, KVT_DTYPE_F32};
	float *x = make_tensor(2, tokens, dim, 5), *y = malloc(n * 4);
	float *s = make_scores(tokens, 4);
	struct kvt_codec_params p;
	params(&p, 2, 4, 0.2f, s, 0);
	struct coded c;
	encode(&p, KVT_KIND_KEY, &d, x, &c);
	struct kvt_codec_header h;
	uint8_t *pl = c.buf + KVT_CODEC_HEADER_BYTES;
	for (size_t cut = 0; cut < c.len; cut += 61)
		cr_assert_eq(kvt_codec_decode_f32(c.buf, cut, y, n * 4, NULL),
			     KVT_EFORMAT, "cut %zu", cut);
	c.buf[9] = 2; /* high bits not above bits */
	cr_assert_eq(kvt_codec_read_header(c.buf, c.len, &h), KVT_EFORMAT);
	c.buf[9] = 4;
	c.buf[28] ^= 1; /* n_salient: codes no longer fill the payload */
	cr_assert_eq(kvt_codec_read_header(c.buf, c.len, &h), KVT_EFORMAT);
	c.buf[28] ^= 1;
	pl[0] = 0; /* flags say no normalisers, the length says there are */
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), KVT_EFORMAT);
	pl[0] = 0x81; /* unknown flag */
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), KVT_EFORMAT);
	pl[0] = 1;
	uint32_t *bm = (uint32_t *)(void *)(pl + c.l.bitmap);
	uint32_t w0 = bm[0];
	bm[0] ^= 1u << 3; /* one salient token more or less */
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), KVT_EFORMAT);
	bm[0] = w0;
	bm[3] |= 1u << 10; /* token 106 does not exist */
	bm[0] &= bm[0] - 1; /* keep the count */
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), KVT_EFORMAT);
	bm[0] = w0;
	bm[3] &= ~(1u << 10);
	uint16_t *norms = (uint16_t *)(void *)(pl + c.l.norm);
	uint16_t n0 = norms[7];
	norms[7] = 0x8000; /* -0: a normaliser must be positive */
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), KVT_EFORMAT);
	norms[7] = 0x7c00; /* inf */
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), KVT_EFORMAT);
	norms[7] = n0;
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, 16, NULL), -ENOBUFS);
	cr_assert_eq(kvt_codec_decode_f32(c.buf, c.len, y, n * 4, NULL), 0);
	check_bound(&c, x, y);
	free(x), free(y), free(s), free(c.buf);
}

/* ---------------------------------------------------------------- saliency */

/* The definition, computed the slow way in double precision. */
static void brute_saliency(const float *q, uint32_t nqh, const float *k,
			   uint32_t nkv, uint32_t n, uint32_t dim, double *out)
{
	double *p = malloc(n * sizeof *p);
	memset(out, 0, n * sizeof *out);
	for (uint32_t h = 0; h < nqh; h++) {
		const float *kh = k + (size_t)(h / (nqh / nkv)) * n * dim;
		for (uint32_t i = 0; i < n; i++) {
			const float *qi = q + ((size_t)h * n + i) * dim;
			double mx = -INFINITY, sum = 0;
			for (uint32_t j = 0; j <= i; j++) {
				double l = 0;
				for (uint32_t d = 0; d < dim; d++)
					l += (double)qi[d] * kh[(size_t)j * dim + d];
				p[j] = l / sqrt((double)dim);
				mx = p[j] > mx ? p[j] : mx;
			}
			for (uint32_t j = 0; j <= i; j++)
				sum += p[j] = exp(p[j] - mx);
			for (uint32_t j = 0; j <= i; j++)
				out[j] += p[j] / sum;
		}
	}
	for (uint32_t j = 0; j < n; j++)
		out[j] /= n - j; /* queries i >= j see token j */
	free(p);
}

/* Queries share a direction u; keys carry u with a per-token weight (some
 * tokens are heavy hitters), so attention has a clear structure. */
static void make_qk(uint32_t nqh, uint32_t nkv, uint32_t n, uint32_t dim,
		    unsigned seed, float **q, float **k)
{
	*q = malloc((size_t)nqh * n * dim * 4);
	*k = malloc((size_t)nkv * n * dim * 4);
	float *u = malloc(dim * 4), *wt = malloc(n * 4);
	for (uint32_t d = 0; d < dim; d++)
		u[d] = uni(&seed) * 2.0f;
	for (uint32_t j = 0; j < n; j++) {
		float r = uni(&seed) + 0.5f;
		wt[j] = r * r * r * 6.0f;
	}
	for (size_t i = 0; i < (size_t)nqh * n * dim; i++)
		(*q)[i] = u[i % dim] + uni(&seed);
	for (size_t i = 0; i < (size_t)nkv * n * dim; i++)
		(*k)[i] = u[i % dim] * wt[(i / dim) % n] * 0.5f + uni(&seed) * 2.0f;
	free(u), free(wt);
}

Test(zipcache, saliency_exact_matches_brute_force)
{
	const uint32_t nqh = 4, nkv = 2, n = 150, dim = 32;
	float *q, *k, s[150];
	double ref[150];
	make_qk(nqh, nkv, n, dim, 11, &q, &k);
	cr_assert_eq(kvt_zipcache_saliency(q, nqh, k, nkv, n, dim, 1.0f, 0, s), 0);
	brute_saliency(q, nqh, k, nkv, n, dim, ref);
	for (uint32_t j = 0; j < n; j++)
		cr_assert(fabs(s[j] - ref[j]) <= 1e-4 * ref[j] + 1e-7,
			  "token %u: %g vs %g", j, s[j], ref[j]);
	/* the newest token is seen only by itself: its weight there */
	cr_assert(s[n - 1] > 0);
	free(q), free(k);
}

static void ranks(const float *x, uint32_t n, double *r)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t less = 0, eq = 0;
		for (uint32_t j = 0; j < n; j++) {
			less += x[j] < x[i];
			eq += x[j] == x[i];
		}
		r[i] = less + (eq - 1) / 2.0;
	}
}

static double spearman(const float *a, const float *b, uint32_t n)
{
	double *ra = malloc(n * 8), *rb = malloc(n * 8), ma = 0, mb = 0;
	ranks(a, n, ra);
	ranks(b, n, rb);
	for (uint32_t i = 0; i < n; i++)
		ma += ra[i] / n, mb += rb[i] / n;
	double sab = 0, saa = 0, sbb = 0;
	for (uint32_t i = 0; i < n; i++) {
		sab += (ra[i] - ma) * (rb[i] - mb);
		saa += (ra[i] - ma) * (ra[i] - ma);
		sbb += (rb[i] - mb) * (rb[i] - mb);
	}
	free(ra), free(rb);
	return sab / sqrt(saa * sbb);
}

Test(zipcache, probe_estimate_ranks_agree_with_exact)
{
	const uint32_t nqh = 8, nkv = 2, n = 1024, dim = 64;
	float *q, *k, *exact = malloc(n * 4), *probe = malloc(n * 4);
	float *again = malloc(n * 4);
	make_qk(nqh, nkv, n, dim, 12, &q, &k);
	cr_assert_eq(kvt_zipcache_saliency(q, nqh, k, nkv, n, dim, 1.0f, 0, exact), 0);
	cr_assert_eq(kvt_zipcache_saliency(q, nqh, k, nkv, n, dim, 0.1f, 7, probe), 0);
	double rho = spearman(exact, probe, n);
	cr_log_info("probe 10%% vs exact: Spearman %.3f", rho);
	cr_assert(rho >= 0.8, "Spearman %g", rho);
	/* same seed, same estimate; another seed, another probe set */
	cr_assert_eq(kvt_zipcache_saliency(q, nqh, k, nkv, n, dim, 0.1f, 7, again), 0);
	cr_assert_eq(memcmp(probe, again, n * 4), 0);
	cr_assert_eq(kvt_zipcache_saliency(q, nqh, k, nkv, n, dim, 0.1f, 8, again), 0);
	cr_assert_neq(memcmp(probe, again, n * 4), 0);
	free(q), free(k), free(exact), free(probe), free(again);
}

Test(zipcache, saliency_bad_arguments)
{
	float q[64], k[64], s[8];
	memset(q, 0, sizeof q);
	memset(k, 0, sizeof k);
	cr_assert_eq(kvt_zipcache_saliency(q, 3, k, 2, 4, 4, 1.0f, 0, s), -EINVAL);
	cr_assert_eq(kvt_zipcache_saliency(q, 2, k, 2, 4, 4, 0.0f, 0, s), -EINVAL);
	cr_assert_eq(kvt_zipcache_saliency(q, 2, k, 2, 0, 4, 1.0f, 0, s), -EINVAL);
	cr_assert_eq(kvt_zipcache_saliency(NULL, 2, k, 2, 4, 4, 1.0f, 0, s), -EINVAL);
	/* all-zero inputs: uniform causal attention, 1/(i+1) summed */
	cr_assert_eq(kvt_zipcache_saliency(q, 2, k, 1, 4, 4, 1.0f, 0, s), 0);
	for (int j = 0; j < 4; j++) {
		double want = 0;
		for (int i = j; i < 4; i++)
			want += 2.0 / (i + 1);
		want /= 4 - j;
		cr_assert_float_eq(s[j], want, 1e-6);
	}
}

/* fp16 input and its exact fp32 widening give the same payload bytes (the
 * F16C conversions and the bit-level channel maxima change nothing). */
Test(zipcache, payload_does_not_depend_on_the_input_dtype)
{
	const uint32_t tokens = 77, dim = 128;
	size_t n = (size_t)2 * tokens * dim;
	float *x = make_tensor(2, tokens, dim, 31), *s = make_scores(tokens, 5);
	uint16_t *xh = malloc(n * 2);
	kvt_from_f32(KVT_DTYPE_F16, x, xh, n);
	kvt_to_f32(KVT_DTYPE_F16, xh, x, n);
	struct kvt_tensor_desc dh = {2, tokens, dim, KVT_DTYPE_F16};
	struct kvt_tensor_desc df = {2, tokens, dim, KVT_DTYPE_F32};
	for (int kind = 0; kind < 2; kind++) {
		struct kvt_codec_params p;
		params(&p, 2, 8, 0.3f, s, 0);
		struct coded a, b;
		encode(&p, kind, &dh, xh, &a);
		encode(&p, kind, &df, x, &b);
		cr_assert_eq(a.len, b.len);
		cr_assert_eq(memcmp(payload(&a), payload(&b), a.len - KVT_CODEC_HEADER_BYTES), 0);
		free(a.buf), free(b.buf);
	}
	free(x), free(s), free(xh);
}

/* Random byte flips anywhere: decode returns a code or decodes, never reads
 * outside the buffer (run under ASan to see that part). */
Test(zipcache, random_corruption_is_handled)
{
	const uint32_t tokens = 50, dim = 24;
	size_t n = (size_t)2 * tokens * dim;
	struct kvt_tensor_desc d = {2, tokens, dim, KVT_DTYPE_F16};
	float *x = make_tensor(2, tokens, dim, 13), *s = make_scores(tokens, 6);
	uint16_t *xh = malloc(n * 2), *yh = malloc(n * 2);
	float *y = malloc(n * 4);
	kvt_from_f32(KVT_DTYPE_F16, x, xh, n);
	struct kvt_codec_params p;
	params(&p, 2, 4, 0.3f, s, 0);
	struct coded c;
	encode(&p, KVT_KIND_VALUE, &d, xh, &c);
	uint8_t *m = malloc(c.len);
	unsigned seed = 99;
	int errors = 0;
	for (int i = 0; i < 3000; i++) {
		memcpy(m, c.buf, c.len);
		for (int f = 0; f < 1 + i % 3; f++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % (i % 2 ? c.len : 64);
			m[at] ^= (uint8_t)(1u << (seed >> 28) % 8);
		}
		int rc = kvt_codec_decode(m, c.len, yh, n * 2, NULL);
		int rf = kvt_codec_decode_f32(m, c.len, y, n * 4, NULL);
		cr_assert(rc == 0 || rc == KVT_EFORMAT || rc == KVT_EVERSION ||
				  rc == KVT_ECODEC || rc == -ENOBUFS,
			  "rc %d", rc);
		/* a flipped dtype can make the fp16-sized buffer too small */
		cr_assert(rc == rf || rc == -ENOBUFS, "rc %d rf %d", rc, rf);
		errors += rc != 0;
	}
	cr_assert_gt(errors, 100, "corruption of the header and bitmap is seen");
	free(x), free(s), free(xh), free(yh), free(y), free(m), free(c.buf);
}
