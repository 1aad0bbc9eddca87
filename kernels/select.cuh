// select.cuh - Quest block selection: frame-bound logits, per-row softmax
// statistics, block keys, and an exact top-k by radix select. The bodies
// are host-device functions taking (tid, nt) so the emulation can run a
// whole thread block as one thread (nt = 1).
#ifndef KVTIER_KERNELS_SELECT_CUH
#define KVTIER_KERNELS_SELECT_CUH

#include <math.h>

#include "common.cuh"

#define QUEST_THREADS 128
#define STATS_THREADS 256
#define RSEL_THREADS 1024

KVT_HD_FN float h2f(uint16_t u)
{
	return __half2float(__ushort_as_half(u));
}

// Row r's bound against frame f: qp[r] . hi[f][h] + qn[r] . lo[f][h],
// summed in order d = 0, 1, ... (no FMA), times scale.
KVT_HD_FN float quest_logit(const struct kvt_quest_args *a, const float *qp,
			    const float *qn, uint32_t r, uint32_t f)
{
	const uint32_t h = r / a->rows_per_head;
	const size_t at = ((size_t)f * a->n_kv_heads + h) * a->head_dim;
	float s = 0.0f;
	for (uint32_t e = 0; e < a->head_dim; e++) {
		s = KVT_FADD(s, KVT_FMUL(qp[e], h2f(a->hi[at + e])));
		s = KVT_FADD(s, KVT_FMUL(qn[e], h2f(a->lo[at + e])));
	}
	return KVT_FMUL(s, a->scale);
}

// Tree reductions over nt (a power of two) values in red; the result ends
// in red[0], visible to every thread after the call.
KVT_HD_FN void tree_max(float *red, uint32_t tid, uint32_t nt)
{
	for (uint32_t w = nt / 2; w > 0; w /= 2) {
		if (tid < w && red[tid + w] > red[tid])
			red[tid] = red[tid + w];
		KVT_SYNC();
	}
}

KVT_HD_FN void tree_sum(float *red, uint32_t tid, uint32_t nt)
{
	for (uint32_t w = nt / 2; w > 0; w /= 2) {
		if (tid < w)
			red[tid] = KVT_FADD(red[tid], red[tid + w]);
		KVT_SYNC();
	}
}

KVT_HD_FN void tree_count(uint32_t *red, uint32_t tid, uint32_t nt)
{
	for (uint32_t w = nt / 2; w > 0; w /= 2) {
		if (tid < w)
			red[tid] += red[tid + w];
		KVT_SYNC();
	}
}

// The largest / the sum of one value per thread of a block, in every
// thread; red holds nt floats.
KVT_HD_FN float block_max(float v, float *red, uint32_t tid, uint32_t nt)
{
	red[tid] = v;
	KVT_SYNC();
	tree_max(red, tid, nt);
	v = red[0];
	KVT_SYNC();
	return v;
}

KVT_HD_FN float block_sum(float v, float *red, uint32_t tid, uint32_t nt)
{
	red[tid] = v;
	KVT_SYNC();
	tree_sum(red, tid, nt);
	v = red[0];
	KVT_SYNC();
	return v;
}

// Max, then the weighted sum of exp(x - max), of the n logits of row
// (weights wt[i * ws]) into out[0], out[1]; red holds nt floats.
KVT_HD_FN void row_stats(const float *row, uint32_t n, const uint32_t *wt,
			 uint32_t ws, float *out, float *red, uint32_t tid,
			 uint32_t nt)
{
	float m = -INFINITY;
	for (uint32_t f = tid; f < n; f += nt)
		m = row[f] > m ? row[f] : m;
	m = block_max(m, red, tid, nt);
	float z = 0.0f;
	for (uint32_t f = tid; f < n; f += nt)
		if (wt[(size_t)f * ws])
			z = KVT_FADD(z, KVT_FMUL((float)wt[(size_t)f * ws],
						 expf(KVT_FSUB(row[f], m))));
	z = block_sum(z, red, tid, nt);
	if (tid == 0) {
		out[0] = m;
		out[1] = z;
	}
}

