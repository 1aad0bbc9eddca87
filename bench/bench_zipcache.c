/*
 * bench_zipcache - ZipCache against KIVI at matched compressed size.
 *
 * Quality: synthetic fp16 K/V [kv_heads][tokens][dim] with outlier channels
 * and heavy-hitter tokens, queries [q_heads][tokens][dim] (GQA) that attend
 * to them. Saliency comes from those queries (exact, or the probe estimate);
 * the error is measured on held-out queries (later tokens) attending over
 * the whole compressed cache: relative Frobenius error of
 * softmax(q K'^T / sqrt d) V' against the fp32 original. Sizes are the
 * actual encoded bytes of K and V (headers, scales, normalisers, bitmap
 * included), as bits per element; each ZipCache row uses the largest salient
 * ratio whose size does not exceed the KIVI row it is matched to.
 *
 * Speed: encode/decode GB/s of fp16 input on one core next to memcpy of the
 * same bytes in the same run, and saliency time exact vs probe.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "half.h"
#include "kvtier/codec.h"
#include "npy.h"

struct opts {
	unsigned kv_heads, q_heads, tokens, dim, eval, tput_tokens, reps;
	float probe, hh, qscale;
	uint64_t seed;
	const char *kpath, *vpath, *qpath; /* real tensors instead of synthetic */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_zipcache [--kv-heads H] [--q-heads Q] [--tokens T] [--dim D]\n"
		"                      [--eval E] [--tput-tokens N] [--reps R] [--probe P]\n"
		"                      [--seed S] [--hh W] [--qscale S]\n"
		"                      [--keys K.npy --values V.npy --queries Q.npy]\n"
		"Attention-output error of ZipCache vs KIVI at matched bytes per element\n"
		"on synthetic outlier-channel K/V, then encode/decode throughput vs memcpy.\n"
		"Defaults: 4 kv heads, 16 q heads, 2048 tokens, dim 128, 64 held-out\n"
		"queries, 32768 tokens x 8 heads for throughput, 3 reps, probe 0.1,\n"
		"heavy-hitter strength W 0.6 (0: no favoured tokens; larger: sparser\n"
		"attention), query scale S 0.3 (larger: peakier softmax).\n"
		"With --keys/--values/--queries (one layer of a real model: K, V\n"
		"[kv_heads, tokens, dim], Q [q_heads, tokens, dim], float16/32) those\n"
		"replace the synthetic tensors; saliency uses every query and the error\n"
		"is measured on the last E queries, attending over all tokens.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"kv-heads", 1, 0, 'H'}, {"q-heads", 1, 0, 'Q'}, {"tokens", 1, 0, 'T'},
		{"dim", 1, 0, 'D'}, {"eval", 1, 0, 'E'}, {"tput-tokens", 1, 0, 'N'},
		{"reps", 1, 0, 'r'}, {"probe", 1, 0, 'p'}, {"seed", 1, 0, 's'},
		{"hh", 1, 0, 'w'}, {"qscale", 1, 0, 'q'}, {"keys", 1, 0, 'K'},
		{"values", 1, 0, 'V'}, {"queries", 1, 0, 'U'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){4, 16, 2048, 128, 64, 32768, 3, 0.1f, 0.6f, 0.3f, 1,
			   NULL, NULL, NULL};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'H': o->kv_heads = (unsigned)atoi(optarg); break;
		case 'Q': o->q_heads = (unsigned)atoi(optarg); break;
		case 'T': o->tokens = (unsigned)atoi(optarg); break;
		case 'D': o->dim = (unsigned)atoi(optarg); break;
		case 'E': o->eval = (unsigned)atoi(optarg); break;
		case 'N': o->tput_tokens = (unsigned)atoi(optarg); break;
		case 'r': o->reps = (unsigned)atoi(optarg); break;
		case 'p': o->probe = strtof(optarg, NULL); break;
		case 's': o->seed = strtoull(optarg, NULL, 10); break;
		case 'w': o->hh = strtof(optarg, NULL); break;
		case 'q': o->qscale = strtof(optarg, NULL); break;
		case 'K': o->kpath = optarg; break;
		case 'V': o->vpath = optarg; break;
		case 'U': o->qpath = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!o->kpath != !o->vpath || !o->kpath != !o->qpath) {
		fprintf(stderr, "bench_zipcache: --keys, --values and --queries go together\n");
		return -1;
	}
	if (!o->kv_heads || !o->q_heads || o->q_heads % o->kv_heads || !o->tokens ||
	    !o->dim || o->dim % 32 || !o->eval || !o->tput_tokens || !o->reps ||
	    !(o->probe > 0.0f)) {
		fprintf(stderr, "bench_zipcache: sizes must be positive, dim a multiple "
				"of 32, q heads a multiple of kv heads\n");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- data */

struct data {
	struct kvt_tensor_desc d;  /* K and V, fp16 */
	uint16_t *k16, *v16;
	float *k, *v;              /* fp32 of the fp16 inputs: the reference */
	float *q;                  /* [q_heads][tokens][dim]: saliency queries */
	float *qe;                 /* [q_heads][eval][dim]: held-out queries */
	float *ref;                /* [q_heads][eval][dim] attention output */
};

static float gauss(uint64_t *s)
{
	float a = bench_uniform(s) + 0.5f, b = bench_uniform(s) + 0.5f;
	return sqrtf(-2.0f * logf(a + 1e-7f)) * cosf(6.2831853f * b);
}

/*
 * Keys: per-channel offsets and scales (outlier channels every 16th, 10x),
 * plus a shared direction u weighted per token (heavy hitters, weight
 * heavy-tailed). Queries: u plus noise. Values: noise with outlier channels.
 */
static void fill(const struct opts *o, struct data *x)
{
	const size_t T = o->tokens, D = o->dim, H = o->kv_heads;
	uint64_t s = o->seed;
	float *u = malloc(D * 4), *w = malloc(T * H * 4);
	for (size_t c = 0; c < D; c++)
		u[c] = gauss(&s) * 0.6f;
	for (size_t i = 0; i < T * H; i++) {
		float g = gauss(&s);
		w[i] = o->hh * (g > 1.5f ? g : 0.3f * g);
	}
	for (size_t i = 0; i < H * T * D; i++) {
		size_t c = i % D, t = (i / D) % T, h = i / (T * D);
		/* outlier channels: a large offset and a wider spread */
		int out = c % 16 == 5;
		float off = out ? (c % 32 == 5 ? 6.0f : -5.0f) : (float)(c % 7) * 0.3f;
		x->k[i] = gauss(&s) * (out ? 3.0f : 1.0f) + off + w[h * T + t] * u[c];
		x->v[i] = gauss(&s) * (c % 16 == 9 ? 8.0f : 1.0f) + (c % 5 == 0 ? 0.5f : 0.0f);
	}
	for (size_t i = 0; i < (size_t)o->q_heads * T * D; i++)
		x->q[i] = (u[i % D] * 2.0f + gauss(&s) * 0.7f) * o->qscale;
	for (size_t i = 0; i < (size_t)o->q_heads * o->eval * D; i++)
		x->qe[i] = (u[i % D] * 2.0f + gauss(&s) * 0.7f) * o->qscale;
	free(u), free(w);
	size_t n = H * T * D;
	kvt_from_f32(KVT_DTYPE_F16, x->k, x->k16, n);
	kvt_from_f32(KVT_DTYPE_F16, x->v, x->v16, n);
	kvt_to_f32(KVT_DTYPE_F16, x->k16, x->k, n);
	kvt_to_f32(KVT_DTYPE_F16, x->v16, x->v, n);
}

static int cmp_desc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x > y ? -1 : x < y;
}

