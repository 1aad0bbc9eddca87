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

// Max, then the cnt-weighted sum of exp(x - max), of one row of logits
// into stats[2r], stats[2r + 1]; red holds nt floats of scratch.
KVT_HD_FN void row_stats(const struct kvt_quest_args *a, uint32_t r, float *red,
			 uint32_t tid, uint32_t nt)
{
	const float *row = a->lg + (size_t)r * a->n_frames;
	float m = -INFINITY;
	for (uint32_t f = tid; f < a->n_frames; f += nt)
		m = row[f] > m ? row[f] : m;
	red[tid] = m;
	KVT_SYNC();
	tree_max(red, tid, nt);
	m = red[0];
	KVT_SYNC();
	float z = 0.0f;
	for (uint32_t f = tid; f < a->n_frames; f += nt)
		z = KVT_FADD(z, KVT_FMUL((float)a->cnt[f], expf(KVT_FSUB(row[f], m))));
	red[tid] = z;
	KVT_SYNC();
	tree_sum(red, tid, nt);
	if (tid == 0) {
		a->stats[2 * r] = m;
		a->stats[2 * r + 1] = red[0];
	}
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
