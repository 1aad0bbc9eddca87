/*
 * npy.h - NumPy .npy files (format versions 1.0-3.0), little-endian float16
 * and float32 arrays in C order. Used by the CLI and the tests.
 */
#ifndef KVTIER_COMMON_NPY_H
#define KVTIER_COMMON_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"

#define KVT_NPY_MAX_DIMS 8

struct kvt_npy {
	enum kvt_dtype dtype;          /* F16 or F32 */
	uint32_t ndim;
	uint64_t shape[KVT_NPY_MAX_DIMS];
	size_t data_offset;            /* bytes before the array data */
	size_t data_len;               /* product of shape * element size */
};

/*
 * Parses the header at the start of buf (len bytes available). On error
 * returns KVT_EFORMAT (bad magic, truncated, malformed dictionary,
 * Fortran order, shape too large), KVT_EVERSION (format version), -ENOTSUP
 * (a dtype other than <f2 / <f4); msg (cap bytes, may be NULL) gets a
 * one-line explanation.
 */
int kvt_npy_parse(const void *buf, size_t len, struct kvt_npy *out, char *msg,
		  size_t cap);

/*
 * Reads a whole .npy file. On success *data is a malloc'd buffer of
 * out->data_len bytes (the caller frees it). Errors: those of kvt_npy_parse,
 * KVT_EFORMAT when the file is shorter or longer than its header says,
 * -errno from the file system.
 */
int kvt_npy_read(const char *path, struct kvt_npy *out, void **data, char *msg,
		 size_t cap);

/*
 * Writes data as a version 1.0 .npy file: to path.tmp, then renamed over
 * path, so a failed write never leaves a partial file under path.
 * Errors: -EINVAL (dtype, ndim), -errno.
 */
int kvt_npy_write(const char *path, enum kvt_dtype dtype, uint32_t ndim,
		  const uint64_t *shape, const void *data);

#endif
