/*
 * store_roundtrip - the smallest complete use of kvtier: open a store,
 * create a cache shaped like a small Llama model, append a few thousand
 * tokens of K/V per layer, read them back, and print where the bytes went.
 *
 *   store_roundtrip [--data-dir DIR] [--tokens N] [--bits B] [--host-mib M]
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "half.h"
#include "kvtier/kvtier.h"

struct opts {
	const char *data_dir;
	uint32_t tokens, bits;
	uint64_t host_mib;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: store_roundtrip [--data-dir DIR] [--tokens N] [--bits B] [--host-mib M]\n"
		"Stores N tokens (default 4096) of synthetic K/V for a 30-layer,\n"
		"3-KV-head, head_dim-64 model (SmolLM2-135M's shape), cold blocks\n"
		"quantized with KIVI-B (default 2; 16 = raw), reads everything back and\n"
		"reports the error, bytes per tier and the compression ratio.\n"
		"--data-dir adds the disk tier; --host-mib sets the host budget (default 256).\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"data-dir", 1, 0, 'd'}, {"tokens", 1, 0, 't'},
		{"bits", 1, 0, 'b'}, {"host-mib", 1, 0, 'm'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){NULL, 4096, 2, 256};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'd': o->data_dir = optarg; break;
		case 't': o->tokens = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'b': o->bits = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'm': o->host_mib = strtoull(optarg, NULL, 10); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	return 0;
}

/* Smooth per-channel structure plus noise, like real keys and values. */
static void fill(uint16_t *x, uint32_t heads, uint32_t n, uint32_t dim,
		 uint64_t first, uint32_t layer, int kv)
{
	for (uint32_t h = 0; h < heads; h++)
		for (uint32_t t = 0; t < n; t++)
			for (uint32_t d = 0; d < dim; d++) {
				double tok = (double)(first + t);
				double y = sin(tok * 0.01 * (d % 8 + 1) + layer + h + kv) *
					   (d % 16 == 3 ? 8.0 : 1.0);
				x[((size_t)h * n + t) * dim + d] = kvt_f32_to_f16((float)y);
			}
}

static int run(const struct opts *o)
{
	struct kvt_store_config sc;
	struct kvt_cache_config cc;
	struct kvt_store *st;
	struct kvt_cache *c;
	kvt_store_config_init(&sc);
	sc.data_dir = o->data_dir;
	sc.host_bytes = o->host_mib << 20;
	kvt_cache_config_init(&cc);
	cc.shape = (struct kvt_shape){30, 3, 64, 16, KVT_DTYPE_F16};
	if (o->bits != 16) {
		kvt_codec_params_init(&cc.cold, KVT_CODEC_KIVI);
		cc.cold.bits = (uint8_t)o->bits;
	}
	int rc = kvt_store_open(&sc, &st);
	if (rc) {
		fprintf(stderr, "store_roundtrip: open: %s\n", kvt_strerror(rc));
		return 1;
	}
	kvt_cache_drop(st, "example");
	if ((rc = kvt_cache_create(st, "example", &cc, &c))) {
		fprintf(stderr, "store_roundtrip: create: %s\n", kvt_strerror(rc));
		kvt_store_close(st);
		return 1;
	}
	const uint32_t chunk = 256, n = o->tokens;
	size_t elems = (size_t)3 * n * 64;
	uint16_t *k = malloc(elems * 2), *v = malloc(elems * 2);
	uint16_t *rk = malloc(elems * 2), *rv = malloc(elems * 2);
	uint16_t *ck = malloc((size_t)3 * chunk * 64 * 2), *cv = malloc((size_t)3 * chunk * 64 * 2);
	double err = 0, max_err = 0, recent_err = 0;
	for (uint32_t l = 0; l < 30 && rc == 0; l++) {
		fill(k, 3, n, 64, 0, l, 0);
		fill(v, 3, n, 64, 0, l, 1);
		for (uint32_t t = 0; t < n && rc == 0; t += chunk) {
			uint32_t m = n - t < chunk ? n - t : chunk;
			for (uint32_t h = 0; h < 3; h++) {
				memcpy(ck + (size_t)h * m * 64, k + ((size_t)h * n + t) * 64, (size_t)m * 128);
				memcpy(cv + (size_t)h * m * 64, v + ((size_t)h * n + t) * 64, (size_t)m * 128);
			}
			rc = kvt_cache_append(c, l, m, ck, cv);
		}
		if (rc == 0)
			rc = kvt_cache_read(c, l, 0, n, rk, rv);
		for (size_t i = 0; rc == 0 && i < elems; i++) {
			double e = fabs(kvt_f16_to_f32(k[i]) - kvt_f16_to_f32(rk[i]));
			err += e;
			max_err = e > max_err ? e : max_err;
			if ((i / 64) % n >= n - cc.recent_tokens)
				recent_err += e;
		}
	}
	if (rc)
		fprintf(stderr, "store_roundtrip: %s\n", kvt_strerror(rc));
	struct kvt_stats s;
	kvt_store_stats(st, &s);
	printf("stored %u tokens x 30 layers (%s cold blocks, %u recent tokens raw)\n",
	       n, o->bits == 16 ? "raw" : o->bits == 2 ? "KIVI-2" : o->bits == 4 ? "KIVI-4" : "KIVI-8",
	       cc.recent_tokens);
	printf("read back: key MAE %.5f, max error %.4f, recent window error %.1f (exact)\n",
	       err / (30.0 * (double)elems), max_err, recent_err);
	for (int t = 0; t < KVT_TIER_COUNT; t++)
		printf("  %-4s %s %8.2f MiB in %lu blocks\n", kvt_tier_name(t),
		       s.tier[t].present ? "     " : "(none)",
		       (double)s.tier[t].used_bytes / (1 << 20),
		       (unsigned long)s.tier[t].n_blocks);
	printf("raw %.2f MiB -> stored %.2f MiB: compression %.2fx, %lu demotions\n",
	       (double)s.raw_bytes / (1 << 20), (double)s.stored_bytes / (1 << 20),
	       s.compression_ratio, (unsigned long)s.demotions);
	free(k), free(v), free(rk), free(rv), free(ck), free(cv);
	kvt_cache_close(c);
	kvt_store_close(st);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 2;
	return run(&o);
}
