// cuda_runtime.cu - CUDA runtime helpers; errors map to KVT_ codes.
#include <cuda_runtime.h>

extern "C" {
#include "kvt_kernels.h"
}

extern "C" int kvt_gpu_available(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
		cudaGetLastError();
		return KVT_ENOGPU;
	}
	return 0;
}

extern "C" int kvt_gpu_host_register(void *ptr, size_t len)
{
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	cudaError_t e = cudaHostRegister(ptr, len, cudaHostRegisterMapped);
	return e == cudaSuccess ? 0 : KVT_ECUDA;
}

extern "C" int kvt_gpu_host_unregister(void *ptr)
{
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	return cudaHostUnregister(ptr) == cudaSuccess ? 0 : KVT_ECUDA;
}