/* Share of a query's attention held by its top 10% of tokens. */
static double top_mass(float *p, size_t n, float sum)
{
	qsort(p, n, sizeof *p, cmp_desc);
	double m = 0;
	for (size_t j = 0; j < (n + 9) / 10; j++)
		m += p[j] / sum;
	return m;
}

/* out [q_heads][eval][dim]: every held-out query over every token; *mass
 * (may be NULL) gets the mean top-10% attention share. */
static void attention(const struct opts *o, const float *qe, const float *k,
		      const float *v, float *out, double *mass)
{
	const size_t T = o->tokens, D = o->dim, g = o->q_heads / o->kv_heads;
	float *l = malloc(T * sizeof *l);
	const float scale = 1.0f / sqrtf((float)D);
	for (size_t h = 0; h < o->q_heads; h++) {
		const float *kh = k + h / g * T * D, *vh = v + h / g * T * D;
		for (size_t e = 0; e < o->eval; e++) {
			const float *q = qe + (h * o->eval + e) * D;
			float mx = -INFINITY, sum = 0;
			for (size_t j = 0; j < T; j++) {
				float a = 0;
				for (size_t c = 0; c < D; c++)
					a += q[c] * kh[j * D + c];
				l[j] = a * scale;
				mx = l[j] > mx ? l[j] : mx;
			}
			for (size_t j = 0; j < T; j++)
				sum += l[j] = expf(l[j] - mx);
			float *y = out + (h * o->eval + e) * D;
			memset(y, 0, D * sizeof *y);
			for (size_t j = 0; j < T; j++)
				for (size_t c = 0; c < D; c++)
					y[c] += l[j] / sum * vh[j * D + c];
			if (mass)
				*mass += top_mass(l, T, sum) / (double)(o->q_heads * o->eval);
		}
	}
	free(l);
}

