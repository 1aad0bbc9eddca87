/*
 * bench_append - kvt_cache_append_device (K/V in GPU memory, full blocks
 * assembled on the GPU, KIVI-cold blocks quantized there and copied out
 * encoded) next to kvt_cache_append of the same tokens from host memory
 * and a plain device-to-host copy of the same bytes into pinned memory,
 * measured in the same run. Reported: GB/s of raw K/V appended (median of
 * the repetitions) and the ratios. Without a GPU tier (a build without
 * CUDA, no usable GPU) it says so and exits 0.
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
#include "kvtier/kvtier.h"

struct opts {
	uint32_t tokens, chunk, layers, reps, recent;
	enum kvt_codec_id codec;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_append [--tokens N] [--chunk C] [--layers L] [--codec kivi|raw]\n"
		"                    [--recent R] [--reps K]\n"
		"Appends N tokens (default 4096) to each of L layers (default 4) in calls\n"
		"of C tokens (default 256) of 8 kv heads x 128 dims fp16 (16-token blocks),\n"
		"cold codec KIVI 2-bit (default) or raw, R recent tokens kept raw\n"
		"(default 128): kvt_cache_append_device from GPU memory vs\n"
		"kvt_cache_append from host memory vs a device-to-host copy of the\n"
		"same bytes. K repetitions (default 3), median reported. Needs a GPU.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"tokens", 1, 0, 'n'}, {"chunk", 1, 0, 'c'}, {"layers", 1, 0, 'l'},
		{"codec", 1, 0, 'k'},  {"recent", 1, 0, 'r'}, {"reps", 1, 0, 'p'},
		{"help", 0, 0, 'h'},   {0, 0, 0, 0}};
	*o = (struct opts){4096, 256, 4, 3, 128, KVT_CODEC_KIVI};
	for (int c; (c = getopt_long(argc, argv, "n:c:l:k:r:p:h", lo, NULL)) != -1;) {
		if (c == 'n')
			o->tokens = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'c')
			o->chunk = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'l')
			o->layers = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'r')
			o->recent = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'p')
			o->reps = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'k' && !kvt_codec_from_name(optarg, &o->codec) &&
			 o->codec != KVT_CODEC_ZIPCACHE) /* kivi or raw */
			continue;
		else if (c == 'h') {
			usage(stdout);
			exit(0);
		} else {
			usage(stderr);
			return -1;
		}
	}
	if (o->chunk < 1 || o->chunk > o->tokens || o->tokens > (1u << 20) ||
	    o->layers < 1 || o->layers > 64 || o->reps < 1 || o->reps > 100) {
		fprintf(stderr, "bench_append: 1 <= --chunk <= --tokens <= 1048576, "
				"--layers 1..64, --reps 1..100\n");
		return -1;
	}
	return 0;
}


struct ctx {
	struct opts o;
	struct kvt_store *st;
	struct kvt_cache_config cfg;
	struct kvt_stream *stream;
	uint16_t *k, *v;     /* host chunk */
	void *kd, *vd;       /* the same chunk on the device */
	void *pinned;        /* d2h target, 2 * chunk_bytes */
	size_t chunk_bytes;  /* bytes of K (or V) of one chunk */
};

static int fill(struct ctx *x)
{
	const size_t n = (size_t)8 * x->o.chunk * 128;
	float *f = malloc(n * sizeof *f);
	x->chunk_bytes = n * 2;
	x->k = malloc(x->chunk_bytes);
	x->v = malloc(x->chunk_bytes);
	if (!f || !x->k || !x->v)
		return -ENOMEM;
	bench_fill_keys(f, 8, x->o.chunk, 128, 1);
	for (size_t i = 0; i < n; i++)
		x->k[i] = kvt_f32_to_f16(f[i]);
	bench_fill_keys(f, 8, x->o.chunk, 128, 2);
	for (size_t i = 0; i < n; i++)
		x->v[i] = kvt_f32_to_f16(f[i] * 0.5f);
	free(f);
	int rc = kvt_gpu_malloc(x->chunk_bytes, &x->kd);
	rc = rc ? rc : kvt_gpu_malloc(x->chunk_bytes, &x->vd);
	rc = rc ? rc : kvt_gpu_host_alloc(2 * x->chunk_bytes, &x->pinned);
	rc = rc ? rc : kvt_gpu_copy_async(x->kd, x->k, x->chunk_bytes, NULL);
	rc = rc ? rc : kvt_gpu_copy_async(x->vd, x->v, x->chunk_bytes, NULL);
	return rc ? rc : kvt_stream_sync(NULL);
}

enum mode { DEVICE, HOST, COPY };

