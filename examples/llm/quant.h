/*
 * quant.h - dequantisation of the ggml tensor types SmolLM2's GGUF uses
 * (F32, F16, Q4_0, Q4_1, Q8_0) and the matrix kernels of the forward pass.
 *
 * Block formats (32 weights per block, little-endian, as in ggml):
 *   Q4_0: f16 d, 16 bytes of nibbles;           w = (q - 8) * d
 *   Q4_1: f16 d, f16 m, 16 bytes of nibbles;    w = q * d + m
 *   Q8_0: f16 d, 32 int8;                       w = q * d
 * Nibble j of a block holds weight j (low nibble of byte j) for j < 16 and
 * weight j (high nibble of byte j - 16) for j >= 16.
 */
#ifndef LLM_QUANT_H
#define LLM_QUANT_H

#include <stdint.h>

#include "gguf.h"

/* A weight matrix: n_out rows of n_in elements, row-major, of one type. */
struct llm_matrix {
	enum llm_ggml_type type;
	const uint8_t *data;
	uint32_t n_in, n_out;
	uint64_t row_bytes;
};

float llm_f16_to_f32(uint16_t h);
uint16_t llm_f32_to_f16(float f); /* round to nearest even */

/* Dequantises n elements (a multiple of the type's block) from src into dst.
 * Returns 0, or KVT_EFORMAT for an unsupported type. */
int llm_dequant_row(enum llm_ggml_type type, const void *src, float *dst,
		    uint32_t n);

/* Dequantises row r of m into dst (m->n_in floats). */
int llm_matrix_row(const struct llm_matrix *m, uint32_t r, float *dst);

/*
 * y[t][o] = sum_i m[o][i] * x[t][i] for t < T and rows o in [o0, o1);
 * x is [T][n_in], y is [T][y_stride]. scratch holds 4 * n_in floats.
 */
void llm_matmul_rows(const struct llm_matrix *m, const float *x, uint32_t T,
		     float *y, uint32_t y_stride, uint32_t o0, uint32_t o1,
		     float *scratch);

/* Dot product of n floats. */
float llm_dot(const float *a, const float *b, uint32_t n);

/* y[i] += a * x[i] for n floats. */
void llm_axpy(float *y, float a, const float *x, uint32_t n);

#endif /* LLM_QUANT_H */
