/*
 * test_kernels.c - every GPU kernel against the CPU reference: KIVI codes
 * byte for byte (headers, padding and residual included), decoded values
 * bit for bit, the gather byte for byte, scores bit for bit and top-k
 * equal to a CPU top-k. GPU tests skip with a message when no device is
 * present; the geometry tests and the no-device behaviour run everywhere.
 */
#include <errno.h>
#include <math.h>

#include "kernel_test.h"
#include "kivi_geom_internal.h"
#include "kivi_internal.h"

#define F16 KVT_DTYPE_F16
#define BF16 KVT_DTYPE_BF16
#define F32 KVT_DTYPE_F32

static const struct kvt_kivi_geom geoms[] = {
	{8, 16, 128, F16, 2, 16, 0}, /* the store's default block, 64 KiB */
	{8, 16, 128, F16, 4, 16, 0},
	{8, 16, 128, F16, 8, 16, 0},
	{2, 32, 64, BF16, 2, 32, 0},
	{2, 32, 64, F32, 4, 32, 0},
	{3, 40, 64, F16, 2, 32, 4},  /* 32 quantized tokens, 8 residual */
	{1, 20, 32, F32, 8, 4, 2},   /* 16 quantized, 4 residual, group 4 */
	{2, 8, 64, BF16, 2, 16, 0},  /* fewer tokens than a group: all residual */
	{1, 64, 128, F16, 2, 64, 0}, /* groups past the register path */
	{2, 128, 128, F32, 4, 128, 0},
	{2, 16, 64, F16, 8, 4, 0},   /* 8-byte groups: scalar loads, 8-byte stores */
};
#define N_GEOMS (sizeof geoms / sizeof geoms[0])

/* ---------------------------------------------------------------- everywhere */

Test(kivi_geom, sizes_headers_and_sections_match_the_codec)
{
	for (size_t gi = 0; gi < N_GEOMS; gi++) {
		const struct kvt_kivi_geom *g = &geoms[gi];
		size_t raw, ks, enc, len;
		cr_assert_eq(kvt_kivi_geom_sizes(g, &raw, &ks, &enc), 0);
		uint8_t *block = kt_raw_block(g, gi + 1);
		uint8_t *cpu = kt_cpu_encode(g, block, &len);
		cr_assert_eq(enc, len, "geometry %zu", gi);
		cr_assert_eq(raw, 2 * (size_t)g->heads * g->tokens * g->dim *
					  kvt_dtype_size(g->dtype));
		for (int kind = 0; kind < 2; kind++) {
			const uint8_t *st = cpu + (kind ? ks : 0);
			struct kvt_kivi_hdr h;
			struct kvt_kivi_sect s;
			struct kvt_codec_header ch;
			struct kvt_kivi_layout l;
			kvt_kivi_hdr_of(g, kind, &h);
			kvt_kivi_sect_of(g, kind, &s);
			cr_assert_eq(memcmp(st, h.w, 40), 0, "header %zu/%d", gi, kind);
			cr_assert_eq(kvt_codec_read_header(st, s.end, &ch), 0);
			kvt_kivi_layout(&ch, &l);
			cr_assert_eq(s.tq, l.tq);
			cr_assert_eq(s.wpg, l.wpg);
			cr_assert_eq(s.scales, 40 + l.scales);
			cr_assert_eq(s.mins, 40 + l.mins);
			cr_assert_eq(s.residual, 40 + l.residual);
			cr_assert_eq(s.end, 40 + l.total);
		}
		free(cpu);
		free(block);
	}
}