/* ---------------------------------------------------------------- settings */

struct setting {
	char label[64];
	struct kvt_codec_params kp, vp;
};

struct result {
	double bits; /* encoded bits per element, K and V together */
	double err;  /* relative attention-output error */
};

static int encode_decode(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
			 const struct kvt_tensor_desc *d, const void *src,
			 float *out, size_t *bytes)
{
	size_t cap, len, n = (size_t)d->heads * d->tokens * d->dim;
	int rc = kvt_codec_encoded_size(p, kind, d, &cap);
	uint8_t *enc = rc ? NULL : malloc(cap);
	if (!rc && !enc)
		rc = -ENOMEM;
	if (!rc)
		rc = kvt_codec_encode(p, kind, d, src, enc, cap, &len);
	if (!rc)
		rc = kvt_codec_decode_f32(enc, len, out, n * sizeof *out, NULL);
	if (!rc)
		*bytes = len;
	free(enc);
	return rc;
}

static int evaluate(const struct opts *o, const struct data *x,
		    const struct setting *s, struct result *r)
{
	size_t n = (size_t)x->d.heads * x->d.tokens * x->d.dim, kb, vb;
	size_t no = (size_t)o->q_heads * o->eval * o->dim;
	float *k = malloc(n * 4), *v = malloc(n * 4), *out = malloc(no * 4);
	int rc = k && v && out ? 0 : -ENOMEM;
	if (!rc)
		rc = encode_decode(&s->kp, KVT_KIND_KEY, &x->d, x->k16, k, &kb);
	if (!rc)
		rc = encode_decode(&s->vp, KVT_KIND_VALUE, &x->d, x->v16, v, &vb);
	if (!rc) {
		attention(o, x->qe, k, v, out, NULL);
		double num = 0, den = 0;
		for (size_t i = 0; i < no; i++) {
			double e = (double)out[i] - x->ref[i];
			num += e * e;
			den += (double)x->ref[i] * x->ref[i];
		}
		r->bits = 8.0 * (double)(kb + vb) / (2.0 * (double)n);
		r->err = sqrt(num / den);
	}
	free(k), free(v), free(out);
	return rc;
}

static void kivi(struct kvt_codec_params *p, unsigned bits)
{
	kvt_codec_params_init(p, KVT_CODEC_KIVI);
	p->bits = (uint8_t)bits;
	p->residual = 0;
}

static void zip(struct kvt_codec_params *p, unsigned lo, unsigned hi,
		float ratio, const float *scores, int tokenwise)
{
	kvt_codec_params_init(p, KVT_CODEC_ZIPCACHE);
	p->bits = (uint8_t)lo;
	p->high_bits = (uint8_t)hi;
	p->salient_ratio = ratio;
	p->saliency = scores;
	p->zip_tokenwise = (uint8_t)tokenwise;
}

