/* bench_util.h - timing and test-tensor helpers shared by the benchmarks. */
#ifndef KVTIER_BENCH_UTIL_H
#define KVTIER_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Sorts v[0..n) ascending (n >= 1). */
static inline void bench_sort(double *v, size_t n)
{
	qsort(v, n, sizeof *v, bench_cmp_double);
}

/* The median of v[0..n) (n >= 1); sorts v. */
static inline double bench_median(double *v, size_t n)
{
	bench_sort(v, n);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The fastest of reps memcpys of n bytes (the baseline most benches
 * report against; the machine is shared, the minimum is the least noisy). */
static inline double bench_best_memcpy(void *dst, const void *src, size_t n,
				       unsigned reps)
{
	double best = 1e30;
	for (unsigned r = 0; r < reps; r++) {
		double t = bench_now();
		memcpy(dst, src, n);
		__asm__ volatile("" ::"r"(dst) : "memory");
		t = bench_now() - t;
		best = t < best ? t : best;
	}
	return best;
}

/* Deterministic pseudo-random floats in [-0.5, 0.5). */
static inline float bench_uniform(uint64_t *state)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return (float)(*state >> 40) / (float)(1u << 24) - 0.5f;
}

/*
 * Fills x [heads][tokens][dim] with key-like data: unit-scale noise, a
 * per-channel offset, and a few outlier channels an order of magnitude
 * larger (as in real LLM keys, the reason KIVI quantizes keys per channel).
 */
static inline void bench_fill_keys(float *x, size_t heads, size_t tokens,
				   size_t dim, uint64_t seed)
{
	for (size_t i = 0; i < heads * tokens * dim; i++) {
		size_t d = i % dim;
		float scale = d % 16 == 5 ? 12.0f : 1.0f;
		x[i] = bench_uniform(&seed) * scale + (float)(d % 7) * 0.25f;
	}
}

#endif