KVT_HD_FN void quest_row_stats(const struct kvt_quest_args *a, uint32_t r,
			       float *red, uint32_t tid, uint32_t nt)
{
	row_stats(a->lg + (size_t)r * a->n_frames, a->n_frames, a->cnt, 1,
		  a->stats + 2 * r, red, tid, nt);
}

// Order-preserving map of a float to uint32 (NaN as -FLT_MAX, as the CPU
// selection does); never 0, which marks a forced block.
KVT_HD_FN uint32_t ord_key(float x)
{
	if (x != x)
		x = -3.402823466e38f;
	const uint32_t u = kvt_f2u(x);
	return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Block b's key: its frame's mass summed over rows, divided by the frame's
// blocks; 0 for the sink and recent blocks. Stored reversed (key[nb-1-b])
// so "lower index first" on ties means "newer block first".
KVT_HD_FN void block_key(const struct kvt_quest_args *a, uint32_t b)
{
	uint32_t k = 0;
	if (b >= a->sink_blocks && b < a->recent_first) {
		const uint32_t f = b / a->frame_blocks;
		float s = 0.0f;
		for (uint32_t r = 0; r < a->rows; r++) {
			const float m = a->stats[2 * r], z = a->stats[2 * r + 1];
			const float lg = a->lg[(size_t)r * a->n_frames + f];
			const float w = KVT_FMUL((float)a->cnt[f], expf(KVT_FSUB(lg, m)));
			s = KVT_FADD(s, z > 0.0f ? KVT_FDIV(w, z) : 0.0f);
		}
		k = ord_key(KVT_FDIV(s, (float)a->frame_blocks));
	}
	a->key[a->n_blocks - 1 - b] = k;
}

// The number of i in [0, n) passing `test`, in every thread; red: nt
// uint32 of scratch.
#define RSEL_COUNT(out, test)                                        \
	do {                                                         \
		uint32_t c_ = 0;                                     \
		for (uint32_t i = tid; i < n; i += nt)               \
			c_ += (test) ? 1u : 0u;                      \
		red[tid] = c_;                                       \
		KVT_SYNC();                                          \
		tree_count(red, tid, nt);                            \
		(out) = red[0];                                      \
		KVT_SYNC();                                          \
	} while (0)

// Bits needed for indices below n.
KVT_HD_FN int index_bits(uint32_t n)
{
	int b = 0;
	while (b < 32 && (n >> b) != 0)
		b++;
	return b;
}

// Marks sel[i] = 1 for the k largest keys of key[0, n), ties to the lower
// index, 0 elsewhere; 1 <= k <= n. Radix select of the k-th largest key t
// over the key bits; then, among the keys equal to t, the largest index
// lim with fewer than `need` of them below it (the need-th such key sits at
// lim), over the index bits.
KVT_HD_FN void radix_select(const uint32_t *key, uint32_t n, uint32_t k,
			    uint8_t *sel, uint32_t *red, uint32_t tid, uint32_t nt)
{
	uint32_t t = 0, c;
	for (int bit = 31; bit >= 0; bit--) {
		const uint32_t cand = t | (1u << bit);
		RSEL_COUNT(c, key[i] >= cand);
		if (c >= k)
			t = cand;
	}
	RSEL_COUNT(c, key[i] > t);
	const uint32_t need = k - c; // >= 1: the keys equal to t to take
	uint32_t lim = 0;
	for (int bit = index_bits(n) - 1; bit >= 0; bit--) {
		const uint32_t cand = lim | (1u << bit);
		RSEL_COUNT(c, key[i] == t && i < cand);
		if (c < need)
			lim = cand;
	}
	for (uint32_t i = tid; i < n; i += nt)
		sel[i] = key[i] > t || (key[i] == t && i <= lim) ? 1 : 0;
	KVT_SYNC();
}

// ---- ClusterKV

// Row r's logit for cluster c: q . mean / sqrt(d); -inf for an empty one.
KVT_HD_FN float ckv_logit(const struct kvt_ckv_args *a, const float *q,
			  uint32_t r, uint32_t c)
{
	const uint32_t h = r / a->rows_per_head;
	const size_t g = (size_t)c * a->n_kv_heads + h;
	if (a->ccount[g] == 0)
		return -INFINITY;
	const uint16_t *mu = a->mean + g * a->head_dim;
	float s = 0.0f;
	for (uint32_t e = 0; e < a->head_dim; e++)
		s = KVT_FADD(s, KVT_FMUL(q[e], h2f(mu[e])));
	return KVT_FMUL(s, a->scale);
}

KVT_HD_FN void ckv_row_stats(const struct kvt_ckv_args *a, uint32_t r,
			     float *red, uint32_t tid, uint32_t nt)
{
	const uint32_t h = r / a->rows_per_head;
	row_stats(a->lg + (size_t)r * a->n_clusters, a->n_clusters,
		  a->ccount + h, a->n_kv_heads, a->stats + 2 * r, red, tid, nt);
}

// Per-token attention estimate of cluster c for head h, summed over the
// head's rows: w[c][h] = sum_j exp(lg - max_j) / z_j.
KVT_HD_FN void ckv_weight(const struct kvt_ckv_args *a, uint32_t c, uint32_t h)
{
	const size_t g = (size_t)c * a->n_kv_heads + h;
	float w = 0.0f;
	for (uint32_t j = 0; a->ccount[g] && j < a->rows_per_head; j++) {
		const uint32_t r = h * a->rows_per_head + j;
		const float m = a->stats[2 * r], z = a->stats[2 * r + 1];
		const float e = expf(KVT_FSUB(a->lg[(size_t)r * a->n_clusters + c], m));
		w = KVT_FADD(w, z > 0.0f ? KVT_FDIV(e, z) : 0.0f);
	}
	a->w[g] = w;
}

// Block b's key: the weights of its tokens' clusters summed over tokens and
// heads (reversed and 0 for forced blocks, as block_key).
KVT_HD_FN void ckv_block_key(const struct kvt_ckv_args *a, uint32_t b)
{
	uint32_t k = 0;
	if (b >= a->sink_blocks && b < a->recent_first) {
		const uint64_t t0 = (uint64_t)b * a->block_tokens;
		const uint64_t t1 = t0 + a->block_tokens < a->n_tokens
					    ? t0 + a->block_tokens : a->n_tokens;
		const uint32_t H = a->n_kv_heads;
		float s = 0.0f;
		for (uint64_t t = t0; t < t1; t++) {
			const size_t c0 = (size_t)(t / a->chunk_tokens) * a->k_chunk;
			for (uint32_t h = 0; h < H; h++)
				s = KVT_FADD(s, a->w[(c0 + a->assign[t * H + h]) * H + h]);
		}
		k = ord_key(s);
	}
	a->key[a->n_blocks - 1 - b] = k;
}

static inline int ckv_args_ok(const struct kvt_ckv_args *a)
{
	return a && a->q && a->mean && a->ccount && a->assign && a->lg &&
	       a->stats && a->w && a->key && a->rows && a->rows_per_head &&
	       a->rows / a->rows_per_head == a->n_kv_heads &&
	       a->rows % a->rows_per_head == 0 && a->rows <= 65535 &&
	       a->head_dim && a->head_dim <= 4096 && a->n_clusters && a->k_chunk &&
	       a->chunk_tokens && a->block_tokens && a->n_tokens &&
	       a->n_blocks == (a->n_tokens + a->block_tokens - 1) / a->block_tokens &&
	       (a->n_tokens + a->chunk_tokens - 1) / a->chunk_tokens * a->k_chunk >=
		       a->n_clusters &&
	       a->sink_blocks <= a->recent_first && a->recent_first <= a->n_blocks;
}

static inline int quest_args_ok(const struct kvt_quest_args *a)
{
	return a && a->qp && a->qn && a->hi && a->lo && a->cnt && a->lg &&
	       a->stats && a->key && a->rows && a->rows_per_head &&
	       a->rows % a->rows_per_head == 0 &&
	       a->rows / a->rows_per_head == a->n_kv_heads && a->head_dim &&
	       a->head_dim <= 4096 && a->n_frames && a->frame_blocks &&
	       a->n_blocks && a->n_blocks <= a->n_frames * a->frame_blocks &&
	       a->n_blocks > (a->n_frames - 1) * a->frame_blocks &&
	       a->sink_blocks <= a->recent_first && a->recent_first <= a->n_blocks &&
	       a->rows <= 65535;
}

#endif
