/*
 * bench_kernels - the GPU reload path and the KIVI kernels, each next to
 * its baseline measured in the same run (needs a CUDA device):
 *  1. reload of N scattered blocks from mapped pinned host memory with one
 *     gather launch, vs one large pinned cudaMemcpy of the same bytes (the
 *     link rate) and vs one cudaMemcpyAsync per block;
 *  2. fused reload of 2-bit KIVI blocks (link carries compressed bytes,
 *     decoded on the GPU), in fp16-equivalent GB/s, vs the link rate;
 *  3. KIVI quantize and dequantize of N device blocks, GB/s of fp16 data,
 *     vs a device-to-device cudaMemcpy of the same raw bytes;
 *  4. fused reload of ZipCache blocks (2/4 bits, 20% salient tokens,
 *     encoded on the CPU), fp16-equivalent GB/s vs the link rate.
 * Times are the best of --reps runs, taken with CUDA events.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "half.h"
#include "kvt_kernels.h"
#include "kvtier/codec.h"

#define DISTINCT 64 /* distinct block contents, replicated */

struct opts {
	unsigned blocks, heads, tokens, dim, bits, group, reps;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_kernels [--blocks N] [--heads H] [--tokens T] [--dim D]\n"
		"                     [--bits B] [--group G] [--reps R]\n"
		"GPU reload and KIVI kernel throughput next to baselines measured in\n"
		"the same run: one large pinned H2D cudaMemcpy (link rate), one\n"
		"cudaMemcpyAsync per block, and a device-to-device copy.\n"
		"Defaults: 16384 blocks of 8 heads x 32 tokens x 64 dims fp16 (64 KiB,\n"
		"1 GiB in all), KIVI 2 bits, group = tokens, best of 5 reps.\n"
		"Exits with status 2 and a message when no CUDA device is usable.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"blocks", 1, 0, 'n'}, {"heads", 1, 0, 'H'}, {"tokens", 1, 0, 'T'},
		{"dim", 1, 0, 'D'},    {"bits", 1, 0, 'b'},  {"group", 1, 0, 'g'},
		{"reps", 1, 0, 'r'},   {"help", 0, 0, 'h'},  {0, 0, 0, 0},
	};
	*o = (struct opts){16384, 8, 32, 64, 2, 0, 5};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'n': o->blocks = (unsigned)atoi(optarg); break;
		case 'H': o->heads = (unsigned)atoi(optarg); break;
		case 'T': o->tokens = (unsigned)atoi(optarg); break;
		case 'D': o->dim = (unsigned)atoi(optarg); break;
		case 'b': o->bits = (unsigned)atoi(optarg); break;
		case 'g': o->group = (unsigned)atoi(optarg); break;
		case 'r': o->reps = (unsigned)atoi(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!o->group)
		o->group = o->tokens;
	if (!o->blocks || !o->heads || !o->tokens || !o->dim || !o->reps) {
		fprintf(stderr, "bench_kernels: sizes must be positive\n");
		return -1;
	}
	return 0;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_kernels: %s: %s\n", what, kvt_strerror(rc));
	exit(1);
}

#define CHECK(what, call)                  \
	do {                               \
		int rc_ = (call);          \
		if (rc_)                   \
			die(what, rc_);    \
	} while (0)

/* Events and a stream: everything is timed on s. */
struct timer {
	struct kvt_stream *s;
	struct kvt_gpu_event *a, *b;
};

typedef int (*work_fn)(void *ctx, struct kvt_stream *s);

/* Best seconds of reps runs of fn (after one warm-up run). */
static double best_of(struct timer *t, unsigned reps, work_fn fn, void *ctx)
{
	double best = 1e30;
	CHECK("warm-up", fn(ctx, t->s));
	CHECK("sync", kvt_stream_sync(t->s));
	for (unsigned r = 0; r < reps; r++) {
		float ms;
		CHECK("event", kvt_gpu_event_record(t->a, t->s));
		CHECK("launch", fn(ctx, t->s));
		CHECK("event", kvt_gpu_event_record(t->b, t->s));
		CHECK("sync", kvt_gpu_event_sync(t->b));
		CHECK("elapsed", kvt_gpu_event_elapsed(t->a, t->b, &ms));
		if (ms * 1e-3 < best)
			best = ms * 1e-3;
	}
	return best;
}

/* ---------------------------------------------------------------- work */

struct copy_ctx {
	void *dst;
	const void *src;
	size_t len;
};

static int do_copy(void *ctx, struct kvt_stream *s)
{
	struct copy_ctx *c = ctx;
	return kvt_gpu_copy_async(c->dst, c->src, c->len, s);
}

struct per_block_ctx {
	const struct kvt_gpu_item *items; /* host view of the table */
	uint32_t n;
};

