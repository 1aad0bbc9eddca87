/* f16_internal.h - dot products with the index's fp16 rows (one file per
 * ISA, chosen by CMake). */
#ifndef KVTIER_RETRIEVAL_F16_INTERNAL_H
#define KVTIER_RETRIEVAL_F16_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "half.h"

/* a (fp16) . b over n elements (the order of the float sums may differ
 * between the files). */
float kvt_rt_dot_f16(const uint16_t *a, const float *b, size_t n);

/* out[j] = a (fp16) . b_j for four vectors b_j spaced stride floats apart. */
void kvt_rt_dot4_f16(const uint16_t *a, const float *b, size_t stride, size_t n,
		     float *out);

#endif