/* One pass: every layer gets o.tokens tokens; seconds into *secs. */
static int pass(struct ctx *x, enum mode m, uint32_t rep, double *secs)
{
	char name[32];
	struct kvt_cache *c = NULL;
	int rc = 0;
	snprintf(name, sizeof name, "bench-%d-%u", (int)m, rep);
	if (m != COPY && (rc = kvt_cache_create(x->st, name, &x->cfg, &c)))
		return rc;
	double t0 = bench_now();
	for (uint32_t l = 0; l < x->o.layers && rc == 0; l++)
		for (uint32_t t = 0; t < x->o.tokens && rc == 0; t += x->o.chunk) {
			uint32_t n = x->o.tokens - t < x->o.chunk ? x->o.tokens - t : x->o.chunk;
			size_t len = x->chunk_bytes / x->o.chunk * n;
			if (m == DEVICE)
				rc = kvt_cache_append_device(c, l, n, x->kd, x->vd, x->stream);
			else if (m == HOST)
				rc = kvt_cache_append(c, l, n, x->k, x->v);
			else {
				rc = kvt_gpu_copy_async(x->pinned, x->kd, len, x->stream);
				rc = rc ? rc : kvt_gpu_copy_async((uint8_t *)x->pinned + len,
								  x->vd, len, x->stream);
				rc = rc ? rc : kvt_stream_sync(x->stream);
			}
		}
	*secs = bench_now() - t0;
	kvt_cache_close(c);
	if (m != COPY)
		kvt_cache_drop(x->st, name);
	return rc;
}

static int run(struct ctx *x)
{
	static const char *label[] = {
		"kvt_cache_append_device (GPU memory)",
		"kvt_cache_append (host memory)",
		"device-to-host copy (pinned)"};
	const double raw = 2.0 * x->chunk_bytes / x->o.chunk * x->o.tokens * x->o.layers;
	double gbs[3];
	double *t = malloc(x->o.reps * sizeof *t);
	if (!t)
		return -ENOMEM;
	for (int m = DEVICE; m <= COPY; m++) {
		double warm;
		int rc = pass(x, (enum mode)m, 1000, &warm); /* warm up */
		for (uint32_t r = 0; rc == 0 && r < x->o.reps; r++)
			rc = pass(x, (enum mode)m, r, &t[r]);
		if (rc) {
			fprintf(stderr, "bench_append: %s: %s\n", label[m], kvt_strerror(rc));
			free(t);
			return rc;
		}
		gbs[m] = raw / bench_median(t, x->o.reps) / 1e9;
		printf("  %-40s %8.2f GB/s of raw K/V\n", label[m], gbs[m]);
	}
	free(t);
	printf("  append_device / append (host):         %8.2fx\n", gbs[DEVICE] / gbs[HOST]);
	printf("  append_device / device-to-host copy:   %8.2fx\n", gbs[DEVICE] / gbs[COPY]);
	return 0;
}

static int setup(struct ctx *x)
{
	struct kvt_store_config sc;
	struct kvt_stats s;
	kvt_store_config_init(&sc);
	sc.host_bytes = 8ull << 30;
	sc.gpu_bytes = 2ull << 30;
	int rc = kvt_store_open(&sc, &x->st);
	if (rc)
		return rc;
	if ((rc = kvt_store_stats(x->st, &s)) || !s.tier[KVT_TIER_GPU].present)
		return rc ? rc : KVT_ENOGPU;
	kvt_cache_config_init(&x->cfg);
	x->cfg.shape = (struct kvt_shape){x->o.layers, 8, 128, 16, KVT_DTYPE_F16};
	x->cfg.recent_tokens = x->o.recent;
	if (x->o.codec == KVT_CODEC_KIVI)
		kvt_codec_params_init(&x->cfg.cold, KVT_CODEC_KIVI);
	rc = kvt_stream_create(&x->stream);
	return rc ? rc : fill(x);
}

static void teardown(struct ctx *x)
{
	kvt_gpu_free(x->kd);
	kvt_gpu_free(x->vd);
	kvt_gpu_host_free(x->pinned);
	kvt_stream_destroy(x->stream);
	kvt_store_close(x->st);
	free(x->k);
	free(x->v);
}

int main(int argc, char **argv)
{
	struct ctx x;
	memset(&x, 0, sizeof x);
	if (parse(argc, argv, &x.o))
		return 2;
	int rc = setup(&x);
	if (rc == KVT_ENOGPU) {
		printf("bench_append: no GPU tier (a build without CUDA or no usable GPU): "
		       "nothing to measure\n");
		teardown(&x);
		return 0;
	}
	if (rc == 0) {
		printf("bench_append: %u layers x %u tokens in calls of %u, 8x16x128 fp16 "
		       "blocks, cold %s, %u recent tokens, median of %u\n",
		       x.o.layers, x.o.tokens, x.o.chunk,
		       x.o.codec == KVT_CODEC_KIVI ? "KIVI 2-bit" : "raw", x.o.recent,
		       x.o.reps);
		rc = run(&x);
	}
	if (rc)
		fprintf(stderr, "bench_append: %s\n", kvt_strerror(rc));
	teardown(&x);
	return rc ? 1 : 0;
}
