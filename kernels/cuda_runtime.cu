// cuda_runtime.cu - CUDA runtime helpers; errors map to kvtier codes.
#include "common.cuh"

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
	cudaError_t e = cudaHostRegister(ptr, len, cudaHostRegisterMapped |
						   cudaHostRegisterPortable);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return KVT_ECUDA;
	}
	return 0;
}

extern "C" int kvt_gpu_host_unregister(void *ptr)
{
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	return kvt_cuda_status(cudaHostUnregister(ptr)) ? KVT_ECUDA : 0;
}

extern "C" int kvt_stream_create(struct kvt_stream **out)
{
	cudaStream_t s;
	if (!out)
		return -EINVAL;
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	int rc = kvt_cuda_status(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	if (rc == 0)
		*out = (struct kvt_stream *)s;
	return rc;
}

extern "C" void kvt_stream_destroy(struct kvt_stream *s)
{
	if (s)
		cudaStreamDestroy(kvt_cu_stream(s));
}

extern "C" int kvt_stream_sync(struct kvt_stream *s)
{
	int rc = kvt_cuda_status(cudaStreamSynchronize(kvt_cu_stream(s)));
	return rc == -EINVAL ? -EINVAL : (rc ? KVT_ECUDA : 0);
}

extern "C" int kvt_stream_query(struct kvt_stream *s)
{
	cudaError_t e = cudaStreamQuery(kvt_cu_stream(s));
	if (e == cudaErrorNotReady)
		return -EAGAIN;
	return kvt_cuda_status(e) ? KVT_ECUDA : 0;
}

extern "C" int kvt_gpu_malloc(size_t len, void **dev)
{
	if (!dev || len == 0)
		return -EINVAL;
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	return kvt_cuda_status(cudaMalloc(dev, len));
}

extern "C" void kvt_gpu_free(void *dev)
{
	if (dev)
		cudaFree(dev);
}

extern "C" int kvt_gpu_host_alloc(size_t len, void **host)
{
	if (!host || len == 0)
		return -EINVAL;
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	return kvt_cuda_status(cudaHostAlloc(host, len, cudaHostAllocMapped |
							 cudaHostAllocPortable));
}

extern "C" void kvt_gpu_host_free(void *host)
{
	if (host)
		cudaFreeHost(host);
}

extern "C" int kvt_gpu_host_device_ptr(const void *host, void **dev)
{
	if (!host || !dev)
		return -EINVAL;
	cudaError_t e = cudaHostGetDevicePointer(dev, (void *)host, 0);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return kvt_gpu_available() ? KVT_ENOGPU : -EINVAL;
	}
	return 0;
}

extern "C" int kvt_gpu_copy_async(void *dst, const void *src, size_t len,
				  struct kvt_stream *s)
{
	if (len == 0)
		return 0;
	if (!dst || !src)
		return -EINVAL;
	return kvt_cuda_status(cudaMemcpyAsync(dst, src, len, cudaMemcpyDefault,
					       kvt_cu_stream(s)));
}

extern "C" int kvt_gpu_memset_async(void *dev, int byte, size_t len,
				    struct kvt_stream *s)
{
	if (len == 0)
		return 0;
	if (!dev)
		return -EINVAL;
	return kvt_cuda_status(cudaMemsetAsync(dev, byte, len, kvt_cu_stream(s)));
}

extern "C" int kvt_gpu_event_create(struct kvt_gpu_event **out)
{
	cudaEvent_t e;
	if (!out)
		return -EINVAL;
	if (kvt_gpu_available())
		return KVT_ENOGPU;
	int rc = kvt_cuda_status(cudaEventCreate(&e));
	if (rc == 0)
		*out = (struct kvt_gpu_event *)e;
	return rc;
}

extern "C" void kvt_gpu_event_destroy(struct kvt_gpu_event *e)
{
	if (e)
		cudaEventDestroy((cudaEvent_t)e);
}

extern "C" int kvt_gpu_event_record(struct kvt_gpu_event *e, struct kvt_stream *s)
{
	if (!e)
		return -EINVAL;
	return kvt_cuda_status(cudaEventRecord((cudaEvent_t)e, kvt_cu_stream(s)));
}

extern "C" int kvt_gpu_event_query(struct kvt_gpu_event *e)
{
	if (!e)
		return -EINVAL;
	cudaError_t r = cudaEventQuery((cudaEvent_t)e);
	if (r == cudaErrorNotReady)
		return -EAGAIN;
	return kvt_cuda_status(r) ? KVT_ECUDA : 0;
}

extern "C" int kvt_gpu_event_sync(struct kvt_gpu_event *e)
{
	if (!e)
		return -EINVAL;
	return kvt_cuda_status(cudaEventSynchronize((cudaEvent_t)e)) ? KVT_ECUDA : 0;
}

extern "C" int kvt_gpu_event_elapsed(struct kvt_gpu_event *start,
				     struct kvt_gpu_event *end, float *ms)
{
	if (!start || !end || !ms)
		return -EINVAL;
	return kvt_cuda_status(cudaEventElapsedTime(ms, (cudaEvent_t)start,
						    (cudaEvent_t)end));
}
