/*
 * test_gpu_tier.c - the GPU tier's asynchronous reload from the host tier:
 * raw blocks arrive byte for byte, KIVI blocks decoded on the GPU equal the
 * CPU decode, bad blocks are reported and dropped, a request too big for
 * the pool changes nothing. The contract suite (tests/tiers) covers the
 * keyed operations.
 */
#include <errno.h>

#include "checksum.h"
#include "gpu_tier.h"
#include "kernel_test.h"

static const struct kvt_kivi_geom geom = {8, 16, 128, KVT_DTYPE_F16, 2, 16, 0};
static const struct kvt_block_codecs codecs = {&geom, NULL};

Test(gpu_tier, absent_without_a_device)
{
	if (kvt_gpu_available() == 0)
		cr_skip_test("a GPU is present: the no-device path is not exercised here");
	struct kvt_tier *t;
	cr_assert_eq(kvt_gpu_tier_create(1 << 20, &t), KVT_ENOGPU);
}

struct fixture {
	struct kvt_tier *host, *gpu;
	size_t raw, enc;
	uint32_t n;
	struct kvt_block_key *keys;
	struct kvt_block_meta *metas;
	const void **srcs;
	uint8_t **want; /* expected raw bytes per block */
};

/* Block i: raw when i % 3 == 0, else KIVI; all stored in the host tier. */
static void setup(struct fixture *f, uint32_t n, uint64_t gpu_budget)
{
	f->n = n;
	cr_assert_eq(kvt_kivi_geom_sizes(&geom, &f->raw, NULL, &f->enc), 0);
	cr_assert_eq(kvt_host_tier_create(0, &f->host), 0);
	cr_assert_eq(kvt_gpu_tier_create(gpu_budget, &f->gpu), 0);
	f->keys = calloc(n, sizeof *f->keys);
	f->metas = calloc(n, sizeof *f->metas);
	f->srcs = calloc(n, sizeof *f->srcs);
	f->want = calloc(n, sizeof *f->want);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *raw = kt_raw_block(&geom, i + 1), *data = raw;
		size_t len = f->raw;
		int kivi = i % 3 != 0;
		if (kivi) {
			data = kt_cpu_encode(&geom, raw, &len);
			kt_cpu_decode(&geom, data, len, raw);
		}
		f->keys[i] = (struct kvt_block_key){42, i % 4, i};
		f->metas[i] = (struct kvt_block_meta){
			.len = (uint32_t)len, .raw_len = (uint32_t)f->raw,
			.codec = kivi ? KVT_CODEC_KIVI : KVT_CODEC_RAW,
			.n_tokens = 16, .checksum = kvt_checksum(data, len)};
		cr_assert_eq(f->host->ops->put(f->host, &f->keys[i], data, &f->metas[i]), 0);
		struct kvt_block_loc loc;
		cr_assert_eq(f->host->ops->locate(f->host, &f->keys[i], &loc), 0);
		f->srcs[i] = loc.ptr;
		f->want[i] = raw;
		if (kivi)
			free(data);
	}
}

static void teardown(struct fixture *f)
{
	kvt_tier_destroy(f->gpu);
	kvt_tier_destroy(f->host);
	for (uint32_t i = 0; i < f->n; i++)
		free(f->want[i]);
	free(f->want);
	free(f->srcs);
	free(f->metas);
	free(f->keys);
}