static int do_per_block(void *ctx, struct kvt_stream *s)
{
	struct per_block_ctx *c = ctx;
	for (uint32_t i = 0; i < c->n; i++) {
		int rc = kvt_gpu_copy_async(c->items[i].dst, c->items[i].src,
					    c->items[i].len, s);
		if (rc)
			return rc;
	}
	return 0;
}

struct batch_ctx {
	struct kvt_gpu_batch *b;
	const struct kvt_kivi_geom *g;
	uint32_t n;
	const struct kvt_zip_geom *z;
	int op; /* 0 gather, 1 fused reload, 2 quantize, 3 dequantize, 4 ZipCache */
};

static int do_batch(void *ctx, struct kvt_stream *s)
{
	struct batch_ctx *c = ctx;
	switch (c->op) {
	case 0: return kvt_gpu_gather(c->b, c->n, s);
	case 1: return kvt_kivi_gather_dequantize(c->g, c->b, c->n, s);
	case 2: return kvt_kivi_quantize(c->g, c->b, c->n, s);
	case 3: return kvt_kivi_dequantize(c->g, c->b, c->n, s);
	default: return kvt_zip_dequantize(c->z, c->b, c->n, s);
	}
}

/* ---------------------------------------------------------------- setup */

/* Scattered order: item i reads block perm(i) and writes slot perm2(i). */
static uint32_t scatter(uint32_t i, uint32_t n, uint32_t mul)
{
	return (uint32_t)(((uint64_t)i * mul + 12345u) % n);
}

static uint32_t coprime(uint32_t n, uint32_t start)
{
	uint32_t m = start;
	for (;;) {
		uint32_t a = m, b = n;
		while (b) {
			uint32_t r = a % b;
			a = b;
			b = r;
		}
		if (a == 1)
			return m;
		m++;
	}
}

static void fill_items(struct kvt_gpu_item *it, uint32_t n, const uint8_t *src,
		       size_t src_len, uint8_t *dst, size_t dst_len, size_t len)
{
	uint32_t a = coprime(n, 40503u % n + 1), b = coprime(n, 7919u % n + 1);
	for (uint32_t i = 0; i < n; i++)
		it[i] = (struct kvt_gpu_item){src + scatter(i, n, a) * src_len,
					      dst + scatter(i, n, b) * dst_len, len};
}

/* DISTINCT raw fp16 blocks with key-like channels, replicated n times into
 * the device buffer dev. */
static void make_raw(const struct kvt_kivi_geom *g, size_t raw, uint32_t n,
		     uint8_t *dev, struct kvt_stream *s)
{
	size_t elems = raw / 2;
	float *x = malloc(elems * sizeof *x);
	uint8_t *h;
	CHECK("host alloc", kvt_gpu_host_alloc(DISTINCT * raw, (void **)&h));
	for (uint32_t i = 0; i < DISTINCT; i++) {
		bench_fill_keys(x, 2 * (size_t)g->heads, g->tokens, g->dim, i + 1);
		kvt_from_f32(KVT_DTYPE_F16, x, h + i * raw, elems);
	}
	for (uint32_t i = 0; i < n; i += DISTINCT) {
		uint32_t c = n - i < DISTINCT ? n - i : DISTINCT;
		CHECK("copy", kvt_gpu_copy_async(dev + (size_t)i * raw, h, c * raw, s));
	}
	CHECK("sync", kvt_stream_sync(s));
	kvt_gpu_host_free(h);
	free(x);
}

/* ---------------------------------------------------------------- runs */

struct bufs {
	uint8_t *host, *host_dev; /* pinned mapped, n * raw */
	uint8_t *dev_a, *dev_b;   /* device, n * raw each */
	struct kvt_gpu_batch *batch;
};

