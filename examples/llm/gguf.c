/* gguf.c - strict GGUF reader (see gguf.h). */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvtier/kvtier.h"

/* Bounds that no sane model exceeds; they keep allocations finite. */
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_NAME 4096

struct llm_gguf {
	const uint8_t *base;
	size_t len;
	int mapped;
	uint32_t version;
	uint64_t n_kv, n_tensors;
	struct llm_gguf_kv *kv;
	struct llm_gguf_tensor *tensors;
};

struct cursor {
	const uint8_t *p, *end, *base;
	char *err;
	size_t cap;
};

static int fail(struct cursor *c, const char *fmt, ...)
{
	if (c->err && c->cap) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->err, c->cap, fmt, ap);
		va_end(ap);
	}
	return KVT_EFORMAT;
}

static int take(struct cursor *c, uint64_t n, const uint8_t **out)
{
	if (n > (uint64_t)(c->end - c->p))
		return fail(c, "truncated: need %llu bytes at offset %td of %td",
			    (unsigned long long)n, c->p - c->base, c->end - c->base);
	*out = c->p;
	c->p += n;
	return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v)
{
	const uint8_t *p = NULL;
	int rc = take(c, 4, &p);
	if (rc == 0)
		memcpy(v, p, 4);
	return rc;
}

static int rd_u64(struct cursor *c, uint64_t *v)
{
	const uint8_t *p = NULL;
	int rc = take(c, 8, &p);
	if (rc == 0)
		memcpy(v, p, 8);
	return rc;
}

static int rd_str(struct cursor *c, struct llm_gguf_str *s)
{
	uint64_t n;
	const uint8_t *p = NULL;
	int rc = rd_u64(c, &n);
	if (rc == 0)
		rc = take(c, n, &p);
	if (rc == 0) {
		s->p = (const char *)p;
		s->n = n;
	}
	return rc;
}

static int scalar_size(enum llm_gguf_vtype t)
{
	switch (t) {
	case LLM_GGUF_U8: case LLM_GGUF_I8: case LLM_GGUF_BOOL: return 1;
	case LLM_GGUF_U16: case LLM_GGUF_I16: return 2;
	case LLM_GGUF_U32: case LLM_GGUF_I32: case LLM_GGUF_F32: return 4;
	case LLM_GGUF_U64: case LLM_GGUF_I64: case LLM_GGUF_F64: return 8;
	default: return 0;
	}
}

/* Skips one value of type t (not an array), validating string lengths. */
static int skip_value(struct cursor *c, enum llm_gguf_vtype t)
{
	const uint8_t *p = NULL;
	if (t == LLM_GGUF_STRING) {
		struct llm_gguf_str s;
		return rd_str(c, &s);
	}
	int sz = scalar_size(t);
	if (sz == 0)
		return fail(c, "unknown value type %u", (unsigned)t);
	return take(c, (uint64_t)sz, &p);
}

static int parse_kv(struct cursor *c, struct llm_gguf_kv *kv)
{
	uint32_t t;
	int rc = rd_str(c, &kv->key);
	if (rc == 0 && kv->key.n > GGUF_MAX_NAME)
		return fail(c, "metadata key longer than %u bytes", GGUF_MAX_NAME);
	if (rc == 0)
		rc = rd_u32(c, &t);
	if (rc)
		return rc;
	kv->type = (enum llm_gguf_vtype)t;
	kv->arr_n = 0;
	if (kv->type != LLM_GGUF_ARRAY) {
		kv->val = c->p;
		return skip_value(c, kv->type);
	}
	uint32_t at;
	rc = rd_u32(c, &at);
	if (rc == 0)
		rc = rd_u64(c, &kv->arr_n);
	if (rc)
		return rc;
	kv->arr_type = (enum llm_gguf_vtype)at;
	kv->val = c->p;
	if (kv->arr_type == LLM_GGUF_ARRAY)
		return fail(c, "nested arrays are not supported (key %.*s)",
			    (int)kv->key.n, kv->key.p);
	if (kv->arr_type != LLM_GGUF_STRING) {
		int sz = scalar_size(kv->arr_type);
		const uint8_t *p = NULL;
		if (sz == 0)
			return fail(c, "unknown array type %u", at);
		if (kv->arr_n > (uint64_t)(c->end - c->p) / (uint64_t)sz)
			return fail(c, "truncated array %.*s", (int)kv->key.n, kv->key.p);
		return take(c, kv->arr_n * (uint64_t)sz, &p);
	}
	for (uint64_t i = 0; i < kv->arr_n && rc == 0; i++)
		rc = skip_value(c, LLM_GGUF_STRING);
	return rc;
}

