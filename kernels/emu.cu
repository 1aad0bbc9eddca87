// emu.cu - the kernels' per-thread bodies run on the CPU, one thread after
// another (see emu_internal.h). Barriers need no care: the code between two
// barriers runs for every thread before the next part starts.
#include <stdlib.h>

#include "emu_internal.h"
#include "gather.cuh"
#include "kivi_dequant.cuh"
#include "kivi_quant.cuh"
#include "score.cuh"
#include "select.cuh"
#include "attn.cuh"
#include "zip_dequant.cuh"
#include "zip_quant.cuh"

extern "C" int kvt_emu_gather(const struct kvt_gpu_item *items, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		for (uint64_t begin = 0; begin < items[i].len; begin += GATHER_CHUNK) {
			const uint64_t left = items[i].len - begin;
			const uint32_t len = left < GATHER_CHUNK ? (uint32_t)left
								 : GATHER_CHUNK;
			for (uint32_t t = 0; t < GATHER_THREADS; t++)
				kvt_block_copy((const uint8_t *)items[i].src + begin,
					       (uint8_t *)items[i].dst + begin,
					       len, t, GATHER_THREADS);
		}
	return 0;
}

extern "C" int kvt_emu_kivi_quantize(const struct kvt_kivi_geom *g,
				     const void *raw, void *enc)
{
	struct kivi_plan p;
	int rc = kvt_kivi_plan(g, 1, &p);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < p.work; i++)
		quant_item(p, (const uint8_t *)raw, (uint8_t *)enc, i);
	return 0;
}

extern "C" int kvt_emu_kivi_dequantize(const struct kvt_kivi_geom *g,
				       const void *enc, void *raw, int fused)
{
	struct kivi_plan p;
	int rc = kvt_kivi_plan(g, 0, &p);
	if (rc)
		return rc;
	const uint8_t *src = (const uint8_t *)enc;
	uint8_t *staged = NULL;
	if (fused) {
		staged = (uint8_t *)aligned_alloc(16, ((size_t)p.enc_len + 15) & ~(size_t)15);
		if (!staged)
			return -ENOMEM;
		for (uint32_t t = 0; t < DEQUANT_THREADS; t++)
			kvt_block_copy(src, staged, p.enc_len, t, DEQUANT_THREADS);
		src = staged;
	}
	rc = headers_ok(p, src) ? 0 : KVT_EFORMAT;
	for (uint32_t i = 0; rc == 0 && i < p.work; i++)
		dequant_item(p, src, (uint8_t *)raw, i);
	free(staged);
	return rc;
}

extern "C" int kvt_emu_score_topk(const float *q, uint32_t sets, uint32_t nq,
				  const float *keys, uint32_t m, uint32_t dim,
				  uint32_t k, float *scores, uint32_t *top_idx,
				  float *top_score)
{
	if (!score_args_ok(q, sets, nq, keys, m, dim, k, scores, top_idx))
		return -EINVAL;
	for (uint32_t z = 0; z < sets; z++)
		for (uint32_t i = 0; i < nq; i++)
			for (uint32_t j = 0; j < m; j++)
				scores[((size_t)z * nq + i) * m + j] =
					dot(q + ((size_t)z * nq + i) * dim,
					    keys + ((size_t)z * m + j) * dim, dim);
	const uint32_t span = topk_span(k);
	struct cand *cs = (struct cand *)malloc(2 * span * sizeof *cs);
	if (!cs)
		return -ENOMEM;
	for (size_t r = 0; r < (size_t)sets * nq; r++)
		topk_row(scores + r * m, m, k, span, cs, top_idx + r * k,
			 top_score ? top_score + r * k : NULL, 0, 1);
	free(cs);
	return 0;
}

extern "C" int kvt_emu_zip_dequantize(const struct kvt_zip_geom *g,
				      const void *enc, size_t len, void *raw)
{
	int rc = kvt_zip_geom_check(g);
	if (rc)
		return rc;
	if (len == 0 || len > (1u << 30))
		return -EINVAL;
	uint8_t *s = (uint8_t *)aligned_alloc(16, (len + 15) & ~(size_t)15);
	if (!s)
		return -ENOMEM;
	for (uint32_t t = 0; t < ZIP_THREADS; t++)
		kvt_block_copy((const uint8_t *)enc, s, (uint32_t)len, t, ZIP_THREADS);
	struct zip_sect k, v;
	const uint32_t n = (uint32_t)len;
	int ok = zip_stream_ok(*g, s, n, 0, &k) &&
		 zip_stream_ok(*g, s + k.end, n - k.end, 1, &v) &&
		 k.end + v.end == n && zip_bitmap_ok(*g, s, k) &&
		 zip_bitmap_ok(*g, s + k.end, v) && zip_norms_ok(*g, s, k, 0, 1) &&
		 zip_norms_ok(*g, s + k.end, v, 0, 1);
	if (ok) {
		const uint32_t per_half = g->heads * g->tokens * k.wh;
		const size_t half_bytes = (size_t)g->heads * g->tokens * g->dim *
				    kvt_kg_esize(g->dtype);
		for (uint32_t i = 0; i < per_half; i++) {
			zip_decode_item(*g, s, k, (uint8_t *)raw, i);
			zip_decode_item(*g, s + k.end, v, (uint8_t *)raw + half_bytes, i);
		}
	}
	free(s);
	return ok ? 0 : KVT_EFORMAT;
}