Test(gpu_tier, reload_gathers_raw_and_decodes_kivi_blocks)
{
	need_gpu();
	struct fixture f;
	setup(&f, 40, 0);
	struct kvt_stream *s;
	cr_assert_eq(kvt_stream_create(&s), 0);
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, f.n, f.keys, f.srcs, f.metas,
					 &codecs, s), 0);
	int rc;
	while ((rc = kvt_gpu_tier_reload_poll(f.gpu)) == -EAGAIN)
		;
	cr_assert_eq(rc, 0);
	int *res = calloc(f.n, sizeof *res);
	cr_assert_eq(kvt_gpu_tier_reload_wait(f.gpu, res), 0);
	uint8_t *got = malloc(f.raw);
	for (uint32_t i = 0; i < f.n; i++) {
		struct kvt_block_meta m;
		struct kvt_block_loc loc;
		cr_assert_eq(res[i], 0);
		cr_assert_eq(f.gpu->ops->get(f.gpu, &f.keys[i], got, f.raw, &m), 0);
		cr_assert_eq(m.codec, KVT_CODEC_RAW);
		cr_assert_eq(m.len, f.raw);
		cr_assert_eq(memcmp(got, f.want[i], f.raw), 0, "block %u", i);
		cr_assert_eq(f.gpu->ops->locate(f.gpu, &f.keys[i], &loc), 0);
		cr_assert_eq(loc.fd, -1);
		cr_assert_eq((uintptr_t)loc.ptr % 256, 0);
	}
	struct kvt_tier_usage u;
	cr_assert_eq(f.gpu->ops->usage(f.gpu, &u), 0);
	cr_assert_eq(u.n_blocks, f.n);
	free(got);
	free(res);
	kvt_stream_destroy(s);
	teardown(&f);
}

Test(gpu_tier, a_corrupt_kivi_block_is_reported_and_dropped)
{
	need_gpu();
	struct fixture f;
	setup(&f, 6, 0);
	((uint8_t *)f.srcs[1])[0] ^= 0xff; /* K magic of a KIVI block */
	int res[6];
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, f.n, f.keys, f.srcs, f.metas,
					 &codecs, NULL), 0);
	cr_assert_eq(kvt_gpu_tier_reload_wait(f.gpu, res), KVT_EFORMAT);
	cr_assert_eq(res[1], KVT_EFORMAT);
	struct kvt_block_meta m;
	cr_assert_eq(f.gpu->ops->stat(f.gpu, &f.keys[1], &m), KVT_ENOTFOUND);
	for (uint32_t i = 0; i < f.n; i++)
		if (i != 1)
			cr_assert_eq(f.gpu->ops->stat(f.gpu, &f.keys[i], &m), 0);
	teardown(&f);
}

Test(gpu_tier, a_request_larger_than_the_pool_changes_nothing)
{
	need_gpu();
	struct fixture f;
	setup(&f, 12, 10 * 65536); /* room for 10 raw blocks */
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, 5, f.keys, f.srcs, f.metas,
					 &codecs, NULL), 0);
	cr_assert_eq(kvt_gpu_tier_reload_wait(f.gpu, NULL), 0);
	struct kvt_tier_usage before, after;
	cr_assert_eq(f.gpu->ops->usage(f.gpu, &before), 0);
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, f.n, f.keys, f.srcs, f.metas,
					 &codecs, NULL), KVT_ENOSPACE);
	cr_assert_eq(f.gpu->ops->usage(f.gpu, &after), 0);
	cr_assert_eq(after.n_blocks, before.n_blocks);
	cr_assert_eq(after.used_bytes, before.used_bytes);
	uint8_t *got = malloc(f.raw);
	for (uint32_t i = 0; i < 5; i++) {
		cr_assert_eq(f.gpu->ops->get(f.gpu, &f.keys[i], got, f.raw, NULL), 0);
		cr_assert_eq(memcmp(got, f.want[i], f.raw), 0);
	}
	free(got);
	teardown(&f);
}