static size_t kv_size(const struct kvt_codec_params *kp,
		      const struct kvt_codec_params *vp,
		      const struct kvt_tensor_desc *d)
{
	size_t a = 0, b = 0;
	kvt_codec_encoded_size(kp, KVT_KIND_KEY, d, &a);
	kvt_codec_encoded_size(vp, KVT_KIND_VALUE, d, &b);
	return a + b;
}

/* Largest salient ratio (in whole tokens) whose K+V size fits the budget. */
static float match_ratio(unsigned lo, unsigned hi, const float *scores,
			 int vtok, const struct kvt_tensor_desc *d, size_t budget)
{
	uint32_t a = 0, b = d->tokens;
	while (a < b) {
		uint32_t m = (a + b + 1) / 2;
		struct kvt_codec_params kp, vp;
		float r = (float)m / (float)d->tokens;
		zip(&kp, lo, hi, r, scores, 0);
		zip(&vp, lo, hi, r, scores, vtok);
		if (kv_size(&kp, &vp, d) <= budget)
			a = m;
		else
			b = m - 1;
	}
	return (float)a / (float)d->tokens;
}

static void add_zip(struct setting *s, int *n, const char *what, unsigned lo,
		    unsigned hi, float ratio, const float *scores, int vtok)
{
	struct setting *t = &s[(*n)++];
	snprintf(t->label, sizeof t->label, "zipcache-%u/%u %s r=%.3f", lo, hi,
		 what, ratio);
	zip(&t->kp, lo, hi, ratio, scores, 0);
	zip(&t->vp, lo, hi, ratio, scores, vtok);
}

static void add_kivi(struct setting *s, int *n, unsigned bits)
{
	struct setting *t = &s[(*n)++];
	snprintf(t->label, sizeof t->label, "kivi-%u (G=32)", bits);
	kivi(&t->kp, bits);
	kivi(&t->vp, bits);
}

struct scores {
	float *exact, *probe, *random;
};

/* Rows: each KIVI setting, then ZipCache matched to its size with exact
 * and probe saliency, random saliency (ablation), and tokenwise values. */
static int build(const struct data *x, const struct scores *sc,
		 struct setting *s)
{
	static const unsigned pairs[][3] = {{2, 2, 4}, {2, 2, 8}, {4, 4, 8}};
	int n = 0;
	for (int i = 0; i < 3; i++) {
		unsigned kb = pairs[i][0], lo = pairs[i][1], hi = pairs[i][2];
		if (i != 1)
			add_kivi(s, &n, kb);
		struct kvt_codec_params kp;
		kivi(&kp, kb);
		size_t budget = kv_size(&kp, &kp, &x->d);
		float r = match_ratio(lo, hi, sc->exact, 0, &x->d, budget);
		float rt = match_ratio(lo, hi, sc->exact, 1, &x->d, budget);
		add_zip(s, &n, "exact ", lo, hi, r, sc->exact, 0);
		add_zip(s, &n, "probe ", lo, hi, r, sc->probe, 0);
		add_zip(s, &n, "random", lo, hi, r, sc->random, 0);
		add_zip(s, &n, "exact V-tokenwise", lo, hi, rt, sc->exact, 1);
	}
	add_zip(s, &n, "no saliency", 2, 4, 0.0f, NULL, 0);
	add_zip(s, &n, "no saliency V-tokenwise", 2, 4, 0.0f, NULL, 1);
	return n;
}

struct ranked {
	float v;
	uint32_t i;
};

static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	return x->v < y->v ? -1 : x->v > y->v;
}

/* Ranks of x (ties get their mean rank). */
static int ranks(const float *x, size_t n, double *r)
{
	struct ranked *s = malloc(n * sizeof *s);
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		s[i] = (struct ranked){x[i], (uint32_t)i};
	qsort(s, n, sizeof *s, ranked_cmp);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i; j < n && s[j].v == s[i].v; j++)
			;
		for (size_t k = i; k < j; k++)
			r[s[k].i] = (double)(i + j - 1) / 2.0;
	}
	free(s);
	return 0;
}