uint32_t llm_ggml_type_block(enum llm_ggml_type type)
{
	switch (type) {
	case LLM_GGML_F32: case LLM_GGML_F16: return 1;
	case LLM_GGML_Q4_0: case LLM_GGML_Q4_1: case LLM_GGML_Q8_0: return 32;
	default: return 0;
	}
}

static uint32_t block_bytes(enum llm_ggml_type type)
{
	switch (type) {
	case LLM_GGML_F32: return 4;
	case LLM_GGML_F16: return 2;
	case LLM_GGML_Q4_0: return 18;
	case LLM_GGML_Q4_1: return 20;
	case LLM_GGML_Q8_0: return 34;
	default: return 0;
	}
}

uint64_t llm_ggml_type_bytes(enum llm_ggml_type type, uint64_t n)
{
	uint32_t b = llm_ggml_type_block(type);
	if (b == 0 || n % b)
		return 0;
	return n / b * block_bytes(type);
}

const char *llm_ggml_type_name(enum llm_ggml_type type)
{
	switch (type) {
	case LLM_GGML_F32: return "f32";
	case LLM_GGML_F16: return "f16";
	case LLM_GGML_Q4_0: return "q4_0";
	case LLM_GGML_Q4_1: return "q4_1";
	case LLM_GGML_Q8_0: return "q8_0";
	default: return "?";
	}
}

static int parse_tensor(struct cursor *c, struct llm_gguf_tensor *t,
			uint64_t *offset)
{
	uint32_t type;
	int rc = rd_str(c, &t->name);
	if (rc == 0 && t->name.n > GGUF_MAX_NAME)
		return fail(c, "tensor name longer than %u bytes", GGUF_MAX_NAME);
	if (rc == 0)
		rc = rd_u32(c, &t->n_dims);
	if (rc)
		return rc;
	if (t->n_dims == 0 || t->n_dims > LLM_GGUF_MAX_DIMS)
		return fail(c, "tensor %.*s has %u dims", (int)t->name.n, t->name.p,
			    t->n_dims);
	uint64_t n = 1;
	for (uint32_t d = 0; d < LLM_GGUF_MAX_DIMS; d++) {
		t->ne[d] = 1;
		if (d < t->n_dims && (rc = rd_u64(c, &t->ne[d])) != 0)
			return rc;
		if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) / n)
			return fail(c, "tensor %.*s has a bad dimension",
				    (int)t->name.n, t->name.p);
		n *= t->ne[d];
	}
	if ((rc = rd_u32(c, &type)) != 0 || (rc = rd_u64(c, offset)) != 0)
		return rc;
	t->type = (enum llm_ggml_type)type;
	uint32_t blk = llm_ggml_type_block(t->type);
	if (blk == 0)
		return fail(c, "tensor %.*s has unsupported type %u",
			    (int)t->name.n, t->name.p, type);
	if (t->ne[0] % blk)
		return fail(c, "tensor %.*s: row of %llu is not a multiple of %u",
			    (int)t->name.n, t->name.p, (unsigned long long)t->ne[0], blk);
	t->n_bytes = llm_ggml_type_bytes(t->type, n);
	return 0;
}

