/* gpu_test_util.h - shared by the store's GPU tests (reload, append):
 * reading GPU-tier bytes back to the host, and skipping without a device.
 * Include before store/reload_util.h. */
#ifndef KVTIER_TESTS_GPU_TEST_UTIL_H
#define KVTIER_TESTS_GPU_TEST_UTIL_H

#include <criterion/criterion.h>

#include "kvt_kernels.h"

static inline void dev_read(void *dst, const void *src, size_t n)
{
	cr_assert_eq(kvt_gpu_copy_async(dst, src, n, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
}
#define RU_DEVICE_READ dev_read

static inline void need_gpu(void)
{
	if (kvt_gpu_available())
		cr_skip_test("no usable CUDA device (or a build without CUDA): "
			     "GPU test skipped; run scripts/device_check.sh on a GPU machine");
}

#endif