static int spearman(const float *a, const float *b, size_t n, double *rho)
{
	double *ra = malloc(n * sizeof *ra), *rb = malloc(n * sizeof *rb);
	int rc = ra && rb ? ranks(a, n, ra) : -ENOMEM;
	rc = rc ? rc : ranks(b, n, rb);
	if (rc == 0) {
		double ma = 0, mb = 0, ab = 0, aa = 0, bb = 0;
		for (size_t i = 0; i < n; i++)
			ma += ra[i] / (double)n, mb += rb[i] / (double)n;
		for (size_t i = 0; i < n; i++) {
			ab += (ra[i] - ma) * (rb[i] - mb);
			aa += (ra[i] - ma) * (ra[i] - ma);
			bb += (rb[i] - mb) * (rb[i] - mb);
		}
		*rho = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
	}
	free(ra), free(rb);
	return rc;
}

/* Exact and probe saliency (timed, compared), and random scores. */
static int get_scores(const struct opts *o, const struct data *x,
		      struct scores *sc)
{
	const size_t T = o->tokens;
	double t0 = bench_now();
	int rc = kvt_zipcache_saliency(x->q, o->q_heads, x->k, o->kv_heads,
				       (uint32_t)T, o->dim, 1.0f, 0, sc->exact);
	double t1 = bench_now();
	rc = rc ? rc : kvt_zipcache_saliency(x->q, o->q_heads, x->k, o->kv_heads,
					     (uint32_t)T, o->dim, o->probe, o->seed,
					     sc->probe);
	double t2 = bench_now(), rho;
	uint64_t s = o->seed + 99;
	for (size_t t = 0; t < T; t++)
		sc->random[t] = bench_uniform(&s);
	rc = rc ? rc : spearman(sc->exact, sc->probe, T, &rho);
	if (rc)
		return rc;
	printf("saliency over %u queries x %u q heads: exact %.2f s, probe %.0f%% %.3f s (%.1fx faster)\n",
	       o->tokens, o->q_heads, t1 - t0, o->probe * 100, t2 - t1,
	       (t1 - t0) / (t2 - t1));
	printf("probe vs exact scores: Spearman rank correlation %.3f\n", rho);
	return 0;
}

static int quality(const struct opts *o, struct data *x)
{
	const size_t T = o->tokens;
	struct scores sc = {malloc(T * 4), malloc(T * 4), malloc(T * 4)};
	int rc = sc.exact && sc.probe && sc.random ? get_scores(o, x, &sc) : -ENOMEM;
	struct setting s_[32];
	int n = rc ? 0 : build(x, &sc, s_);
	if (rc == 0)
		printf("\n%-40s %10s %12s\n", "codec (K and V)", "bits/elem", "attn rel err");
	for (int i = 0; i < n && rc == 0; i++) {
		struct result r;
		rc = evaluate(o, x, &s_[i], &r);
		if (rc == 0)
			printf("%-40s %10.3f %12.5f\n", s_[i].label, r.bits, r.err);
		fflush(stdout);
	}
	free(sc.exact), free(sc.probe), free(sc.random);
	return rc;
}

/* ---------------------------------------------------------------- speed */

static int speed_row(const char *label, const struct kvt_codec_params *p,
		     enum kvt_kv_kind kind, const struct kvt_tensor_desc *d,
		     const uint16_t *src, unsigned reps, double t_memcpy)
{
	size_t n = (size_t)d->heads * d->tokens * d->dim, cap, len = 0;
	int rc = kvt_codec_encoded_size(p, kind, d, &cap);
	if (rc)
		return rc;
	uint8_t *enc = malloc(cap);
	uint16_t *dec = malloc(n * 2);
	if (!enc || !dec) {
		free(enc), free(dec);
		return -ENOMEM;
	}
	double te = 1e30, td = 1e30;
	for (unsigned r = 0; r < reps && rc == 0; r++) {
		double t = bench_now();
		rc = kvt_codec_encode(p, kind, d, src, enc, cap, &len);
		te = fmin(te, bench_now() - t);
		t = bench_now();
		rc = rc ? rc : kvt_codec_decode(enc, len, dec, n * 2, NULL);
		td = fmin(td, bench_now() - t);
	}
	double gb = (double)n * 2 / 1e9;
	if (rc == 0)
		printf("%-26s %-6s %8.2f %7.3f %8.2f %7.3f %7.2f\n", label,
		       kind == KVT_KIND_KEY ? "keys" : "values", gb / te,
		       t_memcpy / te, gb / td, t_memcpy / td,
		       (double)n * 2 / (double)len);
	free(enc), free(dec);
	return rc;
}

