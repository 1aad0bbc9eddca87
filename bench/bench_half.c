/*
 * bench_half - fp16 <-> fp32 row conversion speed on one core
 * (kvt_f16_to_f32_row / kvt_f32_to_f16_row, F16C or scalar as built), next
 * to memcpy of the fp32 bytes and to a per-element loop over the scalar
 * conversions, all measured in the same run, in cache and past the caches.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "half.h"

struct opts {
	size_t small, large;
	unsigned reps;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench_half [--small N] [--large N] [--reps R]\n"
		"fp16 <-> fp32 row conversions (one core) in GB/s of fp32 data,\n"
		"with memcpy of the same fp32 bytes and a per-element scalar loop\n"
		"measured in the same run. Defaults: 16384 elements (in cache),\n"
		"16777216 elements (64 MiB of fp32, past the caches), best of 5.\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"small", 1, 0, 's'}, {"large", 1, 0, 'l'}, {"reps", 1, 0, 'r'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	*o = (struct opts){16384, 1u << 24, 5};
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': o->small = strtoull(optarg, NULL, 0); break;
		case 'l': o->large = strtoull(optarg, NULL, 0); break;
		case 'r': o->reps = (unsigned)atoi(optarg); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!o->small || !o->large || !o->reps) {
		fprintf(stderr, "bench_half: sizes and reps must be positive\n");
		return -1;
	}
	return 0;
}

enum kernel { K_MEMCPY, K_ROW_TO32, K_LOOP_TO32, K_ROW_TO16, K_LOOP_TO16 };

/* The per-element loops: what half.c did before the row functions. */
static __attribute__((noinline)) void loop_to32(const uint16_t *restrict s,
						float *restrict d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = kvt_f16_to_f32(s[i]);
}

static __attribute__((noinline)) void loop_to16(const float *restrict s,
						uint16_t *restrict d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = kvt_f32_to_f16(s[i]);
}

struct bufs {
	uint16_t *h, *h2;
	float *f, *f2;
};

static void run(enum kernel k, struct bufs *b, size_t n)
{
	switch (k) {
	case K_MEMCPY: memcpy(b->f2, b->f, n * sizeof(float)); break;
	case K_ROW_TO32: kvt_f16_to_f32_row(b->h, b->f2, n); break;
	case K_LOOP_TO32: loop_to32(b->h, b->f2, n); break;
	case K_ROW_TO16: kvt_f32_to_f16_row(b->f, b->h2, n); break;
	case K_LOOP_TO16: loop_to16(b->f, b->h2, n); break;
	}
}

/* Seconds per call, best of reps; each rep repeats the call for at least
 * about 20 ms so small sizes are measurable. */
static double best(enum kernel k, struct bufs *b, size_t n, unsigned reps)
{
	size_t inner = 1;
	for (;;) {
		double t = bench_now();
		for (size_t i = 0; i < inner; i++)
			run(k, b, n);
		if (bench_now() - t > 0.02 || inner > (1u << 24))
			break;
		inner *= 2;
	}
	double bestt = 1e30;
	for (unsigned r = 0; r < reps; r++) {
		double t = bench_now();
		for (size_t i = 0; i < inner; i++)
			run(k, b, n);
		t = (bench_now() - t) / (double)inner;
		bestt = t < bestt ? t : bestt;
	}
	return bestt;
}

static int bench_size(size_t n, unsigned reps, const char *label)
{
	struct bufs b = {malloc(n * 2), malloc(n * 2), malloc(n * 4), malloc(n * 4)};
	if (!b.h || !b.h2 || !b.f || !b.f2) {
		fprintf(stderr, "bench_half: out of memory for %zu elements\n", n);
		free(b.h), free(b.h2), free(b.f), free(b.f2);
		return -1;
	}
	uint64_t seed = 42;
	for (size_t i = 0; i < n; i++)
		b.f[i] = bench_uniform(&seed) * 8.0f;
	kvt_from_f32(KVT_DTYPE_F16, b.f, b.h, n);
	memset(b.f2, 0, n * 4);
	memset(b.h2, 0, n * 2);
	static const char *const names[] = {
		"memcpy (fp32 bytes)", "f16->f32 row", "f16->f32 loop",
		"f32->f16 row", "f32->f16 loop",
	};
	double t[5];
	for (int k = 0; k < 5; k++)
		t[k] = best((enum kernel)k, &b, n, reps);
	const double gb = (double)n * 4 / 1e9;
	printf("%s: %zu elements (%.1f MiB of fp32)\n", label, n,
	       (double)n * 4 / (1 << 20));
	for (int k = 0; k < 5; k++) {
		printf("  %-20s %8.2f GB/s of fp32  %5.2fx memcpy", names[k],
		       gb / t[k], t[0] / t[k]);
		if (k == K_ROW_TO32 || k == K_ROW_TO16)
			printf("  %5.2fx the loop", t[k + 1] / t[k]);
		printf("\n");
	}
	free(b.h), free(b.h2), free(b.f), free(b.f2);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse(argc, argv, &o))
		return 2;
	printf("bench_half: row conversions built: %s; scalar conversions: %s\n",
	       kvt_half_row_variant(),
	       KVT_HALF_HW ? "_Float16 (F16C)" : "portable bit manipulation");
	if (bench_size(o.small, o.reps, "in cache") ||
	    bench_size(o.large, o.reps, "past the caches"))
		return 1;
	return 0;
}
