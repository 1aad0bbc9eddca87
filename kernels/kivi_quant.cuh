// kivi_quant.cuh - KIVI quantization of raw blocks into encoded blocks.
#ifndef KVTIER_KERNELS_KIVI_QUANT_CUH
#define KVTIER_KERNELS_KIVI_QUANT_CUH

#include "kivi.cuh"

// Enqueues the quantization of n items (device table); 0 or a kvtier code.
int kvt_kivi_quant_launch(const struct kivi_plan &p,
			  const struct kvt_gpu_item *items, uint32_t n,
			  cudaStream_t st);

#endif