static int speed(const struct opts *o)
{
	struct kvt_tensor_desc d = {8, o->tput_tokens, o->dim, KVT_DTYPE_F16};
	size_t n = (size_t)8 * o->tput_tokens * o->dim;
	float *f = malloc(n * 4), *sc = malloc(o->tput_tokens * 4);
	uint16_t *src = malloc(n * 2), *dst = malloc(n * 2);
	if (!f || !sc || !src || !dst)
		return -ENOMEM;
	bench_fill_keys(f, 8, o->tput_tokens, o->dim, o->seed);
	kvt_from_f32(KVT_DTYPE_F16, f, src, n);
	uint64_t s = o->seed;
	for (size_t t = 0; t < o->tput_tokens; t++)
		sc[t] = bench_uniform(&s);
	memset(dst, 1, n * 2);
	double tm = bench_best_memcpy(dst, src, n * 2, o->reps * 3);
	printf("\nthroughput: [8][%u][%u] fp16, %.1f MiB; memcpy %.2f GB/s (one core)\n",
	       o->tput_tokens, o->dim, (double)n * 2 / (1 << 20), n * 2 / 1e9 / tm);
	printf("%-26s %-6s %8s %7s %8s %7s %7s\n", "codec", "kind", "enc GB/s",
	       "/memcpy", "dec GB/s", "/memcpy", "ratio");
	struct kvt_codec_params p;
	int rc = 0;
	for (int kind = 0; kind < 2 && rc == 0; kind++) {
		kivi(&p, 2);
		rc = speed_row("kivi-2", &p, kind, &d, src, o->reps, tm);
		zip(&p, 2, 4, 0.2f, sc, 0);
		rc = rc ? rc : speed_row("zipcache-2/4 r=0.2", &p, kind, &d, src, o->reps, tm);
		zip(&p, 2, 4, 0.2f, sc, 1);
		rc = rc ? rc : speed_row("zipcache-2/4 r=0.2 tokenw", &p, kind, &d, src, o->reps, tm);
	}
	free(f), free(sc), free(src), free(dst);
	return rc;
}

