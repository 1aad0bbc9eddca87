/*
 * bench_reload - kvt_cache_reload of many blocks of one layer (request,
 * then wait), next to kvt_cache_read_block of the same blocks one by one
 * and a plain memcpy of the same raw bytes, measured in the same run.
 * Without a GPU tier the reload decodes on the CPU into host memory; with
 * one (--gpu, on a machine with a GPU) the GPU budget holds half the
 * blocks and the two halves are reloaded in turn, so each reload moves
 * its blocks over the link (and evicts the other half). Reported: GB/s of
 * raw blocks delivered, median of the repetitions, and the ratios.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "half.h"
#include "kvtier/codec.h"
#include "kvtier/kvtier.h"

struct opts {
	uint32_t blocks, reps;
	enum kvt_codec_id codec;
	int gpu;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_reload [--blocks N] [--codec raw|kivi|zip] [--reps R] [--gpu]\n"
		"kvt_cache_reload of N blocks (8 kv heads x 16 tokens x 128 dims fp16,\n"
		"64 KiB raw; default 1024) vs kvt_cache_read_block per block vs memcpy.\n"
		"--codec: how the blocks are stored (default kivi, 2 bits); --reps:\n"
		"repetitions, median reported (default 5); --gpu: a GPU tier holding\n"
		"half the blocks, halves reloaded in turn (needs a GPU).\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {{"blocks", 1, 0, 'b'}, {"codec", 1, 0, 'c'},
					   {"reps", 1, 0, 'r'}, {"gpu", 0, 0, 'g'},
					   {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
	*o = (struct opts){1024, 5, KVT_CODEC_KIVI, 0};
	for (int c; (c = getopt_long(argc, argv, "b:c:r:gh", lo, NULL)) != -1;) {
		if (c == 'b')
			o->blocks = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'r')
			o->reps = (uint32_t)strtoul(optarg, NULL, 10);
		else if (c == 'g')
			o->gpu = 1;
		else if (c == 'c' &&
			 !kvt_codec_from_name(strcmp(optarg, "zip") ? optarg : "zipcache",
					      &o->codec))
			continue;
		else if (c == 'h') {
			usage(stdout);
			exit(0);
		} else {
			usage(stderr);
			return -1;
		}
	}
	if (o->blocks < 2 || o->blocks > 65536 || o->reps < 1 || o->reps > 1000) {
		fprintf(stderr, "bench_reload: --blocks 2..65536, --reps 1..1000\n");
		return -1;
	}
	return 0;
}


/* Appends o->blocks blocks of key-like data to layer 0, all cold. */
static int fill(struct kvt_cache *c, const struct kvt_shape *s, uint32_t blocks)
{
	const uint32_t n = s->block_tokens;
	size_t elems = (size_t)s->n_kv_heads * n * s->head_dim;
	float *x = malloc(elems * sizeof *x);
	uint16_t *k = malloc(elems * 2), *v = malloc(elems * 2);
	int rc = x && k && v ? 0 : -ENOMEM;
	for (uint32_t b = 0; rc == 0 && b < blocks; b++) {
		bench_fill_keys(x, s->n_kv_heads, n, s->head_dim, 2 * b + 1);
		kvt_from_f32(KVT_DTYPE_F16, x, k, elems);
		bench_fill_keys(x, s->n_kv_heads, n, s->head_dim, 2 * b + 2);
		kvt_from_f32(KVT_DTYPE_F16, x, v, elems);
		rc = kvt_cache_append(c, 0, n, k, v);
	}
	free(x), free(k), free(v);
	return rc;
}

/* One reload of blocks idx[0..n), waited for and released. */
static int reload_once(struct kvt_cache *c, const uint32_t *idx, uint32_t n)
{
	struct kvt_reload *r;
	const struct kvt_reload_block *b;
	size_t got;
	int rc = kvt_cache_reload(c, 0, idx, n, NULL, &r);
	if (rc)
		return rc;
	rc = kvt_reload_wait(r, &b, &got);
	kvt_reload_release(r);
	return rc;
}

