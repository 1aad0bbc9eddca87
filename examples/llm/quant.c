/* quant.c - ggml block dequantisation and the matmul kernels (see quant.h). */
#include "quant.h"

#include <string.h>

#include "kvtier/kvtier.h"

/* GCC vector extensions: AVX/AVX-512 when the target has it, SSE otherwise,
 * without an #ifdef per instruction set. */
typedef float v8 __attribute__((vector_size(32)));

static inline v8 ld8(const float *p)
{
	v8 v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void st8(float *p, v8 v) { memcpy(p, &v, sizeof(v)); }

static inline float hsum8(v8 v)
{
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

float llm_f16_to_f32(uint16_t h)
{
	_Float16 x;
	memcpy(&x, &h, 2);
	return (float)x;
}

uint16_t llm_f32_to_f16(float f)
{
	_Float16 x = (_Float16)f;
	uint16_t h;
	memcpy(&h, &x, 2);
	return h;
}

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static void dq_q4(const uint8_t *b, float *dst, uint32_t n, int has_min)
{
	uint32_t bb = has_min ? 20 : 18, off = has_min ? 4 : 2;
	for (uint32_t i = 0; i < n / 32; i++, b += bb, dst += 32) {
		float d = llm_f16_to_f32(rd16(b));
		float m = has_min ? llm_f16_to_f32(rd16(b + 2)) : -8.0f * d;
		const uint8_t *q = b + off;
		for (int j = 0; j < 16; j++) {
			dst[j] = (float)(q[j] & 15) * d + m;
			dst[j + 16] = (float)(q[j] >> 4) * d + m;
		}
	}
}

static void dq_q8_0(const uint8_t *b, float *dst, uint32_t n)
{
	for (uint32_t i = 0; i < n / 32; i++, b += 34, dst += 32) {
		float d = llm_f16_to_f32(rd16(b));
		const int8_t *q = (const int8_t *)(b + 2);
		for (int j = 0; j < 32; j++)
			dst[j] = (float)q[j] * d;
	}
}

int llm_dequant_row(enum llm_ggml_type type, const void *src, float *dst,
		    uint32_t n)
{
	const uint8_t *b = src;
	switch (type) {
	case LLM_GGML_F32: memcpy(dst, src, (size_t)n * 4); return 0;
	case LLM_GGML_F16:
		for (uint32_t i = 0; i < n; i++)
			dst[i] = llm_f16_to_f32(rd16(b + 2 * i));
		return 0;
	case LLM_GGML_Q4_0: dq_q4(b, dst, n, 0); return 0;
	case LLM_GGML_Q4_1: dq_q4(b, dst, n, 1); return 0;
	case LLM_GGML_Q8_0: dq_q8_0(b, dst, n); return 0;
	default: return KVT_EFORMAT;
	}
}

int llm_matrix_row(const struct llm_matrix *m, uint32_t r, float *dst)
{
	return llm_dequant_row(m->type, m->data + (uint64_t)r * m->row_bytes, dst,
			       m->n_in);
}

float llm_dot(const float *a, const float *b, uint32_t n)
{
	v8 acc0 = {0}, acc1 = {0};
	uint32_t i = 0;
	for (; i + 16 <= n; i += 16) {
		acc0 += ld8(a + i) * ld8(b + i);
		acc1 += ld8(a + i + 8) * ld8(b + i + 8);
	}
	for (; i + 8 <= n; i += 8)
		acc0 += ld8(a + i) * ld8(b + i);
	float s = hsum8(acc0 + acc1);
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

void llm_axpy(float *y, float a, const float *x, uint32_t n)
{
	uint32_t i = 0;
	v8 av = {a, a, a, a, a, a, a, a};
	for (; i + 8 <= n; i += 8)
		st8(y + i, ld8(y + i) + av * ld8(x + i));
	for (; i < n; i++)
		y[i] += a * x[i];
}

/* Four rows against one vector: the vector is loaded once for all four. */
static void dot4(const float *w, uint32_t n, const float *x, float out[4])
{
	v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
	for (uint32_t i = 0; i < n; i += 8) {
		v8 xv = ld8(x + i);
		a0 += ld8(w + i) * xv;
		a1 += ld8(w + n + i) * xv;
		a2 += ld8(w + 2 * n + i) * xv;
		a3 += ld8(w + 3 * n + i) * xv;
	}
	out[0] = hsum8(a0);
	out[1] = hsum8(a1);
	out[2] = hsum8(a2);
	out[3] = hsum8(a3);
}

void llm_matmul_rows(const struct llm_matrix *m, const float *x, uint32_t T,
		     float *y, uint32_t y_stride, uint32_t o0, uint32_t o1,
		     float *scratch)
{
	uint32_t n = m->n_in;
	for (uint32_t o = o0; o < o1; o += 4) {
		uint32_t rows = o1 - o < 4 ? o1 - o : 4;
		for (uint32_t r = 0; r < 4; r++) {
			if (r < rows)
				llm_matrix_row(m, o + r, scratch + (size_t)r * n);
			else
				memset(scratch + (size_t)r * n, 0, (size_t)n * 4);
		}
		for (uint32_t t = 0; t < T; t++) {
			float out[4];
			dot4(scratch, n, x + (size_t)t * n, out);
			for (uint32_t r = 0; r < rows; r++)
				y[(size_t)t * y_stride + o + r] = out[r];
		}
	}
}