static double reload_raw(const struct opts *o, struct timer *t, struct bufs *b,
			 size_t raw, double *link)
{
	const size_t total = (size_t)o->blocks * raw;
	struct copy_ctx big = {b->dev_a, b->host, total};
	*link = total / best_of(t, o->reps, do_copy, &big) / 1e9;
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b->batch);
	/* per-block copies take host addresses; the gather the device view */
	fill_items(it, o->blocks, b->host, raw, b->dev_a, raw, raw);
	struct per_block_ctx pb = {it, o->blocks};
	double per_block = total / best_of(t, o->reps, do_per_block, &pb) / 1e9;
	fill_items(it, o->blocks, b->host_dev, raw, b->dev_a, raw, raw);
	struct batch_ctx g = {b->batch, NULL, o->blocks, NULL, 0};
	double gather = total / best_of(t, o->reps, do_batch, &g) / 1e9;
	/* One spot check: the bytes of item 0 arrived. */
	uint8_t *chk = malloc(raw);
	CHECK("copy", kvt_gpu_copy_async(chk, it[0].dst, raw, t->s));
	CHECK("sync", kvt_stream_sync(t->s));
	size_t off = (const uint8_t *)it[0].src - b->host_dev;
	if (memcmp(chk, b->host + off, raw))
		die("gather check", KVT_ECORRUPT);
	free(chk);
	printf("reload %u scattered blocks of %zu KiB (%.2f GiB):\n", o->blocks,
	       raw >> 10, total / 1073741824.0);
	printf("  one large pinned cudaMemcpy H2D  %8.2f GB/s  (link rate)\n", *link);
	printf("  one cudaMemcpyAsync per block    %8.2f GB/s  %.2fx link\n",
	       per_block, per_block / *link);
	printf("  one gather launch (mapped host)  %8.2f GB/s  %.2fx link  (goal >= 0.90)\n",
	       gather, gather / *link);
	return gather;
}

static void quantized(const struct opts *o, struct timer *t, struct bufs *b,
		      const struct kvt_kivi_geom *g, size_t raw, size_t enc,
		      double link)
{
	const size_t total = (size_t)o->blocks * raw;
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b->batch);
	/* dev_a holds raw blocks; quantize into dev_b (enc-sized slots). */
	make_raw(g, raw, o->blocks, b->dev_a, t->s);
	fill_items(it, o->blocks, b->dev_a, raw, b->dev_b, enc, 0);
	struct batch_ctx q = {b->batch, g, o->blocks, NULL, 2};
	double quant = total / best_of(t, o->reps, do_batch, &q) / 1e9;
	/* Encoded blocks to pinned host for the fused reload below. */
	CHECK("copy", kvt_gpu_copy_async(b->host, b->dev_b, (size_t)o->blocks * enc, t->s));
	CHECK("sync", kvt_stream_sync(t->s));
	/* dequantize dev_b -> dev_a */
	fill_items(it, o->blocks, b->dev_b, enc, b->dev_a, raw, enc);
	struct batch_ctx dq = {b->batch, g, o->blocks, NULL, 3};
	double dequant = total / best_of(t, o->reps, do_batch, &dq) / 1e9;
	const int *res = kvt_gpu_batch_results(b->batch);
	for (uint32_t i = 0; i < o->blocks; i++)
		if (res[i])
			die("dequantize", res[i]);
	struct copy_ctx d2d = {b->dev_b, b->dev_a, total};
	double copy = total / best_of(t, o->reps, do_copy, &d2d) / 1e9;
	fill_items(it, o->blocks, b->host_dev, enc, b->dev_a, raw, enc);
	struct batch_ctx f = {b->batch, g, o->blocks, NULL, 1};
	double secs = best_of(t, o->reps, do_batch, &f);
	for (uint32_t i = 0; i < o->blocks; i++)
		if (res[i])
			die("fused reload", res[i]);
	double fp16 = total / secs / 1e9;
	double wire = (double)o->blocks * enc / secs / 1e9;
	printf("KIVI %u-bit blocks (%zu bytes encoded, %.2fx smaller than fp16):\n",
	       g->bits, enc, (double)raw / enc);
	printf("  fused reload, fp16-equivalent    %8.2f GB/s  %.2fx link  (goal >= 4)\n",
	       fp16, fp16 / link);
	printf("  fused reload, bytes on the link  %8.2f GB/s  %.2fx link\n",
	       wire, wire / link);
	printf("  device-to-device cudaMemcpy      %8.2f GB/s  (bytes copied)\n", copy);
	printf("  quantize (fp16 in)               %8.2f GB/s  %.2fx d2d  (goal >= 0.5)\n",
	       quant, quant / copy);
	printf("  dequantize (fp16 out)            %8.2f GB/s  %.2fx d2d  (goal >= 0.5)\n",
	       dequant, dequant / copy);
}

/* One ZipCache block (K stream then V stream) of raw fp16 data x; *len. */
static uint8_t *zip_block(const struct kvt_zip_geom *z, const uint16_t *x,
			  const float *scores, size_t *len)
{
	struct kvt_codec_params p;
	struct kvt_tensor_desc d = {z->heads, z->tokens, z->dim, KVT_DTYPE_F16};
	size_t kn, vn, kw, vw, half = (size_t)z->heads * z->tokens * z->dim;
	kvt_codec_params_init(&p, KVT_CODEC_ZIPCACHE);
	p.bits = z->bits;
	p.high_bits = z->high_bits;
	p.saliency = scores;
	CHECK("zipcache size", kvt_codec_encoded_size(&p, KVT_KIND_KEY, &d, &kn));
	CHECK("zipcache size", kvt_codec_encoded_size(&p, KVT_KIND_VALUE, &d, &vn));
	uint8_t *out = malloc(kn + vn);
	if (!out)
		die("memory", -ENOMEM);
	CHECK("zipcache encode", kvt_codec_encode(&p, KVT_KIND_KEY, &d, x, out, kn, &kw));
	CHECK("zipcache encode",
	      kvt_codec_encode(&p, KVT_KIND_VALUE, &d, x + half, out + kn, vn, &vw));
	*len = kn + vn;
	return out;
}