Test(gpu_tier, bad_requests_are_rejected)
{
	need_gpu();
	struct fixture f;
	setup(&f, 3, 0);
	struct kvt_block_meta m[3];
	memcpy(m, f.metas, sizeof m);
	m[1].len -= 4; /* wrong KIVI length */
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, 3, f.keys, f.srcs, m, &codecs, NULL), -EINVAL);
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, 3, f.keys, f.srcs, f.metas, NULL, NULL), -EINVAL);
	m[1] = f.metas[1];
	m[2].codec = KVT_CODEC_ZIPCACHE; /* no ZipCache geometry given */
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, 3, f.keys, f.srcs, m, &codecs, NULL), -EINVAL);
	m[2].codec = 7;
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, 3, f.keys, f.srcs, m, &codecs, NULL), KVT_ECODEC);
	uint8_t unmapped[64];
	const void *srcs[1] = {unmapped};
	struct kvt_block_meta rm = {.len = 64, .raw_len = 64, .codec = KVT_CODEC_RAW};
	cr_assert_eq(kvt_gpu_tier_reload(f.gpu, 1, f.keys, srcs, &rm, NULL, NULL), -EINVAL);
	struct kvt_tier_usage u;
	cr_assert_eq(f.gpu->ops->usage(f.gpu, &u), 0);
	cr_assert_eq(u.n_blocks, 0);
	teardown(&f);
}

Test(gpu_tier, spill_writes_the_cpu_encoding_to_host_memory)
{
	need_gpu();
	struct fixture f;
	setup(&f, 9, 0);
	/* Raw blocks onto the GPU (keys of the raw items of the fixture). */
	struct kvt_block_key keys[9];
	uint8_t *raws[9];
	size_t n = 0;
	for (uint32_t i = 0; i < f.n; i++) {
		raws[n] = kt_raw_block(&geom, 500 + i);
		keys[n] = (struct kvt_block_key){43, 0, i};
		struct kvt_block_meta m = {.len = (uint32_t)f.raw, .raw_len = (uint32_t)f.raw,
					   .codec = KVT_CODEC_RAW, .n_tokens = 16};
		cr_assert_eq(f.gpu->ops->put(f.gpu, &keys[n], raws[n], &m), 0);
		n++;
	}
	uint8_t *out;
	cr_assert_eq(kvt_gpu_host_alloc(n * f.enc, (void **)&out), 0);
	memset(out, 0xee, n * f.enc);
	void *dsts[9];
	for (size_t i = 0; i < n; i++)
		dsts[i] = out + (n - 1 - i) * f.enc;
	cr_assert_eq(kvt_gpu_tier_spill(f.gpu, n, keys, dsts, &geom, NULL), 0);
	cr_assert_eq(kvt_gpu_tier_reload_wait(f.gpu, NULL), 0);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		uint8_t *want = kt_cpu_encode(&geom, raws[i], &len);
		cr_assert_eq(len, f.enc);
		cr_assert_eq(memcmp(dsts[i], want, len), 0, "block %zu", i);
		free(want);
		free(raws[i]);
	}
	struct kvt_tier_usage u;
	cr_assert_eq(f.gpu->ops->usage(f.gpu, &u), 0);
	cr_assert_eq(u.n_blocks, n);
	/* A key that is not there, and a block of another size. */
	struct kvt_block_key missing = {99, 0, 0};
	cr_assert_eq(kvt_gpu_tier_spill(f.gpu, 1, &missing, dsts, &geom, NULL), KVT_ENOTFOUND);
	struct kvt_block_meta small = {.len = 1000, .raw_len = 1000, .codec = KVT_CODEC_RAW};
	cr_assert_eq(f.gpu->ops->put(f.gpu, &missing, out, &small), 0);
	cr_assert_eq(kvt_gpu_tier_spill(f.gpu, 1, &missing, dsts, &geom, NULL), -EINVAL);
	kvt_gpu_host_free(out);
	teardown(&f);
}

/* Encoded blocks of about 280 KiB: too big for the fused kernel's shared
 * memory, so the reload goes through the staging area. */