static int parse_header(struct llm_gguf *g, struct cursor *c)
{
	uint32_t magic;
	int rc = rd_u32(c, &magic);
	if (rc)
		return rc;
	if (memcmp(&magic, "GGUF", 4) != 0)
		return fail(c, "not a GGUF file (bad magic)");
	if ((rc = rd_u32(c, &g->version)) != 0)
		return rc;
	if (g->version < 2 || g->version > 3) {
		fail(c, "unsupported GGUF version %u (need 2 or 3)", g->version);
		return KVT_EVERSION;
	}
	if ((rc = rd_u64(c, &g->n_tensors)) != 0 || (rc = rd_u64(c, &g->n_kv)) != 0)
		return rc;
	if (g->n_tensors > GGUF_MAX_TENSORS || g->n_kv > GGUF_MAX_KV)
		return fail(c, "implausible counts: %llu tensors, %llu keys",
			    (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
	return 0;
}

static uint64_t alignment(const struct llm_gguf *g)
{
	uint32_t a = 32;
	if (llm_gguf_get_u32(g, "general.alignment", &a) != 0 || a == 0 ||
	    (a & (a - 1)))
		a = 32;
	return a;
}

static int parse_tensors(struct llm_gguf *g, struct cursor *c)
{
	uint64_t *offs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*offs));
	int rc = offs ? 0 : -ENOMEM;
	for (uint64_t i = 0; i < g->n_tensors && rc == 0; i++)
		rc = parse_tensor(c, &g->tensors[i], &offs[i]);
	uint64_t a = alignment(g);
	uint64_t data = ((uint64_t)(c->p - g->base) + a - 1) / a * a;
	for (uint64_t i = 0; i < g->n_tensors && rc == 0; i++) {
		struct llm_gguf_tensor *t = &g->tensors[i];
		if (offs[i] % a || data > g->len || offs[i] > g->len - data ||
		    t->n_bytes > g->len - data - offs[i])
			rc = fail(c, "tensor %.*s lies outside the file (truncated?)",
				  (int)t->name.n, t->name.p);
		else
			t->data = g->base + data + offs[i];
	}
	free(offs);
	return rc;
}

static int parse(struct llm_gguf *g, char *err, size_t cap)
{
	struct cursor c = {g->base, g->base + g->len, g->base, err, cap};
	int rc = parse_header(g, &c);
	if (rc)
		return rc;
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
	if (!g->kv || !g->tensors)
		return -ENOMEM;
	for (uint64_t i = 0; i < g->n_kv && rc == 0; i++)
		rc = parse_kv(&c, &g->kv[i]);
	return rc ? rc : parse_tensors(g, &c);
}

int llm_gguf_open_mem(const void *buf, size_t len, struct llm_gguf **out,
		      char *err, size_t cap)
{
	if (!buf || !out)
		return -EINVAL;
	struct llm_gguf *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->base = buf;
	g->len = len;
	int rc = parse(g, err, cap);
	if (rc) {
		llm_gguf_close(g);
		return rc;
	}
	*out = g;
	return 0;
}

int llm_gguf_open(const char *path, struct llm_gguf **out, char *err, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int e = -errno;
		if (err && cap)
			snprintf(err, cap, "%s: %s", path, strerror(-e));
		if (fd >= 0)
			close(fd);
		return e;
	}
	size_t len = (size_t)st.st_size;
	void *m = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (m == MAP_FAILED) {
		if (err && cap)
			snprintf(err, cap, "%s: mmap: %s", path, strerror(errno));
		return -errno;
	}
	char msg[256] = "";
	int rc = llm_gguf_open_mem(m ? m : "", len, out, msg, sizeof(msg));
	if (rc) {
		if (m)
			munmap(m, len);
		if (err && cap)
			snprintf(err, cap, "%s: %s", path, msg[0] ? msg : kvt_strerror(rc));
		return rc;
	}
	(*out)->mapped = m != NULL;
	return 0;
}

void llm_gguf_close(struct llm_gguf *g)
{
	if (!g)
		return;
	if (g->mapped)
		munmap((void *)g->base, g->len);
	free(g->kv);
	free(g->tensors);
	free(g);
}

uint32_t llm_gguf_version(const struct llm_gguf *g) { return g->version; }
size_t llm_gguf_n_kv(const struct llm_gguf *g) { return (size_t)g->n_kv; }
size_t llm_gguf_n_tensors(const struct llm_gguf *g) { return (size_t)g->n_tensors; }

const struct llm_gguf_kv *llm_gguf_kv_at(const struct llm_gguf *g, size_t i)
{
	return i < g->n_kv ? &g->kv[i] : NULL;
}

const struct llm_gguf_tensor *llm_gguf_tensor_at(const struct llm_gguf *g, size_t i)
{
	return i < g->n_tensors ? &g->tensors[i] : NULL;
}

static int str_eq(struct llm_gguf_str s, const char *z)
{
	size_t n = strlen(z);
	return s.n == n && memcmp(s.p, z, n) == 0;
}