extern "C" int kvt_emu_zip_quantize(const struct kvt_zip_geom *g, int tokenwise,
				    uint32_t n_salient, const uint32_t *bm,
				    const void *raw, void *enc)
{
	struct zipq_plan p;
	int rc = kvt_zipq_plan(g, tokenwise, n_salient, &p);
	if (rc)
		return rc;
	float *r = (float *)malloc(g->dim * sizeof *r);
	if (!r)
		return -ENOMEM;
	for (uint32_t hv = 0; hv < 2; hv++) {
		const uint8_t *src = (const uint8_t *)raw +
				     (size_t)hv * p.half_elems * kvt_kg_esize(g->dtype);
		uint8_t *s = (uint8_t *)enc + (hv ? p.z.end : 0);
		zipq_frame(p, s, hv, bm);
		for (uint32_t hd = 0; hd < g->heads; hd++) {
			for (uint32_t c = 0; p.norms && c < g->dim; c++) {
				const uint16_t nh = zipq_norm(zipq_amax(p, src, hd, c));
				((uint16_t *)(s + p.z.norm))[(size_t)hd * g->dim + c] = nh;
				r[c] = KVT_FDIV(1.0f, kivi_h2f(nh));
			}
			for (uint32_t t = 0; t < g->tokens; t++)
				zipq_row(p, src, s, bm, hd, t, p.norms ? r : NULL);
		}
	}
	free(r);
	return 0;
}

extern "C" int kvt_emu_quest_keys(const struct kvt_quest_args *a)
{
	if (!quest_args_ok(a))
		return -EINVAL;
	float red[1];
	for (uint32_t r = 0; r < a->rows; r++) {
		const float *qp = a->qp + (size_t)r * a->head_dim;
		const float *qn = a->qn + (size_t)r * a->head_dim;
		for (uint32_t f = 0; f < a->n_frames; f++)
			a->lg[(size_t)r * a->n_frames + f] = quest_logit(a, qp, qn, r, f);
	}
	for (uint32_t r = 0; r < a->rows; r++)
		quest_row_stats(a, r, red, 0, 1);
	for (uint32_t b = 0; b < a->n_blocks; b++)
		block_key(a, b);
	return 0;
}

extern "C" int kvt_emu_select_top(const uint32_t *key, uint32_t n, uint32_t k,
				  uint8_t *sel)
{
	if (!key || !sel || k == 0 || k > n)
		return -EINVAL;
	uint32_t red[1];
	radix_select(key, n, k, sel, red, 0, 1);
	return 0;
}

extern "C" int kvt_emu_clusterkv_keys(const struct kvt_ckv_args *a)
{
	if (!ckv_args_ok(a))
		return -EINVAL;
	float red[1];
	for (uint32_t r = 0; r < a->rows; r++)
		for (uint32_t c = 0; c < a->n_clusters; c++)
			a->lg[(size_t)r * a->n_clusters + c] =
				ckv_logit(a, a->q + (size_t)r * a->head_dim, r, c);
	for (uint32_t r = 0; r < a->rows; r++)
		ckv_row_stats(a, r, red, 0, 1);
	for (uint32_t h = 0; h < a->n_kv_heads; h++)
		for (uint32_t c = 0; c < a->n_clusters; c++)
			ckv_weight(a, c, h);
	for (uint32_t b = 0; b < a->n_blocks; b++)
		ckv_block_key(a, b);
	return 0;
}

extern "C" int kvt_emu_attn_blocks(const struct kvt_attn_args *a)
{
	if (!attn_args_ok(a))
		return -EINVAL;
	float red[1];
	for (uint32_t r = 0; r < a->n_q_heads * a->n_queries; r++)
		attn_row(a, r, red, 0, 1);
	return 0;
}
