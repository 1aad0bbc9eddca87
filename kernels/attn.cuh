// attn.cuh - reference attention over a table of raw blocks on the GPU:
// one thread block per (q head, query vector). Bodies take (tid, nt) so
// the emulation runs a thread block as one thread.
#ifndef KVTIER_KERNELS_ATTN_CUH
#define KVTIER_KERNELS_ATTN_CUH

#include <math.h>

#include "select.cuh"

#define ATTN_THREADS 128

// Block and token of the i-th valid token (first[] holds prefix sums).
KVT_HD_FN void attn_locate(const struct kvt_attn_args *a, uint32_t i,
			   uint32_t *b, uint32_t *t)
{
	uint32_t lo = 0, hi = a->n_blocks; // first[lo] <= i < first[hi]
	while (hi - lo > 1) {
		const uint32_t mid = lo + (hi - lo) / 2;
		if (a->first[mid] <= i)
			lo = mid;
		else
			hi = mid;
	}
	*b = lo;
	*t = i - a->first[lo];
}

// Element e of token t, head h of the K (v = 0) or V (v = 1) half of block b.
KVT_HD_FN float attn_elem(const struct kvt_attn_args *a, uint32_t b, int v,
			  uint32_t h, uint32_t t, uint32_t e)
{
	const size_t part = (size_t)a->n_kv_heads * a->block_tokens * a->head_dim;
	const size_t at = (size_t)v * part +
			  ((size_t)h * a->block_tokens + t) * a->head_dim + e;
	return kvt_load_elem((const uint8_t *)a->blocks[b], a->dtype, at);
}

// softmax(q K^T * scale) V for row r = q head * n_queries + query; red
// holds nt floats, the row's scores a->scores[r][n_tokens].
KVT_HD_FN void attn_row(const struct kvt_attn_args *a, uint32_t r, float *red,
			uint32_t tid, uint32_t nt)
{
	const uint32_t hq = r / a->n_queries;
	const uint32_t h = hq / (a->n_q_heads / a->n_kv_heads);
	const float *q = a->q + (size_t)r * a->head_dim;
	float *sc = a->scores + (size_t)r * a->n_tokens, m = -INFINITY;
	for (uint32_t i = tid; i < a->n_tokens; i += nt) {
		uint32_t b, t;
		attn_locate(a, i, &b, &t);
		float s = 0.0f;
		for (uint32_t e = 0; e < a->head_dim; e++)
			s = KVT_FADD(s, KVT_FMUL(q[e], attn_elem(a, b, 0, h, t, e)));
		sc[i] = KVT_FMUL(s, a->scale);
		m = sc[i] > m ? sc[i] : m;
	}
	m = block_max(m, red, tid, nt);
	float z = 0.0f;
	for (uint32_t i = tid; i < a->n_tokens; i += nt) {
		sc[i] = expf(KVT_FSUB(sc[i], m));
		z = KVT_FADD(z, sc[i]);
	}
	z = block_sum(z, red, tid, nt);
	for (uint32_t e = tid; e < a->head_dim; e += nt) {
		float acc = 0.0f;
		for (uint32_t i = 0; i < a->n_tokens; i++) {
			uint32_t b, t;
			attn_locate(a, i, &b, &t);
			acc = KVT_FADD(acc, KVT_FMUL(sc[i], attn_elem(a, b, 1, h, t, e)));
		}
		a->out[(size_t)r * a->head_dim + e] = KVT_FDIV(acc, z);
	}
}

static inline int attn_args_ok(const struct kvt_attn_args *a)
{
	return a && a->q && a->blocks && a->first && a->scores && a->out &&
	       a->n_q_heads && a->n_kv_heads && a->n_q_heads % a->n_kv_heads == 0 &&
	       a->n_queries && (uint64_t)a->n_q_heads * a->n_queries <= 0x7fffffffu &&
	       a->head_dim && a->block_tokens && a->n_blocks && a->n_tokens &&
	       (a->dtype == KVT_DTYPE_F16 || a->dtype == KVT_DTYPE_BF16 ||
		a->dtype == KVT_DTYPE_F32);
}

#endif