static void zipcache(const struct opts *o, struct timer *t, struct bufs *b,
		     size_t raw, double link)
{
	const struct kvt_zip_geom z = {o->heads, o->tokens, o->dim, KVT_DTYPE_F16, 2, 4};
	const size_t elems = raw / 2;
	float *x = malloc(elems * sizeof *x), *scores = malloc(o->tokens * sizeof *scores);
	uint16_t *h = malloc(raw);
	size_t len = 0, stride = 0;
	uint64_t seed = 99;
	for (uint32_t i = 0; i < DISTINCT; i++) {
		bench_fill_keys(x, 2 * (size_t)o->heads, o->tokens, o->dim, 1000 + i);
		kvt_from_f32(KVT_DTYPE_F16, x, h, elems);
		for (uint32_t k = 0; k < o->tokens; k++)
			scores[k] = bench_uniform(&seed);
		uint8_t *e = zip_block(&z, h, scores, &len);
		stride = (len + 15) / 16 * 16;
		for (uint32_t j = i; j < o->blocks; j += DISTINCT)
			memcpy(b->host + (size_t)j * stride, e, len);
		free(e);
	}
	free(x), free(scores), free(h);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b->batch);
	fill_items(it, o->blocks, b->host_dev, stride, b->dev_a, raw, len);
	struct batch_ctx zc = {b->batch, NULL, o->blocks, &z, 4};
	double secs = best_of(t, o->reps, do_batch, &zc);
	const int *res = kvt_gpu_batch_results(b->batch);
	for (uint32_t i = 0; i < o->blocks; i++)
		if (res[i])
			die("ZipCache reload", res[i]);
	double fp16 = (double)o->blocks * raw / secs / 1e9;
	double wire = (double)o->blocks * len / secs / 1e9;
	printf("ZipCache 2/4-bit blocks, 20%% salient (%zu bytes encoded, %.2fx smaller):\n",
	       len, (double)raw / len);
	printf("  fused reload, fp16-equivalent    %8.2f GB/s  %.2fx link\n", fp16, fp16 / link);
	printf("  fused reload, bytes on the link  %8.2f GB/s  %.2fx link\n", wire, wire / link);
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 1;
	if (kvt_gpu_available()) {
		fprintf(stderr, "bench_kernels: no usable CUDA device (or a build "
				"without CUDA): nothing measured\n");
		return 2;
	}
	struct kvt_kivi_geom g = {o.heads, o.tokens, o.dim, KVT_DTYPE_F16,
				  (uint8_t)o.bits, (uint16_t)o.group, 0};
	size_t raw, enc;
	CHECK("KIVI geometry", kvt_kivi_geom_sizes(&g, &raw, NULL, &enc));
	const size_t total = (size_t)o.blocks * raw;
	struct timer t;
	struct bufs b;
	CHECK("stream", kvt_stream_create(&t.s));
	CHECK("event", kvt_gpu_event_create(&t.a));
	CHECK("event", kvt_gpu_event_create(&t.b));
	CHECK("pinned host memory", kvt_gpu_host_alloc(total, (void **)&b.host));
	CHECK("device view", kvt_gpu_host_device_ptr(b.host, (void **)&b.host_dev));
	CHECK("device memory", kvt_gpu_malloc(total, (void **)&b.dev_a));
	CHECK("device memory", kvt_gpu_malloc(total, (void **)&b.dev_b));
	CHECK("batch", kvt_gpu_batch_create(o.blocks, &b.batch));
	memset(b.host, 0x3c, total);
	for (size_t i = 0; i < total; i += 4093)
		b.host[i] = (uint8_t)(i >> 12);
	double link;
	reload_raw(&o, &t, &b, raw, &link);
	quantized(&o, &t, &b, &g, raw, enc, link);
	zipcache(&o, &t, &b, raw, link);
	kvt_gpu_batch_free(b.batch);
	kvt_gpu_free(b.dev_a);
	kvt_gpu_free(b.dev_b);
	kvt_gpu_host_free(b.host);
	kvt_gpu_event_destroy(t.a);
	kvt_gpu_event_destroy(t.b);
	kvt_stream_destroy(t.s);
	return 0;
}