int llm_gguf_find_kv(const struct llm_gguf *g, const char *key,
		     const struct llm_gguf_kv **out)
{
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (str_eq(g->kv[i].key, key)) {
			*out = &g->kv[i];
			return 0;
		}
	return KVT_ENOTFOUND;
}

static int get_int(const struct llm_gguf_kv *kv, int64_t *v)
{
	uint8_t b[8] = {0};
	int sz = scalar_size(kv->type);
	if (kv->type == LLM_GGUF_F32 || kv->type == LLM_GGUF_F64 ||
	    kv->type == LLM_GGUF_BOOL || sz == 0)
		return KVT_EFORMAT;
	memcpy(b, kv->val, (size_t)sz);
	switch (kv->type) {
	case LLM_GGUF_U8: *v = b[0]; break;
	case LLM_GGUF_I8: *v = (int8_t)b[0]; break;
	case LLM_GGUF_U16: { uint16_t x; memcpy(&x, b, 2); *v = x; break; }
	case LLM_GGUF_I16: { int16_t x; memcpy(&x, b, 2); *v = x; break; }
	case LLM_GGUF_U32: { uint32_t x; memcpy(&x, b, 4); *v = x; break; }
	case LLM_GGUF_I32: { int32_t x; memcpy(&x, b, 4); *v = x; break; }
	case LLM_GGUF_U64: {
		uint64_t x;
		memcpy(&x, b, 8);
		if (x > INT64_MAX)
			return KVT_EFORMAT;
		*v = (int64_t)x;
		break;
	}
	default: memcpy(v, b, 8); break;
	}
	return 0;
}

int llm_gguf_get_u32(const struct llm_gguf *g, const char *key, uint32_t *out)
{
	const struct llm_gguf_kv *kv;
	int64_t v;
	int rc = llm_gguf_find_kv(g, key, &kv);
	if (rc == 0)
		rc = get_int(kv, &v);
	if (rc == 0 && (v < 0 || v > UINT32_MAX))
		rc = KVT_EFORMAT;
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

int llm_gguf_get_f32(const struct llm_gguf *g, const char *key, float *out)
{
	const struct llm_gguf_kv *kv;
	int rc = llm_gguf_find_kv(g, key, &kv);
	if (rc == 0 && kv->type == LLM_GGUF_F32) {
		memcpy(out, kv->val, 4);
	} else if (rc == 0 && kv->type == LLM_GGUF_F64) {
		double d;
		memcpy(&d, kv->val, 8);
		*out = (float)d;
	} else if (rc == 0) {
		rc = KVT_EFORMAT;
	}
	return rc;
}

int llm_gguf_get_bool(const struct llm_gguf *g, const char *key, int *out)
{
	const struct llm_gguf_kv *kv;
	int rc = llm_gguf_find_kv(g, key, &kv);
	if (rc == 0 && kv->type != LLM_GGUF_BOOL)
		rc = KVT_EFORMAT;
	if (rc == 0)
		*out = kv->val[0] != 0;
	return rc;
}

int llm_gguf_get_str(const struct llm_gguf *g, const char *key,
		     struct llm_gguf_str *out)
{
	const struct llm_gguf_kv *kv;
	int rc = llm_gguf_find_kv(g, key, &kv);
	if (rc == 0 && kv->type != LLM_GGUF_STRING)
		rc = KVT_EFORMAT;
	if (rc == 0) {
		memcpy(&out->n, kv->val, 8);
		out->p = (const char *)kv->val + 8;
	}
	return rc;
}

int llm_gguf_arr_str_next(const struct llm_gguf_kv *kv, uint64_t *index,
			  const uint8_t **pos, struct llm_gguf_str *out)
{
	if (kv->type != LLM_GGUF_ARRAY || kv->arr_type != LLM_GGUF_STRING)
		return KVT_EFORMAT;
	if (*index >= kv->arr_n)
		return KVT_ENOTFOUND;
	const uint8_t *p = *pos ? *pos : kv->val;
	memcpy(&out->n, p, 8);
	out->p = (const char *)p + 8;
	*pos = p + 8 + out->n;
	(*index)++;
	return 0;
}

int llm_gguf_find_tensor(const struct llm_gguf *g, const char *name,
			 const struct llm_gguf_tensor **out)
{
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (str_eq(g->tensors[i].name, name)) {
			*out = &g->tensors[i];
			return 0;
		}
	return KVT_ENOTFOUND;
}
