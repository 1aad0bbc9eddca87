/*
 * contract.c - what every tier promises (tiers/tier.h), compiled once per
 * tier with that tier's factory.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"
#include "contract.h"

static char dir[512];
static int seq;

static struct kvt_tier *fresh(uint64_t budget)
{
	const char *t = getenv("KVT_TEST_TMP");
	struct kvt_tier *tier;
	mkdir(t ? t : "/tmp", 0755);
	snprintf(dir, sizeof dir, "%s/contract-%d-%d", t ? t : "/tmp", getpid(), seq++);
	mkdir(dir, 0700);
	int rc = contract_tier_open(dir, budget, &tier);
	if (rc == KVT_ENOGPU)
		cr_skip_test("no usable CUDA device: GPU tier contract skipped");
	cr_assert_eq(rc, 0);
	return tier;
}

static struct kvt_block_meta meta_of(const void *data, uint32_t len, uint16_t nt)
{
	return (struct kvt_block_meta){.len = len, .raw_len = len * 2, .codec = 1,
				       .n_tokens = nt,
				       .checksum = kvt_checksum(data, len)};
}

/* Incompressible bytes, so budgets hold with zstd on. */
static void fill(uint8_t *b, size_t n, unsigned seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

Test(contract, put_get_stat_del)
{
	struct kvt_tier *t = fresh(0);
	uint8_t a[5000], b[5000];
	fill(a, sizeof a, 1);
	struct kvt_block_key k = {7, 2, 3};
	struct kvt_block_meta m = meta_of(a, sizeof a, 16), got;
	cr_assert_eq(t->ops->get(t, &k, b, sizeof b, &got), KVT_ENOTFOUND);
	cr_assert_eq(t->ops->put(t, &k, a, &m), 0);
	memset(b, 0, sizeof b);
	cr_assert_eq(t->ops->get(t, &k, b, sizeof b, &got), 0);
	cr_assert_eq(memcmp(a, b, sizeof a), 0);
	cr_assert_eq(got.len, m.len);
	cr_assert_eq(got.checksum, m.checksum);
	cr_assert_eq(got.n_tokens, 16);
	cr_assert_eq(t->ops->get(t, &k, b, 100, NULL), -ENOBUFS);
	cr_assert_eq(t->ops->stat(t, &k, &got), 0);
	cr_assert_eq(got.raw_len, m.raw_len);
	struct kvt_block_key other = {7, 2, 4};
	cr_assert_eq(t->ops->stat(t, &other, &got), KVT_ENOTFOUND);
	cr_assert_eq(t->ops->del(t, &k), 0);
	cr_assert_eq(t->ops->del(t, &k), KVT_ENOTFOUND);
	cr_assert_eq(t->ops->get(t, &k, b, sizeof b, NULL), KVT_ENOTFOUND);
	kvt_tier_destroy(t);
}

Test(contract, replace_with_other_sizes)
{
	struct kvt_tier *t = fresh(0);
	struct kvt_block_key k = {1, 0, 0};
	uint8_t a[9000], b[9000];
	for (unsigned len = 100; len <= 9000; len += 2900) {
		fill(a, len, len);
		struct kvt_block_meta m = meta_of(a, len, 1);
		cr_assert_eq(t->ops->put(t, &k, a, &m), 0);
		cr_assert_eq(t->ops->get(t, &k, b, sizeof b, NULL), 0);
		cr_assert_eq(memcmp(a, b, len), 0);
	}
	struct kvt_tier_usage u;
	cr_assert_eq(t->ops->usage(t, &u), 0);
	cr_assert_eq(u.n_blocks, 1);
	kvt_tier_destroy(t);
}

struct count {
	int n;
	uint64_t sum;
};

static int count_fn(void *ctx, const struct kvt_block_key *k,
		    const struct kvt_block_meta *m)
{
	struct count *c = ctx;
	c->n++;
	c->sum += k->block + m->len;
	return 0;
}

Test(contract, iter_usage_and_get_many)
{
	struct kvt_tier *t = fresh(0);
	uint8_t a[3000];
	struct kvt_block_key keys[50];
	uint64_t want = 0;
	for (uint32_t i = 0; i < 50; i++) {
		keys[i] = (struct kvt_block_key){3, i % 5, i};
		fill(a, sizeof a, i);
		struct kvt_block_meta m = meta_of(a, 1000 + i, 1);
		cr_assert_eq(t->ops->put(t, &keys[i], a, &m), 0);
		want += i + 1000 + i;
	}
	struct count c = {0, 0};
	cr_assert_eq(t->ops->iter(t, count_fn, &c), 0);
	cr_assert_eq(c.n, 50);
	cr_assert_eq(c.sum, want);
	struct kvt_tier_usage u;
	cr_assert_eq(t->ops->usage(t, &u), 0);
	cr_assert(u.present);
	cr_assert_eq(u.n_blocks, 50);
	cr_assert_geq(u.used_bytes, 50 * 1000);
	if (t->ops->get_many) {
		void *dsts[51];
		size_t caps[51];
		int res[51];
		struct kvt_block_key k2[51];
		memcpy(k2, keys, sizeof keys);
		k2[50] = (struct kvt_block_key){9, 9, 9};
		for (int i = 0; i < 51; i++) {
			dsts[i] = malloc(3000);
			caps[i] = 3000;
		}
		cr_assert_eq(t->ops->get_many(t, 51, k2, dsts, caps, res), KVT_ENOTFOUND);
		for (uint32_t i = 0; i < 50; i++) {
			fill(a, sizeof a, i);
			cr_assert_eq(res[i], 0);
			cr_assert_eq(memcmp(dsts[i], a, 1000 + i), 0, "block %u", i);
		}
		cr_assert_eq(res[50], KVT_ENOTFOUND);
		for (int i = 0; i < 51; i++)
			free(dsts[i]);
	}
	kvt_tier_destroy(t);
}

Test(contract, budget_is_enospace_and_keeps_old_data)
{
	struct kvt_tier *t = fresh(64 * 1024);
	uint8_t a[8192], b[8192];
	int stored = 0, rc = 0;
	for (uint32_t i = 0; i < 64 && rc == 0; i++) {
		fill(a, sizeof a, i);
		struct kvt_block_key k = {5, 0, i};
		struct kvt_block_meta m = meta_of(a, sizeof a, 1);
		rc = t->ops->put(t, &k, a, &m);
		stored += rc == 0;
	}
	cr_assert_eq(rc, KVT_ENOSPACE);
	cr_assert_geq(stored, 4);
	cr_assert_leq(stored, 8);
	for (uint32_t i = 0; i < (uint32_t)stored; i++) {
		struct kvt_block_key k = {5, 0, i};
		fill(a, sizeof a, i);
		cr_assert_eq(t->ops->get(t, &k, b, sizeof b, NULL), 0);
		cr_assert_eq(memcmp(a, b, sizeof a), 0);
	}
	/* Deleting frees room again. */
	struct kvt_block_key k0 = {5, 0, 0}, kn = {5, 1, 0};
	cr_assert_eq(t->ops->del(t, &k0), 0);
	struct kvt_block_meta m = meta_of(a, sizeof a, 1);
	cr_assert_eq(t->ops->put(t, &kn, a, &m), 0);
	kvt_tier_destroy(t);
}

Test(contract, persistence_matches_the_tier_kind)
{
	struct kvt_tier *t = fresh(0);
	uint8_t a[4096], b[4096];
	fill(a, sizeof a, 42);
	struct kvt_block_key k = {11, 1, 1};
	struct kvt_block_meta m = meta_of(a, sizeof a, 3);
	cr_assert_eq(t->ops->put(t, &k, a, &m), 0);
	if (t->ops->sync)
		cr_assert_eq(t->ops->sync(t), 0);
	if (t->ops->catalog_put)
		cr_assert_eq(t->ops->catalog_put(t, "cache-x", "rec", 3), 0);
	kvt_tier_destroy(t);
	cr_assert_eq(contract_tier_open(dir, 0, &t), 0);
	int rc = t->ops->get(t, &k, b, sizeof b, NULL);
	if (contract_tier_persistent()) {
		cr_assert_eq(rc, 0);
		cr_assert_eq(memcmp(a, b, sizeof a), 0);
	} else {
		cr_assert_eq(rc, KVT_ENOTFOUND);
	}
	kvt_tier_destroy(t);
}