Test(kivi_geom, rejects_what_the_codec_rejects)
{
	struct kvt_kivi_geom g = {2, 16, 64, F16, 2, 16, 0};
	size_t raw;
	cr_assert_eq(kvt_kivi_geom_check(&g), 0);
	g.bits = 3;
	cr_assert_eq(kvt_kivi_geom_check(&g), KVT_ECODEC);
	g.bits = 2, g.group = 24; /* does not divide dim */
	cr_assert_eq(kvt_kivi_geom_check(&g), KVT_ECODEC);
	g.group = 8; /* 8 * 2 bits is not a whole word */
	cr_assert_eq(kvt_kivi_geom_sizes(&g, &raw, NULL, NULL), KVT_ECODEC);
	g.group = 16, g.heads = 0;
	cr_assert_eq(kvt_kivi_geom_check(&g), -EINVAL);
	g.heads = 2, g.dtype = (enum kvt_dtype)9;
	cr_assert_eq(kvt_kivi_geom_check(&g), -EINVAL);
	cr_assert_eq(kvt_kivi_geom_check(NULL), -EINVAL);
}

Test(kernels, without_a_device_everything_is_enogpu)
{
	if (kvt_gpu_available() == 0)
		cr_skip_test("a GPU is present: the no-device path is not exercised here");
	struct kvt_stream *s;
	struct kvt_gpu_batch *b;
	struct kvt_gpu_event *e;
	void *p;
	cr_assert_eq(kvt_stream_create(&s), KVT_ENOGPU);
	cr_assert_eq(kvt_gpu_batch_create(16, &b), KVT_ENOGPU);
	cr_assert_eq(kvt_gpu_event_create(&e), KVT_ENOGPU);
	cr_assert_eq(kvt_gpu_malloc(4096, &p), KVT_ENOGPU);
	cr_assert_eq(kvt_gpu_host_alloc(4096, &p), KVT_ENOGPU);
	char buf[64];
	cr_assert_eq(kvt_gpu_host_register(buf, sizeof buf), KVT_ENOGPU);
	kvt_stream_destroy(NULL);
	kvt_gpu_batch_free(NULL);
	kvt_gpu_event_destroy(NULL);
	kvt_gpu_free(NULL);
	kvt_gpu_host_free(NULL);
}

/* ---------------------------------------------------------------- GPU helpers */

struct dev_blocks {
	uint8_t *raw_dev, *enc_dev;
	size_t raw, enc;
	uint32_t n;
};

static void *dev_alloc(size_t n, int fill)
{
	void *p;
	cr_assert_eq(kvt_gpu_malloc(n, &p), 0);
	cr_assert_eq(kvt_gpu_memset_async(p, fill, n, NULL), 0);
	return p;
}

