/* test_error.c - error strings and shape checks. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "kvtier/kvtier.h"

Test(error, every_kvt_code_has_its_own_message)
{
	const char *seen[32] = {0};
	int n = 0;
	for (int e = KVT_ECODEC; e <= KVT_ENOTFOUND; e++) {
		const char *m = kvt_strerror(e);
		cr_assert_neq(strcmp(m, "unknown error"), 0, "code %d", e);
		for (int j = 0; j < n; j++)
			cr_assert_neq(strcmp(m, seen[j]), 0, "code %d", e);
		seen[n++] = m;
	}
}

Test(error, errno_codes_use_strerror)
{
	cr_assert_str_eq(kvt_strerror(-ENOENT), strerror(ENOENT));
	cr_assert_str_eq(kvt_strerror(-99999), "unknown error");
}

Test(shape, limits_are_enforced)
{
	struct kvt_shape s = {30, 3, 64, 16, KVT_DTYPE_F16};
	cr_assert_eq(kvt_shape_check(&s), 0);
	cr_assert_eq(kvt_block_bytes(&s), 2u * 3 * 16 * 64 * 2);
	s.block_tokens = 0;
	cr_assert_eq(kvt_shape_check(&s), -EINVAL);
	s.block_tokens = 16;
	s.dtype = (enum kvt_dtype)9;
	cr_assert_eq(kvt_shape_check(&s), -EINVAL);
}
