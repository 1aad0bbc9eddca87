// gather.cuh - scattered copy of many blocks in one launch.
#ifndef KVTIER_KERNELS_GATHER_CUH
#define KVTIER_KERNELS_GATHER_CUH

#include "common.cuh"

#define GATHER_THREADS 256
#define GATHER_CHUNK (64u << 10) // bytes per thread block

// Enqueues the copy of n items (device table) whose lengths are at most
// max_len; 0 or a kvtier code.
int kvt_gather_launch(const struct kvt_gpu_item *items, uint32_t n,
		      uint64_t max_len, cudaStream_t st);

// Thread tid of nt copies its share of len bytes src -> dst: 16-byte loads,
// several in flight per thread, when both ends are 16-byte aligned; 4-byte
// words when both are 4-byte aligned; bytes otherwise.
KVT_HD_FN void kvt_block_copy(const uint8_t *src, uint8_t *dst, uint32_t len,
			      uint32_t tid, uint32_t nt)
{
	uint32_t done = 0;
	if ((((uintptr_t)src | (uintptr_t)dst) & 15u) == 0) {
		enum { UNROLL = 4 };
		const uint4 *s = (const uint4 *)src;
		uint4 *d = (uint4 *)dst;
		const uint32_t nv = len / 16u;
		for (uint32_t i = tid; i < nv; i += nt * UNROLL) {
			uint4 v[UNROLL];
			for (int u = 0; u < UNROLL; u++)
				if (i + u * nt < nv)
					v[u] = s[i + u * nt];
			for (int u = 0; u < UNROLL; u++)
				if (i + u * nt < nv)
					d[i + u * nt] = v[u];
		}
		done = nv * 16u;
	} else if ((((uintptr_t)src | (uintptr_t)dst) & 3u) == 0) {
		// 4-byte aligned (encoded blocks need not start on 16 bytes)
		const uint32_t *s = (const uint32_t *)src;
		uint32_t *d = (uint32_t *)dst;
		const uint32_t nw = len / 4u;
		for (uint32_t i = tid; i < nw; i += nt)
			d[i] = s[i];
		done = nw * 4u;
	}
	for (uint32_t i = done + tid; i < len; i += nt)
		dst[i] = src[i];
}

#endif
