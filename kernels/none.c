/* none.c - the kernels module of a build without CUDA. */
#include "kvt_kernels.h"

int kvt_gpu_available(void)
{
	return KVT_ENOGPU;
}

int kvt_gpu_host_register(void *ptr, size_t len)
{
	(void)ptr;
	(void)len;
	return KVT_ENOGPU;
}

int kvt_gpu_host_unregister(void *ptr)
{
	(void)ptr;
	return KVT_ENOGPU;
}