static void to_dev(void *dst, const void *src, size_t n)
{
	cr_assert_eq(kvt_gpu_copy_async(dst, src, n, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
}

static void from_dev(void *dst, const void *src, size_t n)
{
	cr_assert_eq(kvt_gpu_copy_async(dst, src, n, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
}

static uint32_t gcd(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t r = a % b;
		a = b;
		b = r;
	}
	return a;
}

/* Item i uses slot (i * c + 3) % n with c coprime to n: a scattered
 * permutation, every slot used once. */
static uint32_t slot_of(uint32_t i, uint32_t n)
{
	uint32_t c = 5;
	while (gcd(c, n) != 1)
		c++;
	return (i * c + 3) % n;
}

/* n raw blocks and their CPU encodings (host, contiguous). */
static void make_blocks(const struct kvt_kivi_geom *g, uint32_t n, size_t *raw,
			size_t *enc, uint8_t **raws, uint8_t **encs)
{
	cr_assert_eq(kvt_kivi_geom_sizes(g, raw, NULL, enc), 0);
	*raws = malloc(n * *raw);
	*encs = malloc(n * *enc);
	for (uint32_t i = 0; i < n; i++) {
		size_t len;
		uint8_t *b = kt_raw_block(g, 100 + i);
		uint8_t *e = kt_cpu_encode(g, b, &len);
		memcpy(*raws + i * *raw, b, *raw);
		memcpy(*encs + i * *enc, e, *enc);
		free(b);
		free(e);
	}
}

/* ---------------------------------------------------------------- KIVI */

static void check_quantize(const struct kvt_kivi_geom *g, size_t gi)
{
	const uint32_t n = 7;
	size_t raw, enc;
	uint8_t *raws, *encs;
	make_blocks(g, n, &raw, &enc, &raws, &encs);
	uint8_t *raw_dev = dev_alloc(n * raw, 0);
	uint8_t *enc_dev = dev_alloc(n * enc, 0xab); /* every byte must be written */
	to_dev(raw_dev, raws, n * raw);
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(n, &b), 0);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
	for (uint32_t i = 0; i < n; i++)
		it[i] = (struct kvt_gpu_item){raw_dev + i * raw,
					      enc_dev + slot_of(i, n) * enc, 0};
	cr_assert_eq(kvt_kivi_quantize(g, b, n, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	uint8_t *got = malloc(n * enc);
	from_dev(got, enc_dev, n * enc);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(memcmp(got + slot_of(i, n) * enc, encs + i * enc, enc), 0,
			     "geometry %zu block %u: GPU codes differ from the CPU codec",
			     gi, i);
	free(got);
	kvt_gpu_batch_free(b);
	kvt_gpu_free(raw_dev);
	kvt_gpu_free(enc_dev);
	free(raws);
	free(encs);
}

Test(kivi_gpu, quantize_writes_the_cpu_codec_bytes)
{
	need_gpu();
	for (size_t gi = 0; gi < N_GEOMS; gi++)
		check_quantize(&geoms[gi], gi);
}

/* fused: sources in mapped pinned host memory, else device memory. */
static void check_dequantize(const struct kvt_kivi_geom *g, size_t gi, int fused)
{
	const uint32_t n = 9;
	size_t raw, enc;
	uint8_t *raws, *encs, *src_host = NULL, *src;
	make_blocks(g, n, &raw, &enc, &raws, &encs);
	if (fused) {
		cr_assert_eq(kvt_gpu_host_alloc(n * enc, (void **)&src_host), 0);
		memcpy(src_host, encs, n * enc);
		cr_assert_eq(kvt_gpu_host_device_ptr(src_host, (void **)&src), 0);
	} else {
		src = dev_alloc(n * enc, 0);
		to_dev(src, encs, n * enc);
	}
	uint8_t *raw_dev = dev_alloc(n * raw, 0xcd);
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(n, &b), 0);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
	for (uint32_t i = 0; i < n; i++)
		it[i] = (struct kvt_gpu_item){src + i * enc,
					      raw_dev + slot_of(i, n) * raw, enc};
	int rc = fused ? kvt_kivi_gather_dequantize(g, b, n, NULL)
		       : kvt_kivi_dequantize(g, b, n, NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	uint8_t *got = malloc(n * raw), *want = malloc(raw);
	from_dev(got, raw_dev, n * raw);
	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(kvt_gpu_batch_results(b)[i], 0);
		kt_cpu_decode(g, encs + i * enc, enc, want);
		cr_assert_eq(memcmp(got + slot_of(i, n) * raw, want, raw), 0,
			     "geometry %zu block %u (%s): GPU decode differs",
			     gi, i, fused ? "fused" : "device");
	}
	free(got);
	free(want);
	kvt_gpu_batch_free(b);
	kvt_gpu_free(raw_dev);
	if (fused)
		kvt_gpu_host_free(src_host);
	else
		kvt_gpu_free(src);
	free(raws);
	free(encs);
}

Test(kivi_gpu, dequantize_equals_the_cpu_decode)
{
	need_gpu();
	for (size_t gi = 0; gi < N_GEOMS; gi++)
		check_dequantize(&geoms[gi], gi, 0);
}

Test(kivi_gpu, fused_gather_dequantize_from_mapped_host_memory)
{
	need_gpu();
	for (size_t gi = 0; gi < N_GEOMS; gi++)
		check_dequantize(&geoms[gi], gi, 1);
}

Test(kivi_gpu, a_bad_header_is_eformat_and_leaves_its_slot_alone)
{
	need_gpu();
	const struct kvt_kivi_geom *g = &geoms[0];
	const uint32_t n = 4;
	size_t raw, enc;
	uint8_t *raws, *encs, *host, *src;
	make_blocks(g, n, &raw, &enc, &raws, &encs);
	encs[1 * enc + 0] ^= 1;             /* block 1: K magic */
	size_t ks;                          /* block 3: V header of 4 bits */
	cr_assert_eq(kvt_kivi_geom_sizes(g, NULL, &ks, NULL), 0);
	encs[3 * enc + ks + 8] = 4;
	cr_assert_eq(kvt_gpu_host_alloc(n * enc, (void **)&host), 0);
	memcpy(host, encs, n * enc);
	cr_assert_eq(kvt_gpu_host_device_ptr(host, (void **)&src), 0);
	uint8_t *raw_dev = dev_alloc(n * raw, 0x5a);
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(n, &b), 0);
	for (int pass = 0; pass < 2; pass++) {
		struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
		for (uint32_t i = 0; i < n; i++)
			it[i] = (struct kvt_gpu_item){src + i * enc, raw_dev + i * raw, enc};
		int rc = pass ? kvt_kivi_gather_dequantize(g, b, n, NULL)
			      : kvt_kivi_dequantize(g, b, n, NULL);
		cr_assert_eq(rc, 0);
		cr_assert_eq(kvt_stream_sync(NULL), 0);
		const int *res = kvt_gpu_batch_results(b);
		cr_assert_eq(res[0], 0);
		cr_assert_eq(res[1], KVT_EFORMAT);
		cr_assert_eq(res[2], 0);
		cr_assert_eq(res[3], KVT_EFORMAT);
		uint8_t *got = malloc(raw);
		for (uint32_t i = 1; i < n; i += 2) {
			from_dev(got, raw_dev + i * raw, raw);
			for (size_t j = 0; j < raw; j++)
				cr_assert_eq(got[j], 0x5a, "block %u byte %zu", i, j);
		}
		free(got);
	}
	kvt_gpu_batch_free(b);
	kvt_gpu_free(raw_dev);
	kvt_gpu_host_free(host);
	free(raws);
	free(encs);
}

Test(kivi_gpu, arguments_are_checked_before_launch)
{
	need_gpu();
	const struct kvt_kivi_geom *g = &geoms[0];
	struct kvt_kivi_geom bad = *g;
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(2, &b), 0);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
	void *p = dev_alloc(1 << 20, 0);
	it[0] = (struct kvt_gpu_item){p, (uint8_t *)p + 4096, 0};
	it[1] = (struct kvt_gpu_item){p, (uint8_t *)p + 1, 0}; /* misaligned */
	cr_assert_eq(kvt_kivi_quantize(g, b, 3, NULL), -EINVAL);
	cr_assert_eq(kvt_kivi_quantize(g, b, 2, NULL), -EINVAL);
	bad.bits = 5;
	cr_assert_eq(kvt_kivi_dequantize(&bad, b, 1, NULL), KVT_ECODEC);
	cr_assert_eq(kvt_gpu_gather(b, 3, NULL), -EINVAL);
	cr_assert_eq(kvt_gpu_gather(NULL, 1, NULL), -EINVAL);
	kvt_gpu_free(p);
	kvt_gpu_batch_free(b);
}

/* ---------------------------------------------------------------- gather */

Test(gather_gpu, scattered_blocks_arrive_byte_exact)
{
	need_gpu();
	const uint32_t n = 300;
	const size_t stride = 70000;
	uint8_t *host, *src, *want = calloc(n, stride), *got = malloc(n * stride);
	cr_assert_eq(kvt_gpu_host_alloc(n * stride, (void **)&host), 0);
	cr_assert_eq(kvt_gpu_host_device_ptr(host, (void **)&src), 0);
	uint64_t seed = 7;
	for (size_t i = 0; i < n * stride; i++)
		host[i] = (uint8_t)(kt_uniform(&seed) * 256.0f);
	uint8_t *dst = dev_alloc(n * stride, 0);
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(n, &b), 0);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
	for (uint32_t i = 0; i < n; i++) {
		/* lengths from 0 to 69,999 bytes; some starts misaligned */
		size_t len = (size_t)(i * 7919u) % 70000;
		size_t so = i % 3 == 0 ? i % 16 : (i % 3 == 1 ? 4 * (i % 4) : 0);
		if (len + so > stride)
			len = stride - so;
		uint32_t d = slot_of(i, n);
		it[i] = (struct kvt_gpu_item){src + (size_t)i * stride + so,
					      dst + (size_t)d * stride + so, len};
		memcpy(want + (size_t)d * stride + so, host + (size_t)i * stride + so, len);
	}
	cr_assert_eq(kvt_gpu_gather(b, n, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	from_dev(got, dst, n * stride);
	for (uint32_t d = 0; d < n; d++)
		cr_assert_eq(memcmp(got + (size_t)d * stride, want + (size_t)d * stride,
				    stride), 0, "slot %u", d);
	kvt_gpu_batch_free(b);
	kvt_gpu_free(dst);
	kvt_gpu_host_free(host);
	free(want);
	free(got);
}

/* ---------------------------------------------------------------- scoring */


static void check_topk(uint32_t sets, uint32_t nq, uint32_t m, uint32_t dim,
		       uint32_t k)
{
	const size_t nqs = (size_t)sets * nq, nk = (size_t)sets * m;
	float *q = malloc(nqs * dim * 4), *keys = malloc(nk * dim * 4);
	uint64_t seed = m + k + sets;
	for (size_t i = 0; i < nqs * dim; i++)
		q[i] = kt_uniform(&seed);
	for (size_t j = 0; j < nk; j++)
		for (uint32_t d = 0; d < dim; d++)
			keys[j * dim + d] = j % 10 == 9
				? keys[(j - 4) * dim + d] /* exact ties */
				: kt_uniform(&seed);
	float *qd = dev_alloc(nqs * dim * 4, 0);
	float *kd = dev_alloc(nk * dim * 4, 0);
	float *sd = dev_alloc(nqs * m * 4, 0);
	uint32_t *id = dev_alloc(nqs * k * 4, 0);
	float *td = dev_alloc(nqs * k * 4, 0);
	to_dev(qd, q, nqs * dim * 4);
	to_dev(kd, keys, nk * dim * 4);
	if (sets == 1)
		cr_assert_eq(kvt_gpu_score_topk(qd, nq, kd, m, dim, k, sd, id, td, NULL), 0);
	else
		cr_assert_eq(kvt_gpu_score_topk_sets(qd, sets, nq, kd, m, dim, k, sd,
						     id, td, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	float *s = malloc(nqs * m * 4), *ts = malloc(nqs * k * 4);
	uint32_t *ti = malloc(nqs * k * 4);
	from_dev(s, sd, nqs * m * 4);
	from_dev(ti, id, nqs * k * 4);
	from_dev(ts, td, nqs * k * 4);
	check_topk_ref(sets, nq, m, dim, k, q, keys, s, ti, ts);
	free(q), free(keys), free(s), free(ts), free(ti);
	kvt_gpu_free(qd), kvt_gpu_free(kd), kvt_gpu_free(sd);
	kvt_gpu_free(id), kvt_gpu_free(td);
}

Test(score_gpu, scores_and_topk_equal_the_cpu)
{
	need_gpu();
	check_topk(1, 3, 1000, 64, 10);
	check_topk(1, 2, 5000, 128, 300);
	check_topk(1, 4, 129, 32, 129); /* k = m, one partial chunk */
	check_topk(1, 1, 1, 16, 1);
	check_topk(8, 4, 700, 128, 64); /* one set per kv head */
}

Test(score_gpu, bad_arguments_are_einval)
{
	need_gpu();
	float *p = dev_alloc(1 << 16, 0);
	uint32_t *ix = (uint32_t *)p;
	cr_assert_eq(kvt_gpu_score_topk(p, 1, p, 10, 8, 11, p, ix, NULL, NULL), -EINVAL);
	cr_assert_eq(kvt_gpu_score_topk(p, 1, p, 2000, 8, 1025, p, ix, NULL, NULL), -EINVAL);
	cr_assert_eq(kvt_gpu_score_topk(NULL, 1, p, 10, 8, 1, p, ix, NULL, NULL), -EINVAL);
	kvt_gpu_free(p);
}

/* ---------------------------------------------------------------- ZipCache */

/* n blocks of one case from mapped host memory; block 1 has its bitmap
 * broken and must come back KVT_EFORMAT with its slot untouched. */
static void check_zip(const struct kt_zip_case *c, size_t ci)
{
	const uint32_t n = 5;
	const struct kvt_kivi_geom kg = kt_zip_as_kivi(&c->g);
	const size_t raw = 2 * (size_t)c->g.heads * c->g.tokens * c->g.dim *
			   kvt_dtype_size(c->g.dtype);
	uint8_t *encs[5], *host, *src;
	size_t lens[5], off[5], total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *r = kt_raw_block(&kg, 300 + i);
		encs[i] = kt_zip_encode(c, r, &lens[i], i);
		off[i] = total;
		total += (lens[i] + 15) / 16 * 16;
		free(r);
	}
	cr_assert_eq(kvt_gpu_host_alloc(total, (void **)&host), 0);
	cr_assert_eq(kvt_gpu_host_device_ptr(host, (void **)&src), 0);
	for (uint32_t i = 0; i < n; i++)
		memcpy(host + off[i], encs[i], lens[i]);
	host[off[1] + 44] ^= 1; /* K bitmap: one salient token too many or few */
	uint8_t *dst = dev_alloc(n * raw, 0x77);
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(n, &b), 0);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
	for (uint32_t i = 0; i < n; i++)
		it[i] = (struct kvt_gpu_item){src + off[i], dst + slot_of(i, n) * raw,
					      lens[i]};
	cr_assert_eq(kvt_zip_dequantize(&c->g, b, n, NULL), 0);
	cr_assert_eq(kvt_stream_sync(NULL), 0);
	uint8_t *got = malloc(raw), *want = malloc(raw);
	for (uint32_t i = 0; i < n; i++) {
		from_dev(got, dst + slot_of(i, n) * raw, raw);
		if (i == 1) {
			cr_assert_eq(kvt_gpu_batch_results(b)[i], KVT_EFORMAT);
			for (size_t j = 0; j < raw; j++)
				cr_assert_eq(got[j], 0x77);
			continue;
		}
		cr_assert_eq(kvt_gpu_batch_results(b)[i], 0, "case %zu block %u", ci, i);
		kt_zip_decode(&c->g, encs[i], lens[i], want);
		cr_assert_eq(memcmp(got, want, raw), 0, "case %zu block %u: GPU decode differs",
			     ci, i);
	}
	for (uint32_t i = 0; i < n; i++)
		free(encs[i]);
	free(got), free(want);
	kvt_gpu_batch_free(b);
	kvt_gpu_free(dst);
	kvt_gpu_host_free(host);
}

Test(zip_gpu, dequantize_from_mapped_host_memory_equals_the_cpu_decode)
{
	need_gpu();
	for (size_t ci = 0; ci < KT_N_ZIP; ci++)
		check_zip(&kt_zip_cases[ci], ci);
}

Test(zip_gpu, arguments_are_checked_before_launch)
{
	need_gpu();
	struct kvt_zip_geom g = kt_zip_cases[0].g;
	struct kvt_gpu_batch *b;
	cr_assert_eq(kvt_gpu_batch_create(1, &b), 0);
	void *p = dev_alloc(1 << 20, 0);
	struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
	it[0] = (struct kvt_gpu_item){p, (uint8_t *)p + 4096, 0}; /* no length */
	cr_assert_eq(kvt_zip_dequantize(&g, b, 1, NULL), -EINVAL);
	it[0].len = 300u << 10; /* more than a thread block's shared memory */
	cr_assert_eq(kvt_zip_dequantize(&g, b, 1, NULL), KVT_ETOOBIG);
	g.high_bits = 2;
	cr_assert_eq(kvt_zip_dequantize(&g, b, 1, NULL), KVT_ECODEC);
	cr_assert_eq(kvt_zip_dequantize(&kt_zip_cases[0].g, b, 2, NULL), -EINVAL);
	kvt_gpu_free(p);
	kvt_gpu_batch_free(b);
}

Test(zip_gpu, quantize_writes_the_cpu_codec_bytes)
{
	need_gpu();
	for (size_t ci = 0; ci < KT_N_ZIP; ci++) {
		const struct kt_zip_case *c = &kt_zip_cases[ci];
		const struct kvt_kivi_geom kg = kt_zip_as_kivi(&c->g);
		const uint32_t n = 4, n_sal = kt_zip_n_salient(c), bw = (c->g.tokens + 31) / 32;
		const size_t raw = 2 * (size_t)c->g.heads * c->g.tokens * c->g.dim *
				   kvt_dtype_size(c->g.dtype);
		size_t enc;
		cr_assert_eq(kvt_zip_block_size(&c->g, c->tokenwise, n_sal, NULL, &enc), 0);
		uint8_t *raws = malloc(n * raw), *wants = malloc(n * enc);
		uint32_t *bms = calloc(n, bw * 4);
		for (uint32_t i = 0; i < n; i++) {
			size_t len;
			uint8_t *r = kt_raw_block(&kg, 50 + i);
			uint8_t *e = kt_zip_encode(c, r, &len, 60 + i);
			float *sc = kt_zip_scores(c->g.tokens, 60 + i);
			cr_assert_eq(kvt_zip_salient_bitmap(sc, c->g.tokens, n_sal, bms + i * bw), 0);
			memcpy(raws + i * raw, r, raw);
			memcpy(wants + i * enc, e, enc);
			free(r), free(e), free(sc);
		}
		uint8_t *raw_dev = dev_alloc(n * raw, 0), *enc_dev = dev_alloc(n * enc, 0xab);
		uint32_t *bm_dev = dev_alloc((size_t)n * bw * 4, 0);
		to_dev(raw_dev, raws, n * raw);
		to_dev(bm_dev, bms, (size_t)n * bw * 4);
		struct kvt_gpu_batch *b;
		cr_assert_eq(kvt_gpu_batch_create(n, &b), 0);
		struct kvt_gpu_item *it = kvt_gpu_batch_items(b);
		for (uint32_t i = 0; i < n; i++)
			it[i] = (struct kvt_gpu_item){raw_dev + i * raw, enc_dev + i * enc, enc};
		cr_assert_eq(kvt_zip_quantize(&c->g, c->tokenwise, n_sal, bm_dev, b, n, NULL), 0);
		cr_assert_eq(kvt_stream_sync(NULL), 0);
		uint8_t *got = malloc(n * enc);
		from_dev(got, enc_dev, n * enc);
		for (uint32_t i = 0; i < n; i++)
			cr_assert_eq(memcmp(got + i * enc, wants + i * enc, enc), 0,
				     "case %zu block %u: GPU ZipCache bytes differ", ci, i);
		free(got), free(raws), free(wants), free(bms);
		kvt_gpu_batch_free(b);
		kvt_gpu_free(raw_dev), kvt_gpu_free(enc_dev), kvt_gpu_free(bm_dev);
	}
}
