/*
 * gguf.h - a strict reader of GGUF files (versions 2 and 3), the container
 * llama.cpp uses for model weights and tokenizer metadata.
 *
 * The file is mapped read-only; every pointer handed out (strings, arrays,
 * tensor data) points into the mapping and stays valid until
 * llm_gguf_close(). Strings are NOT NUL-terminated: they come with a length.
 * Every length and offset is checked against the file size while parsing, so
 * a truncated or corrupt file fails in llm_gguf_open() with KVT_EFORMAT
 * (or KVT_EVERSION for an unknown version) and a message in the error
 * buffer, never later.
 *
 * Functions return 0 or a negative code (-errno or KVT_E* from kvtier.h).
 */
#ifndef LLM_GGUF_H
#define LLM_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum llm_gguf_vtype {
	LLM_GGUF_U8 = 0, LLM_GGUF_I8 = 1, LLM_GGUF_U16 = 2, LLM_GGUF_I16 = 3,
	LLM_GGUF_U32 = 4, LLM_GGUF_I32 = 5, LLM_GGUF_F32 = 6, LLM_GGUF_BOOL = 7,
	LLM_GGUF_STRING = 8, LLM_GGUF_ARRAY = 9, LLM_GGUF_U64 = 10,
	LLM_GGUF_I64 = 11, LLM_GGUF_F64 = 12,
};

/* ggml tensor types this reader knows the size of. */
enum llm_ggml_type {
	LLM_GGML_F32 = 0, LLM_GGML_F16 = 1, LLM_GGML_Q4_0 = 2,
	LLM_GGML_Q4_1 = 3, LLM_GGML_Q8_0 = 8,
};

#define LLM_GGUF_MAX_DIMS 4

struct llm_gguf_str {
	const char *p; /* into the mapping, not NUL-terminated */
	uint64_t n;
};

struct llm_gguf_kv {
	struct llm_gguf_str key;
	enum llm_gguf_vtype type;
	enum llm_gguf_vtype arr_type; /* element type when type is ARRAY */
	uint64_t arr_n;               /* element count when type is ARRAY */
	const uint8_t *val;           /* the encoded value (or array elements) */
};

struct llm_gguf_tensor {
	struct llm_gguf_str name;
	uint32_t n_dims;
	uint64_t ne[LLM_GGUF_MAX_DIMS]; /* ne[0] varies fastest; unused dims 1 */
	enum llm_ggml_type type;
	uint64_t n_bytes;
	const void *data; /* into the mapping */
};

struct llm_gguf;

/*
 * Opens and validates `path`. On failure a message (naming the file and
 * what is wrong) is written into err (cap bytes) when err is not NULL.
 * Errors: -errno (open/mmap), KVT_EFORMAT (bad magic, truncated, a length
 * or offset out of bounds, unknown tensor type), KVT_EVERSION, -ENOMEM.
 */
int llm_gguf_open(const char *path, struct llm_gguf **out, char *err, size_t cap);

/* Same, over a caller-owned buffer that must outlive the handle. */
int llm_gguf_open_mem(const void *buf, size_t len, struct llm_gguf **out,
		      char *err, size_t cap);

/* Unmaps and frees. NULL is a no-op. */
void llm_gguf_close(struct llm_gguf *g);

uint32_t llm_gguf_version(const struct llm_gguf *g);
size_t llm_gguf_n_kv(const struct llm_gguf *g);
size_t llm_gguf_n_tensors(const struct llm_gguf *g);
const struct llm_gguf_kv *llm_gguf_kv_at(const struct llm_gguf *g, size_t i);
const struct llm_gguf_tensor *llm_gguf_tensor_at(const struct llm_gguf *g, size_t i);

/* Looks a key up. KVT_ENOTFOUND when absent. */
int llm_gguf_find_kv(const struct llm_gguf *g, const char *key,
		     const struct llm_gguf_kv **out);

/* Typed getters: KVT_ENOTFOUND when absent, KVT_EFORMAT on a type mismatch.
 * Integer getters accept any integer type whose value fits. */
int llm_gguf_get_u32(const struct llm_gguf *g, const char *key, uint32_t *out);
int llm_gguf_get_f32(const struct llm_gguf *g, const char *key, float *out);
int llm_gguf_get_bool(const struct llm_gguf *g, const char *key, int *out);
int llm_gguf_get_str(const struct llm_gguf *g, const char *key,
		     struct llm_gguf_str *out);

/*
 * Iterates a string array: start with *index = 0 and *pos = NULL; each call
 * returns element *index in *out and advances both. KVT_EFORMAT when kv is
 * not an array of strings, KVT_ENOTFOUND past the end. (Lengths were
 * checked at open, so iteration cannot run off the file.)
 */
int llm_gguf_arr_str_next(const struct llm_gguf_kv *kv, uint64_t *index,
			  const uint8_t **pos, struct llm_gguf_str *out);

/* Finds a tensor by name. KVT_ENOTFOUND when absent. */
int llm_gguf_find_tensor(const struct llm_gguf *g, const char *name,
			 const struct llm_gguf_tensor **out);

/* Bytes of n elements of a ggml type (n a multiple of its block); 0 if unknown. */
uint64_t llm_ggml_type_bytes(enum llm_ggml_type type, uint64_t n);

/* Elements per block of a ggml type; 0 if unknown. */
uint32_t llm_ggml_type_block(enum llm_ggml_type type);

const char *llm_ggml_type_name(enum llm_ggml_type type);

#endif /* LLM_GGUF_H */
