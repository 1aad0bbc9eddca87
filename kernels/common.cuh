// common.cuh - shared by the CUDA sources: error mapping, streams, element
// loads and stores per dtype, with the exact rounding of common/half.h.
#ifndef KVTIER_KERNELS_COMMON_CUH
#define KVTIER_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "kvt_kernels.h"
}

// Maps a CUDA status to a kvtier code and clears a non-sticky error so it
// does not surface again from an unrelated call.
static inline int kvt_cuda_status(cudaError_t e)
{
	switch (e) {
	case cudaSuccess:
		return 0;
	case cudaErrorNotReady:
		return -EAGAIN;
	case cudaErrorMemoryAllocation:
		cudaGetLastError();
		return -ENOMEM;
	case cudaErrorInvalidValue:
	case cudaErrorInvalidDevicePointer:
	case cudaErrorInvalidConfiguration:
		cudaGetLastError();
		return -EINVAL;
	case cudaErrorNoDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorInitializationError:
		cudaGetLastError();
		return KVT_ENOGPU;
	default:
		cudaGetLastError();
		return KVT_ECUDA;
	}
}

// Status of the launch just issued.
static inline int kvt_cuda_launched(void)
{
	return kvt_cuda_status(cudaGetLastError());
}

static inline cudaStream_t kvt_cu_stream(struct kvt_stream *s)
{
	return (cudaStream_t)s;
}

// Internal view of a batch (batch.cu owns it).
struct kvt_gpu_batch {
	uint32_t cap;
	struct kvt_gpu_item *host;  // pinned, caller-filled
	struct kvt_gpu_item *dev;   // device copy, uploaded per launch
	int *results;               // pinned mapped, host view
	int *results_dev;           // device view of results
};

// Uploads items [0, n) and clears their results; 0 or a kvtier code.
int kvt_batch_upload(struct kvt_gpu_batch *b, uint32_t n, cudaStream_t st);

// Per-thread bodies are host-device functions: the kernels run them on the
// GPU, the emulation entry points (emu_internal.h) on the CPU, so tests on a
// machine without a GPU still check every index computation. The host path
// uses plain float operators, which round exactly like the _rn intrinsics
// (host code is compiled with -ffp-contract=off, SSE single precision).
#define KVT_HD_FN static __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define KVT_FADD(a, b) __fadd_rn(a, b)
#define KVT_FSUB(a, b) __fsub_rn(a, b)
#define KVT_FMUL(a, b) __fmul_rn(a, b)
#define KVT_FDIV(a, b) __fdiv_rn(a, b)
#define KVT_SYNC() __syncthreads()
#else
#define KVT_FADD(a, b) ((a) + (b))
#define KVT_FSUB(a, b) ((a) - (b))
#define KVT_FMUL(a, b) ((a) * (b))
#define KVT_FDIV(a, b) ((a) / (b))
#define KVT_SYNC() ((void)0)
#endif

KVT_HD_FN float kvt_u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

KVT_HD_FN uint32_t kvt_f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	return u;
}

KVT_HD_FN float kvt_load_elem(const uint8_t *base, uint32_t dtype, size_t i)
{
	if (dtype == KVT_DTYPE_F32)
		return ((const float *)base)[i];
	uint16_t u = ((const uint16_t *)base)[i];
	if (dtype == KVT_DTYPE_F16)
		return __half2float(__ushort_as_half(u));
	return kvt_u2f((uint32_t)u << 16);
}

// Round to nearest even, NaN kept quiet: kvt_f32_to_bf16 in common/half.h.
KVT_HD_FN uint16_t kvt_f32_to_bf16_any(float f)
{
	uint32_t u = kvt_f2u(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

KVT_HD_FN void kvt_store_elem(uint8_t *base, uint32_t dtype, size_t i, float v)
{
	if (dtype == KVT_DTYPE_F32)
		((float *)base)[i] = v;
	else if (dtype == KVT_DTYPE_F16)
		((uint16_t *)base)[i] = __half_as_ushort(__float2half_rn(v));
	else
		((uint16_t *)base)[i] = kvt_f32_to_bf16_any(v);
}

#endif