static int run(const struct opts *o, struct kvt_store *st, int gpu_tier)
{
	struct kvt_cache_config cfg;
	struct kvt_cache *c = NULL;
	kvt_cache_config_init(&cfg);
	cfg.shape = (struct kvt_shape){1, 8, 128, 16, KVT_DTYPE_F16};
	if (o->codec != KVT_CODEC_RAW)
		kvt_codec_params_init(&cfg.cold, o->codec);
	cfg.recent_tokens = 0;
	int rc = kvt_cache_create(st, "bench", &cfg, &c);
	if (rc == 0)
		rc = fill(c, &cfg.shape, o->blocks);
	const size_t bb = kvt_block_bytes(&cfg.shape);
	const uint32_t half = o->blocks / 2, per = gpu_tier ? half : o->blocks;
	uint32_t *idx = malloc(o->blocks * sizeof *idx);
	uint8_t *src = malloc(per * bb), *dst = malloc(per * bb);
	double *t_rel = calloc(o->reps, sizeof(double)), *t_rb = calloc(o->reps, sizeof(double));
	double *t_cpy = calloc(o->reps, sizeof(double));
	if (rc == 0 && (!idx || !src || !dst || !t_rel || !t_rb || !t_cpy))
		rc = -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < o->blocks; i++)
		idx[i] = i;
	if (rc == 0) {
		memset(src, 1, per * bb);
		memset(dst, 0, per * bb);
		rc = reload_once(c, idx, per); /* warm-up */
	}
	for (uint32_t r = 0; rc == 0 && r < o->reps; r++) {
		const uint32_t *set = idx + (gpu_tier && (r % 2 == 0) ? half : 0);
		double t0 = bench_now();
		rc = reload_once(c, set, per);
		double t1 = bench_now();
		for (uint32_t i = 0; rc == 0 && i < per; i++)
			rc = kvt_cache_read_block(c, 0, set[i], dst + (size_t)i * bb, bb, NULL);
		double t2 = bench_now();
		memcpy(dst, src, per * bb);
		double t3 = bench_now();
		t_rel[r] = t1 - t0, t_rb[r] = t2 - t1, t_cpy[r] = t3 - t2;
	}
	if (rc == 0) {
		double gb = (double)per * bb / 1e9;
		double rel = gb / bench_median(t_rel, o->reps), rb = gb / bench_median(t_rb, o->reps);
		double cpy = gb / bench_median(t_cpy, o->reps);
		printf("blocks per reload %u (%zu KiB raw each, %s, reload into %s)\n", per,
		       bb >> 10, o->codec == KVT_CODEC_RAW ? "raw" : o->codec == KVT_CODEC_KIVI
							      ? "kivi 2-bit" : "zipcache 2/4-bit",
		       gpu_tier ? "the GPU tier" : "host memory");
		printf("  kvt_cache_reload+wait  %8.2f GB/s raw   %.3f x memcpy  %.2f x read_block\n",
		       rel, rel / cpy, rel / rb);
		printf("  kvt_cache_read_block   %8.2f GB/s raw   %.3f x memcpy\n", rb, rb / cpy);
		printf("  memcpy (baseline)      %8.2f GB/s\n", cpy);
	}
	free(idx), free(src), free(dst), free(t_rel), free(t_rb), free(t_cpy);
	kvt_cache_close(c);
	return rc;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct kvt_store_config sc;
	struct kvt_store *st;
	struct kvt_stats s;
	if (parse(argc, argv, &o))
		return 2;
	kvt_store_config_init(&sc);
	sc.host_bytes = 4ull << 30;
	sc.gpu_recent = 0;
	sc.gpu_bytes = o.gpu ? (uint64_t)(o.blocks / 2) * (64u << 10) : 0;
	int rc = kvt_store_open(&sc, &st);
	if (rc == 0 && (rc = kvt_store_stats(st, &s)) == 0 && o.gpu &&
	    !s.tier[KVT_TIER_GPU].present) {
		fprintf(stderr, "bench_reload: --gpu: no usable GPU, no GPU tier\n");
		rc = KVT_ENOGPU;
	}
	if (rc == 0)
		rc = run(&o, st, o.gpu);
	kvt_store_close(st);
	if (rc)
		fprintf(stderr, "bench_reload: %s\n", kvt_strerror(rc));
	return rc ? 1 : 0;
}
