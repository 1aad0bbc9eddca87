/* test_hmap.c - the hash map against a plain array model. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "hmap.h"
#include "kvtier/kvtier.h"

Test(hmap, random_operations_match_a_model)
{
	enum { N = 5000 };
	static uint32_t model[N];
	static int present[N];
	struct kvt_hmap m = {0};
	unsigned seed = 7;
	for (int op = 0; op < 200000; op++) {
		seed = seed * 1103515245u + 12345u;
		uint32_t k = (seed >> 8) % N, v;
		struct kvt_hkey key = {k * 0x10001ull, k % 7};
		switch ((seed >> 4) % 3) {
		case 0:
			cr_assert_eq(kvt_hmap_put(&m, key, (uint32_t)op), 0);
			model[k] = (uint32_t)op;
			present[k] = 1;
			break;
		case 1:
			cr_assert_eq(kvt_hmap_del(&m, key),
				     present[k] ? 0 : KVT_ENOTFOUND);
			present[k] = 0;
			break;
		default:
			if (present[k]) {
				cr_assert_eq(kvt_hmap_get(&m, key, &v), 0);
				cr_assert_eq(v, model[k]);
			} else {
				cr_assert_eq(kvt_hmap_get(&m, key, &v), KVT_ENOTFOUND);
			}
		}
	}
	size_t n = 0;
	for (int k = 0; k < N; k++)
		n += (size_t)present[k];
	cr_assert_eq(m.n, n);
	kvt_hmap_free(&m);
}