static int alloc_data(const struct opts *o, struct data *x)
{
	size_t n = (size_t)o->kv_heads * o->tokens * o->dim;
	x->d = (struct kvt_tensor_desc){o->kv_heads, o->tokens, o->dim, KVT_DTYPE_F16};
	x->k16 = malloc(n * 2), x->v16 = malloc(n * 2);
	x->k = malloc(n * 4), x->v = malloc(n * 4);
	x->q = malloc((size_t)o->q_heads * o->tokens * o->dim * 4);
	x->qe = malloc((size_t)o->q_heads * o->eval * o->dim * 4);
	x->ref = malloc((size_t)o->q_heads * o->eval * o->dim * 4);
	return x->k16 && x->v16 && x->k && x->v && x->q && x->qe && x->ref ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- real tensors */

/* A 3-D float .npy as fp32; shape into sh. */
static int read_npy(const char *path, uint64_t sh[3], float **out)
{
	struct kvt_npy h;
	void *data;
	char msg[256] = "";
	int rc = kvt_npy_read(path, &h, &data, msg, sizeof msg);
	if (rc == 0 && (h.ndim != 3 || !h.shape[0] || !h.shape[1] || !h.shape[2] ||
			h.shape[1] > UINT32_MAX || h.shape[2] > KVT_MAX_HEAD_DIM)) {
		snprintf(msg, sizeof msg, "need a 3-D array [heads, tokens, dim]");
		free(data);
		rc = KVT_ESHAPE;
	}
	if (rc) {
		fprintf(stderr, "bench_zipcache: %s: %s\n", path,
			msg[0] ? msg : kvt_strerror(rc));
		return rc;
	}
	size_t n = h.shape[0] * h.shape[1] * h.shape[2];
	if ((*out = malloc(n * sizeof **out)))
		kvt_to_f32(h.dtype, data, *out, n);
	free(data);
	memcpy(sh, h.shape, 3 * sizeof *sh);
	return *out ? 0 : -ENOMEM;
}

static int shapes_ok(const uint64_t k[3], const uint64_t v[3], const uint64_t q[3])
{
	if (memcmp(k, v, 3 * sizeof *k) || q[1] != k[1] || q[2] != k[2] ||
	    q[0] % k[0]) {
		fprintf(stderr, "bench_zipcache: K and V must have one shape, Q its "
				"tokens and dim and a multiple of its heads\n");
		return 0;
	}
	return 1;
}

static int alloc_data(const struct opts *o, struct data *x);

/* Loads one layer's Q, K, V; sets the sizes in *o and fills *x. */
static int load_real(struct opts *o, struct data *x)
{
	uint64_t ks[3], vs[3], qs[3];
	float *k = NULL, *v = NULL, *q = NULL;
	int rc = read_npy(o->kpath, ks, &k);
	rc = rc ? rc : read_npy(o->vpath, vs, &v);
	rc = rc ? rc : read_npy(o->qpath, qs, &q);
	if (rc == 0 && !shapes_ok(ks, vs, qs))
		rc = KVT_ESHAPE;
	if (rc == 0) {
		o->kv_heads = (unsigned)ks[0], o->q_heads = (unsigned)qs[0];
		o->tokens = (unsigned)ks[1], o->dim = (unsigned)ks[2];
		o->eval = o->eval < o->tokens ? o->eval : o->tokens;
		rc = alloc_data(o, x);
	}
	if (rc == 0) {
		size_t n = ks[0] * ks[1] * ks[2], T = o->tokens, D = o->dim;
		kvt_from_f32(KVT_DTYPE_F16, k, x->k16, n);
		kvt_from_f32(KVT_DTYPE_F16, v, x->v16, n);
		kvt_to_f32(KVT_DTYPE_F16, x->k16, x->k, n);
		kvt_to_f32(KVT_DTYPE_F16, x->v16, x->v, n);
		memcpy(x->q, q, qs[0] * T * D * sizeof *q);
		for (size_t h = 0; h < o->q_heads; h++)
			memcpy(x->qe + h * o->eval * D, q + (h * T + T - o->eval) * D,
			       o->eval * D * sizeof *q);
	}
	free(k), free(v), free(q);
	return rc;
}

static void free_data(struct data *x)
{
	free(x->k16), free(x->v16), free(x->k), free(x->v);
	free(x->q), free(x->qe), free(x->ref);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct data x;
	if (parse(argc, argv, &o))
		return 2;

	memset(&x, 0, sizeof x);
	int rc = o.kpath ? load_real(&o, &x) : alloc_data(&o, &x);
	if (rc == 0) {
		double mass = 0;
		if (!o.kpath)
			fill(&o, &x);
		attention(&o, x.qe, x.k, x.v, x.ref, &mass);
		printf("quality: %s K/V [%u][%u][%u] fp16, %u q heads, %u %s queries;\n"
		       "top 10%% of tokens hold %.1f%% of the attention (mean)\n",
		       o.kpath ? "real" : "synthetic", o.kv_heads, o.tokens, o.dim,
		       o.q_heads, o.eval, o.kpath ? "last" : "held-out", mass * 100);
		rc = quality(&o, &x);
	}
	free_data(&x);
	rc = rc ? rc : speed(&o);
	if (rc) {
		fprintf(stderr, "bench_zipcache: %s\n", kvt_strerror(rc));
		return 1;
	}
	return 0;
}