Test(gpu_tier, big_kivi_blocks_reload_through_staging)
{
	need_gpu();
	const struct kvt_kivi_geom big = {32, 64, 128, KVT_DTYPE_BF16, 8, 64, 0};
	size_t raw, enc;
	cr_assert_eq(kvt_kivi_geom_sizes(&big, &raw, NULL, &enc), 0);
	cr_assert_gt(enc, 227u << 10);
	struct kvt_tier *host, *gpu;
	cr_assert_eq(kvt_host_tier_create(0, &host), 0);
	cr_assert_eq(kvt_gpu_tier_create(0, &gpu), 0);
	enum { N = 3 };
	struct kvt_block_key keys[N];
	struct kvt_block_meta metas[N];
	const void *srcs[N];
	uint8_t *want[N];
	for (uint32_t i = 0; i < N; i++) {
		size_t len;
		want[i] = kt_raw_block(&big, 900 + i);
		uint8_t *e = kt_cpu_encode(&big, want[i], &len);
		kt_cpu_decode(&big, e, len, want[i]);
		keys[i] = (struct kvt_block_key){44, 1, i};
		metas[i] = (struct kvt_block_meta){.len = (uint32_t)len,
						   .raw_len = (uint32_t)raw,
						   .codec = KVT_CODEC_KIVI};
		cr_assert_eq(host->ops->put(host, &keys[i], e, &metas[i]), 0);
		struct kvt_block_loc loc;
		cr_assert_eq(host->ops->locate(host, &keys[i], &loc), 0);
		srcs[i] = loc.ptr;
		free(e);
	}
	int res[N];
	const struct kvt_block_codecs bc = {&big, NULL};
	cr_assert_eq(kvt_gpu_tier_reload(gpu, N, keys, srcs, metas, &bc, NULL), 0);
	cr_assert_eq(kvt_gpu_tier_reload_wait(gpu, res), 0);
	uint8_t *got = malloc(raw);
	for (uint32_t i = 0; i < N; i++) {
		cr_assert_eq(res[i], 0);
		cr_assert_eq(gpu->ops->get(gpu, &keys[i], got, raw, NULL), 0);
		cr_assert_eq(memcmp(got, want[i], raw), 0, "block %u", i);
		free(want[i]);
	}
	free(got);
	kvt_tier_destroy(gpu);
	kvt_tier_destroy(host);
}

/* ZipCache blocks (and raw ones) in one request: decoded on the GPU. */
Test(gpu_tier, reload_decodes_zipcache_blocks)
{
	need_gpu();
	const struct kt_zip_case *c = &kt_zip_cases[0];
	const struct kvt_kivi_geom kg = kt_zip_as_kivi(&c->g);
	const struct kvt_block_codecs zc = {NULL, &c->g};
	const size_t raw = 2 * (size_t)c->g.heads * c->g.tokens * c->g.dim * 2;
	struct kvt_tier *host, *gpu;
	cr_assert_eq(kvt_host_tier_create(0, &host), 0);
	cr_assert_eq(kvt_gpu_tier_create(0, &gpu), 0);
	enum { N = 8 };
	struct kvt_block_key keys[N];
	struct kvt_block_meta metas[N];
	const void *srcs[N];
	uint8_t *want[N];
	for (uint32_t i = 0; i < N; i++) {
		size_t len = raw;
		want[i] = kt_raw_block(&kg, 700 + i);
		uint8_t *data = want[i];
		if (i % 4) {
			data = kt_zip_encode(c, want[i], &len, i);
			kt_zip_decode(&c->g, data, len, want[i]);
		}
		keys[i] = (struct kvt_block_key){45, 0, i};
		metas[i] = (struct kvt_block_meta){
			.len = (uint32_t)len, .raw_len = (uint32_t)raw,
			.codec = i % 4 ? KVT_CODEC_ZIPCACHE : KVT_CODEC_RAW};
		cr_assert_eq(host->ops->put(host, &keys[i], data, &metas[i]), 0);
		struct kvt_block_loc loc;
		cr_assert_eq(host->ops->locate(host, &keys[i], &loc), 0);
		srcs[i] = loc.ptr;
		if (data != want[i])
			free(data);
	}
	((uint8_t *)srcs[3])[44] ^= 1; /* a broken bitmap: block 3 fails alone */
	int res[N];
	cr_assert_eq(kvt_gpu_tier_reload(gpu, N, keys, srcs, metas, &zc, NULL), 0);
	cr_assert_eq(kvt_gpu_tier_reload_wait(gpu, res), KVT_EFORMAT);
	uint8_t *got = malloc(raw);
	for (uint32_t i = 0; i < N; i++) {
		if (i == 3) {
			cr_assert_eq(res[i], KVT_EFORMAT);
			cr_assert_eq(gpu->ops->get(gpu, &keys[i], got, raw, NULL), KVT_ENOTFOUND);
		} else {
			cr_assert_eq(res[i], 0, "block %u", i);
			cr_assert_eq(gpu->ops->get(gpu, &keys[i], got, raw, NULL), 0);
			cr_assert_eq(memcmp(got, want[i], raw), 0, "block %u", i);
		}
		free(want[i]);
	}
	free(got);
	kvt_tier_destroy(gpu);
	kvt_tier_destroy(host);
}

