/*
 * emu_internal.h - the kernels' per-thread bodies run on the CPU, one
 * thread after another, with the plans, index computations and rounding of
 * the GPU code. For tests on machines without a GPU (CUDA builds only):
 * they check everything but the launch itself, the device's own float
 * instructions and the shared-memory staging. Pointers are host memory.
 */
#ifndef KVTIER_KERNELS_EMU_INTERNAL_H
#define KVTIER_KERNELS_EMU_INTERNAL_H

#include "kvt_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One block: raw (K then V) -> encoded. Errors as kvt_kivi_geom_check. */
int kvt_emu_kivi_quantize(const struct kvt_kivi_geom *g, const void *raw,
			  void *enc);

/* One block: encoded -> raw; KVT_EFORMAT (raw untouched) on a header
 * mismatch. fused: go through the shared-memory kernel's body (staged copy
 * of the encoded block, then decode). */
int kvt_emu_kivi_dequantize(const struct kvt_kivi_geom *g, const void *enc,
			    void *raw, int fused);

/* One ZipCache block of len bytes: encoded -> raw through the kernel's
 * staging and checks; KVT_EFORMAT (raw untouched) for a bad block. */
int kvt_emu_zip_dequantize(const struct kvt_zip_geom *g, const void *enc,
			   size_t len, void *raw);

/* One ZipCache block: raw -> encoded with the salient bitmap bm. */
int kvt_emu_zip_quantize(const struct kvt_zip_geom *g, int tokenwise,
			 uint32_t n_salient, const uint32_t *bm, const void *raw,
			 void *enc);

/* The gather kernel over n items. */
int kvt_emu_gather(const struct kvt_gpu_item *items, uint32_t n);

/* kvt_gpu_score_topk_sets on host arrays. */
int kvt_emu_score_topk(const float *q, uint32_t sets, uint32_t nq,
		       const float *keys, uint32_t m, uint32_t dim, uint32_t k,
		       float *scores, uint32_t *top_idx, float *top_score);

/* kvt_gpu_quest_keys and kvt_gpu_select_top on host arrays. */
int kvt_emu_quest_keys(const struct kvt_quest_args *a);
int kvt_emu_clusterkv_keys(const struct kvt_ckv_args *a);
int kvt_emu_attn_blocks(const struct kvt_attn_args *a);
int kvt_emu_select_top(const uint32_t *key, uint32_t n, uint32_t k,
		       uint8_t *sel);

#ifdef __cplusplus
}
#endif

#endif
