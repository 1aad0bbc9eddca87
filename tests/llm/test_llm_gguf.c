/* GGUF reader on small synthetic files: values, tensors, dequantisation,
 * and clear errors for truncated or corrupt input. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "kvtier/kvtier.h"
#include "quant.h"

struct buf {
	uint8_t d[4096];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	cr_assert(b->n + n <= sizeof(b->d));
	memcpy(b->d + b->n, p, n);
	b->n += n;
}
static void u32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(struct buf *b, uint64_t v) { put(b, &v, 8); }
static void str(struct buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }

/* Offsets of interesting fields, to corrupt them in tests. */
struct layout {
	size_t version, n_tensors, first_str_len, tensor_type, tensor_off, data;
};

/* A v3 file: 4 keys, a 1-D f32 tensor of 8 and a 32x2 Q8_0 tensor. */
static void build(struct buf *b, struct layout *L)
{
	memset(b, 0, sizeof(*b));
	put(b, "GGUF", 4);
	L->version = b->n;
	u32(b, 3);
	L->n_tensors = b->n;
	u64(b, 2);
	u64(b, 4);
	L->first_str_len = b->n;
	str(b, "llama.block_count"); u32(b, LLM_GGUF_U32); u32(b, 30);
	str(b, "general.name"); u32(b, LLM_GGUF_STRING); str(b, "tiny");
	str(b, "rope.base"); u32(b, LLM_GGUF_F32); { float f = 100000.0f; put(b, &f, 4); }
	str(b, "tokens"); u32(b, LLM_GGUF_ARRAY); u32(b, LLM_GGUF_STRING); u64(b, 3);
	str(b, "a"); str(b, "bc"); str(b, "<|im_start|>");
	str(b, "norm"); u32(b, 1); u64(b, 8); u32(b, LLM_GGML_F32); u64(b, 0);
	str(b, "w"); u32(b, 2); u64(b, 32); u64(b, 2);
	L->tensor_type = b->n;
	u32(b, LLM_GGML_Q8_0);
	L->tensor_off = b->n;
	u64(b, 32);
	while (b->n % 32)
		put(b, "", 1);
	L->data = b->n;
	for (int i = 0; i < 8; i++) {
		float f = (float)i * 0.5f;
		put(b, &f, 4);
	}
	for (int r = 0; r < 2; r++) {
		uint16_t d = llm_f32_to_f16(r ? 0.25f : 1.0f);
		put(b, &d, 2);
		for (int j = 0; j < 32; j++) {
			int8_t q = (int8_t)(j - 16);
			put(b, &q, 1);
		}
	}
}