Test(gpu_tier, alloc_gives_slots_the_caller_fills)
{
	need_gpu();
	struct kvt_tier *gpu;
	/* Room for 4 blocks of 8 KiB. */
	cr_assert_eq(kvt_gpu_tier_create(4 * 8192, &gpu), 0);
	struct kvt_block_key keys[5];
	struct kvt_block_meta metas[5];
	void *addrs[5] = {0};
	uint8_t *want = malloc(8192), *got = malloc(8192);
	for (uint32_t i = 0; i < 5; i++) {
		keys[i] = (struct kvt_block_key){7, 0, i};
		metas[i] = (struct kvt_block_meta){.len = 8192, .raw_len = 8192,
						   .codec = KVT_CODEC_RAW, .n_tokens = 16};
	}
	struct kvt_tier_usage u;
	/* Five do not fit: nothing is reserved. */
	cr_assert_eq(kvt_gpu_tier_alloc(gpu, 5, keys, metas, addrs), KVT_ENOSPACE);
	cr_assert_eq(gpu->ops->usage(gpu, &u), 0);
	cr_assert_eq(u.n_blocks, 0);
	cr_assert_eq(u.used_bytes, 0);
	cr_assert_eq(kvt_gpu_tier_alloc(gpu, 3, keys, metas, addrs), 0);
	for (uint32_t i = 0; i < 3; i++) {
		struct kvt_block_loc loc;
		cr_assert_eq(gpu->ops->locate(gpu, &keys[i], &loc), 0);
		cr_assert_eq(loc.ptr, addrs[i]);
		/* The caller writes the bytes; the tier then serves them. */
		memset(want, 0x30 + (int)i, 8192);
		cr_assert_eq(kvt_gpu_copy_async(addrs[i], want, 8192, NULL), 0);
		cr_assert_eq(kvt_stream_sync(NULL), 0);
		struct kvt_block_meta m;
		cr_assert_eq(gpu->ops->get(gpu, &keys[i], got, 8192, &m), 0);
		cr_assert_eq(memcmp(got, want, 8192), 0);
		cr_assert_eq(m.len, 8192);
	}
	/* A stored key (or one given twice) is refused, all or nothing. */
	cr_assert_eq(kvt_gpu_tier_alloc(gpu, 2, &keys[2], metas, addrs), -EEXIST);
	struct kvt_block_key twice[2] = {keys[3], keys[3]};
	cr_assert_eq(kvt_gpu_tier_alloc(gpu, 2, twice, metas, addrs), -EEXIST);
	cr_assert_eq(gpu->ops->usage(gpu, &u), 0);
	cr_assert_eq(u.n_blocks, 3);
	cr_assert_eq(u.used_bytes, 3 * 8192);
	cr_assert_eq(gpu->ops->stat(gpu, &keys[3], &metas[3]), KVT_ENOTFOUND);
	cr_assert_eq(kvt_gpu_tier_alloc(gpu, 1, &keys[3], metas, addrs), 0);
	cr_assert_eq(kvt_gpu_tier_alloc(gpu, 1, &keys[4], metas, addrs), KVT_ENOSPACE);
	free(want);
	free(got);
	kvt_tier_destroy(gpu);
}
