/* test_npy.c - .npy reader/writer: round trip and every kind of bad file. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

static char path[512];

static void setup(void)
{
	const char *dir = getenv("KVT_TEST_TMP");
	mkdir(dir ? dir : "/tmp", 0755);
	snprintf(path, sizeof path, "%s/npy-%d.npy", dir ? dir : "/tmp", getpid());
}

static void write_raw(const char *hdr, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
	size_t hl = strlen(hdr);
	pre[8] = (uint8_t)hl;
	pre[9] = (uint8_t)(hl >> 8);
	fwrite(pre, 1, 10, f);
	fwrite(hdr, 1, hl, f);
	fwrite(data, 1, n, f);
	fclose(f);
}

TestSuite(npy, .init = setup);

Test(npy, round_trip_f16_and_f32)
{
	uint64_t shape[3] = {2, 3, 4};
	float x[24];
	for (int i = 0; i < 24; i++)
		x[i] = (float)i * 0.5f;
	cr_assert_eq(kvt_npy_write(path, KVT_DTYPE_F32, 3, shape, x), 0);
	struct kvt_npy h;
	void *data;
	cr_assert_eq(kvt_npy_read(path, &h, &data, NULL, 0), 0);
	cr_assert_eq(h.dtype, KVT_DTYPE_F32);
	cr_assert_eq(h.ndim, 3);
	cr_assert_eq(h.shape[0], 2);
	cr_assert_eq(h.shape[2], 4);
	cr_assert_eq(h.data_offset % 64, 0);
	cr_assert_eq(memcmp(data, x, sizeof x), 0);
	free(data);
	cr_assert_eq(kvt_npy_write(path, KVT_DTYPE_F16, 3, shape, x), 0);
	cr_assert_eq(kvt_npy_read(path, &h, &data, NULL, 0), 0);
	cr_assert_eq(h.dtype, KVT_DTYPE_F16);
	cr_assert_eq(h.data_len, 48);
	free(data);
}

static int read_err(char *msg, size_t cap)
{
	struct kvt_npy h;
	void *data = NULL;
	int rc = kvt_npy_read(path, &h, &data, msg, cap);
	cr_assert_null(data);
	return rc;
}

Test(npy, numpy_spacing_is_accepted)
{
	float x[6] = {0};
	write_raw("{'descr':'<f4','fortran_order':False,'shape':(1,2,3)}\n", x, 24);
	struct kvt_npy h;
	void *data;
	cr_assert_eq(kvt_npy_read(path, &h, &data, NULL, 0), 0);
	cr_assert_eq(h.shape[1], 2);
	free(data);
}

Test(npy, bad_files_are_clear_errors)
{
	char msg[256];
	float x[6] = {0};
	write_raw("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, 24);
	cr_assert_eq(read_err(msg, sizeof msg), -ENOTSUP);
	cr_assert(strstr(msg, "dtype"), "%s", msg);
	write_raw("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2, 3), }\n", x, 24);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	write_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, 20);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	cr_assert(strstr(msg, "truncated"), "%s", msg);
	write_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }\n", x, 28);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	write_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1, x, 3), }\n", x, 24);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	write_raw("{'descr': '<f4', 'fortran_order': False, }\n", x, 24);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	FILE *f = fopen(path, "wb");
	fputs("PK\x03\x04 not numpy", f);
	fclose(f);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	cr_assert(strstr(msg, "magic"), "%s", msg);
	f = fopen(path, "wb");
	fwrite("\x93NUMPY\x01\x00\xff\x00{'descr'", 1, 17, f);
	fclose(f);
	cr_assert_eq(read_err(msg, sizeof msg), KVT_EFORMAT);
	unlink(path);
	cr_assert_eq(read_err(msg, sizeof msg), -ENOENT);
}
