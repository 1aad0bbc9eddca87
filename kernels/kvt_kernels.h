/*
 * kvt_kernels.h - GPU kernels and CUDA runtime helpers, with no CUDA types.
 * Without CUDA every function returns KVT_ENOGPU. Streams are passed as
 * opaque struct kvt_stream pointers (a cudaStream_t underneath; NULL is the
 * default stream).
 */
#ifndef KVTIER_KERNELS_H
#define KVTIER_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

struct kvt_stream;

/* 0 when a CUDA device is usable, KVT_ENOGPU otherwise. */
int kvt_gpu_available(void);

/* Registers host memory [ptr, ptr+len) as pinned and mapped for the GPU.
 * KVT_ENOGPU without CUDA; KVT_ECUDA on failure. */
int kvt_gpu_host_register(void *ptr, size_t len);

/* Undoes kvt_gpu_host_register. */
int kvt_gpu_host_unregister(void *ptr);

#endif