Test(gguf, parses_values_and_tensors)
{
	struct buf b;
	struct layout L;
	build(&b, &L);
	struct llm_gguf *g;
	char err[256];
	cr_assert_eq(llm_gguf_open_mem(b.d, b.n, &g, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(llm_gguf_version(g), 3);
	cr_expect_eq(llm_gguf_n_kv(g), 4);
	cr_expect_eq(llm_gguf_n_tensors(g), 2);
	uint32_t u;
	float f;
	struct llm_gguf_str s;
	cr_expect_eq(llm_gguf_get_u32(g, "llama.block_count", &u), 0);
	cr_expect_eq(u, 30);
	cr_expect_eq(llm_gguf_get_f32(g, "rope.base", &f), 0);
	cr_expect_float_eq(f, 100000.0f, 1e-3);
	cr_expect_eq(llm_gguf_get_str(g, "general.name", &s), 0);
	cr_expect(s.n == 4 && memcmp(s.p, "tiny", 4) == 0);
	cr_expect_eq(llm_gguf_get_u32(g, "general.name", &u), KVT_EFORMAT);
	cr_expect_eq(llm_gguf_get_u32(g, "missing", &u), KVT_ENOTFOUND);

	const struct llm_gguf_kv *kv;
	cr_assert_eq(llm_gguf_find_kv(g, "tokens", &kv), 0);
	const char *want[] = {"a", "bc", "<|im_start|>"};
	uint64_t i = 0;
	const uint8_t *pos = NULL;
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(llm_gguf_arr_str_next(kv, &i, &pos, &s), 0);
		cr_expect(s.n == strlen(want[k]) && memcmp(s.p, want[k], s.n) == 0);
	}
	cr_expect_eq(llm_gguf_arr_str_next(kv, &i, &pos, &s), KVT_ENOTFOUND);

	const struct llm_gguf_tensor *t;
	cr_assert_eq(llm_gguf_find_tensor(g, "norm", &t), 0);
	cr_expect_eq(t->type, LLM_GGML_F32);
	cr_expect_eq(t->ne[0], 8);
	cr_expect_float_eq(((const float *)t->data)[3], 1.5f, 0);
	cr_assert_eq(llm_gguf_find_tensor(g, "w", &t), 0);
	cr_expect_eq(t->n_bytes, 68);
	cr_expect_eq((const uint8_t *)t->data - b.d, (ptrdiff_t)(L.data + 32));
	float row[32];
	struct llm_matrix m = {t->type, t->data, 32, 2, 34};
	cr_assert_eq(llm_matrix_row(&m, 1, row), 0);
	for (int j = 0; j < 32; j++)
		cr_expect_float_eq(row[j], (float)(j - 16) * 0.25f, 0);
	llm_gguf_close(g);
}

Test(gguf, q4_1_dequantises_low_then_high_nibbles)
{
	uint8_t blk[20];
	uint16_t d = llm_f32_to_f16(0.5f), m = llm_f32_to_f16(-2.0f);
	memcpy(blk, &d, 2);
	memcpy(blk + 2, &m, 2);
	for (int j = 0; j < 16; j++)
		blk[4 + j] = (uint8_t)(j | (15 - j) << 4);
	float x[32];
	cr_assert_eq(llm_dequant_row(LLM_GGML_Q4_1, blk, x, 32), 0);
	for (int j = 0; j < 16; j++) {
		cr_expect_float_eq(x[j], j * 0.5f - 2.0f, 0);
		cr_expect_float_eq(x[j + 16], (15 - j) * 0.5f - 2.0f, 0);
	}
}

Test(gguf, every_truncation_fails_cleanly)
{
	struct buf b;
	struct layout L;
	build(&b, &L);
	for (size_t n = 0; n < b.n; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, b.d, n);
		struct llm_gguf *g = NULL;
		char err[256] = "";
		int rc = llm_gguf_open_mem(copy, n, &g, err, sizeof(err));
		cr_expect_eq(rc, KVT_EFORMAT, "truncated to %zu: rc %d", n, rc);
		cr_expect(err[0] != 0, "no message for truncation to %zu", n);
		cr_expect_null(g);
		free(copy);
	}
}

static int open_corrupt(size_t at, const void *val, size_t len, char *err)
{
	struct buf b;
	struct layout L;
	build(&b, &L);
	memcpy(b.d + at, val, len);
	struct llm_gguf *g = NULL;
	int rc = llm_gguf_open_mem(b.d, b.n, &g, err, 256);
	llm_gguf_close(g);
	return rc;
}

Test(gguf, corrupt_fields_are_reported)
{
	char err[256];
	uint32_t v1 = 1, badtype = 77;
	uint64_t huge = 1ull << 60, far = 1u << 20, misaligned = 33;
	cr_expect_eq(open_corrupt(0, "GGML", 4, err), KVT_EFORMAT);
	cr_expect(strstr(err, "magic"), "%s", err);
	struct layout L;
	struct buf b;
	build(&b, &L);
	cr_expect_eq(open_corrupt(L.version, &v1, 4, err), KVT_EVERSION);
	cr_expect(strstr(err, "version"), "%s", err);
	cr_expect_eq(open_corrupt(L.n_tensors, &huge, 8, err), KVT_EFORMAT);
	cr_expect_eq(open_corrupt(L.first_str_len, &huge, 8, err), KVT_EFORMAT);
	cr_expect(strstr(err, "truncated"), "%s", err);
	cr_expect_eq(open_corrupt(L.tensor_type, &badtype, 4, err), KVT_EFORMAT);
	cr_expect(strstr(err, "unsupported type"), "%s", err);
	cr_expect_eq(open_corrupt(L.tensor_off, &far, 8, err), KVT_EFORMAT);
	cr_expect(strstr(err, "outside the file"), "%s", err);
	cr_expect_eq(open_corrupt(L.tensor_off, &misaligned, 8, err), KVT_EFORMAT);
}

Test(gguf, file_errors_name_the_file)
{
	char path[] = "/tmp/kvt_gguf_XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	struct buf b;
	struct layout L;
	build(&b, &L);
	cr_assert_eq(write(fd, b.d, b.n / 2), (ssize_t)(b.n / 2));
	close(fd);
	struct llm_gguf *g = NULL;
	char err[512];
	cr_expect_eq(llm_gguf_open(path, &g, err, sizeof(err)), KVT_EFORMAT);
	cr_expect(strstr(err, path) && strstr(err, "truncated"), "%s", err);
	unlink(path);
	cr_expect_eq(llm_gguf_open(path, &g, err, sizeof(err)), -ENOENT);
	cr_expect(strstr(err, path), "%s", err);
}
