// kivi_dequant.cuh - KIVI decoding of encoded blocks into raw blocks, from
// device memory or fused with the gather from mapped host memory.
#ifndef KVTIER_KERNELS_KIVI_DEQUANT_CUH
#define KVTIER_KERNELS_KIVI_DEQUANT_CUH

#include "kivi.cuh"

// Enqueues the decoding of n items (device table) with encoded sources in
// device memory; results[i] gets KVT_EFORMAT for a bad header.
int kvt_kivi_dequant_launch(const struct kivi_plan &p,
			    const struct kvt_gpu_item *items, uint32_t n,
			    int *results, cudaStream_t st);

// Same, one thread block per item that first copies its encoded block into
// shared memory; KVT_ETOOBIG when it does not fit.
int kvt_kivi_gather_dequant_launch(const struct kivi_plan &p,
				   const struct kvt_gpu_item *items, uint32_t n,
				   int *results, cudaStream_t st);

#endif
