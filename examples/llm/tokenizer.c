/* tokenizer.c - byte-level BPE with SmolLM2's pre-tokenizer (see tokenizer.h). */
#include "tokenizer.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "errmsg.h"
#include "kvtier/kvtier.h"

#define TOKEN_TYPE_CONTROL 3
#define TOKEN_TYPE_USER 4

/* Open-addressing hash of token strings -> id, and of id pairs -> rank. */
struct str_map {
	uint32_t cap;   /* power of two */
	int32_t *slots; /* token id or -1 */
};

struct pair_map {
	uint32_t cap;
	uint64_t *keys; /* (a << 32 | b) + 1; 0 = empty */
	uint32_t *rank;
	int32_t *merged;
};

struct llm_tok {
	uint32_t n;
	char **text;       /* NUL-terminated token strings */
	uint32_t *text_n;
	uint8_t *type;
	struct str_map vocab;
	struct pair_map merges;
	int32_t byte_tok[256]; /* token of each single byte */
	uint8_t cp_byte[512];  /* inverse byte map: codepoint (< 324) -> byte */
	int32_t *specials;     /* control/user tokens, longest first */
	uint32_t n_specials;
	int32_t bos, eos;
	locale_t loc;
};

static uint64_t fnv(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	return x ^ (x >> 33);
}

static int32_t str_get(const struct llm_tok *t, const char *s, size_t n)
{
	uint32_t m = t->vocab.cap - 1;
	for (uint32_t i = (uint32_t)fnv(s, n) & m;; i = (i + 1) & m) {
		int32_t id = t->vocab.slots[i];
		if (id < 0)
			return -1;
		if (t->text_n[id] == n && memcmp(t->text[id], s, n) == 0)
			return id;
	}
}

static void str_put(struct llm_tok *t, int32_t id)
{
	uint32_t m = t->vocab.cap - 1;
	if (str_get(t, t->text[id], t->text_n[id]) >= 0)
		return; /* duplicate text: the first id wins */
	uint32_t i = (uint32_t)fnv(t->text[id], t->text_n[id]) & m;
	while (t->vocab.slots[i] >= 0)
		i = (i + 1) & m;
	t->vocab.slots[i] = id;
}

static int pair_get(const struct pair_map *p, int32_t a, int32_t b,
		    uint32_t *rank, int32_t *merged)
{
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
	uint32_t m = p->cap - 1;
	for (uint32_t i = (uint32_t)mix(key) & m;; i = (i + 1) & m) {
		if (p->keys[i] == 0)
			return 0;
		if (p->keys[i] == key) {
			*rank = p->rank[i];
			*merged = p->merged[i];
			return 1;
		}
	}
}

static void pair_put(struct pair_map *p, int32_t a, int32_t b, uint32_t rank,
		     int32_t merged)
{
	uint32_t r;
	int32_t mg;
	if (pair_get(p, a, b, &r, &mg))
		return;
	uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
	uint32_t m = p->cap - 1, i = (uint32_t)mix(key) & m;
	while (p->keys[i])
		i = (i + 1) & m;
	p->keys[i] = key;
	p->rank[i] = rank;
	p->merged[i] = merged;
}

static uint32_t pow2_above(uint64_t n)
{
	uint32_t c = 16;
	while (c < 2 * n)
		c <<= 1;
	return c;
}

/* ---------------------------------------------------------------- UTF-8 */

static size_t utf8_put(uint32_t cp, char *o)
{
	if (cp < 0x80) { o[0] = (char)cp; return 1; }
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63));
		o[2] = (char)(0x80 | (cp & 63)); return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
	o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63));
	return 4;
}

/* Decodes one character at s (n > 0 bytes left); an invalid byte decodes
 * as itself with length 1 and *bad set. */
static size_t utf8_get(const uint8_t *s, size_t n, uint32_t *cp, int *bad)
{
	uint8_t c = s[0];
	size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
	*bad = 0;
	if (len == 0 || len > n)
		goto invalid;
	uint32_t v = len == 1 ? c : len == 2 ? c & 31 : len == 3 ? c & 15 : c & 7;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			goto invalid;
		v = v << 6 | (s[i] & 63);
	}
	*cp = v;
	return len;
invalid:
	*cp = c;
	*bad = 1;
	return 1;
}

/* GPT-2's printable stand-in for each byte. */
static uint32_t byte_cp(uint8_t b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return b;
	uint32_t k = 0;
	for (uint32_t x = 0; x < b; x++)
		if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
			k++;
	return 256 + k;
}

/* ---------------------------------------------------------------- classes */

enum cls { C_SPACE, C_LETTER, C_NUMBER, C_OTHER };

static int is_space(uint32_t c)
{
	return c == ' ' || (c >= 9 && c <= 13) || c == 0x85 || c == 0xA0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
	       c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_number(uint32_t c)
{
	return (c >= '0' && c <= '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 ||
	       (c >= 0xBC && c <= 0xBE) || (c >= 0x660 && c <= 0x669) ||
	       (c >= 0x6F0 && c <= 0x6F9) || (c >= 0x966 && c <= 0x96F) ||
	       (c >= 0x2070 && c <= 0x2079) || (c >= 0x2080 && c <= 0x2089) ||
	       (c >= 0x2150 && c <= 0x2189) || (c >= 0x2460 && c <= 0x249B) ||
	       (c >= 0xFF10 && c <= 0xFF19);
}

static enum cls classify(const struct llm_tok *t, uint32_t c)
{
	if (is_space(c))
		return C_SPACE;
	if (is_number(c))
		return C_NUMBER;
	if (c < 0x80)
		return ((c | 32) >= 'a' && (c | 32) <= 'z') ? C_LETTER : C_OTHER;
	if (t->loc != (locale_t)0)
		return iswalpha_l((wint_t)c, t->loc) ? C_LETTER : C_OTHER;
	int punct = (c >= 0xA1 && c <= 0xBF) || c == 0xD7 || c == 0xF7 ||
		    (c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F);
	return punct ? C_OTHER : C_LETTER;
}

/* ---------------------------------------------------------------- loading */

static int load_tokens(struct llm_tok *t, const struct llm_gguf *g, char *err,
		       size_t cap)
{
	const struct llm_gguf_kv *kv, *tt;
	if (llm_gguf_find_kv(g, "tokenizer.ggml.tokens", &kv) != 0 ||
	    kv->type != LLM_GGUF_ARRAY || kv->arr_type != LLM_GGUF_STRING ||
	    kv->arr_n == 0 || kv->arr_n > (1u << 24))
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tokenizer.ggml.tokens missing or not strings");
	t->n = (uint32_t)kv->arr_n;
	t->text = calloc(t->n, sizeof(char *));
	t->text_n = calloc(t->n, sizeof(uint32_t));
	t->type = calloc(t->n, 1);
	t->vocab.cap = pow2_above(t->n);
	t->vocab.slots = malloc(t->vocab.cap * sizeof(int32_t));
	if (!t->text || !t->text_n || !t->type || !t->vocab.slots)
		return -ENOMEM;
	memset(t->vocab.slots, 0xff, t->vocab.cap * sizeof(int32_t));
	uint64_t i = 0;
	const uint8_t *pos = NULL;
	struct llm_gguf_str s;
	while (llm_gguf_arr_str_next(kv, &i, &pos, &s) == 0) {
		uint32_t id = (uint32_t)i - 1;
		if (!(t->text[id] = strndup(s.p, s.n)))
			return -ENOMEM;
		t->text_n[id] = (uint32_t)strlen(t->text[id]);
		t->type[id] = 1;
	}
	if (llm_gguf_find_kv(g, "tokenizer.ggml.token_type", &tt) == 0 &&
	    tt->type == LLM_GGUF_ARRAY && tt->arr_type == LLM_GGUF_I32 &&
	    tt->arr_n == t->n)
		for (uint32_t k = 0; k < t->n; k++) {
			int32_t v;
			memcpy(&v, tt->val + 4 * (size_t)k, 4);
			t->type[k] = (uint8_t)v;
		}
	for (uint32_t k = 0; k < t->n; k++)
		str_put(t, (int32_t)k);
	return 0;
}

static int load_merges(struct llm_tok *t, const struct llm_gguf *g, char *err,
		       size_t cap)
{
	const struct llm_gguf_kv *kv;
	if (llm_gguf_find_kv(g, "tokenizer.ggml.merges", &kv) != 0 ||
	    kv->type != LLM_GGUF_ARRAY || kv->arr_type != LLM_GGUF_STRING)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tokenizer.ggml.merges missing");
	struct pair_map *p = &t->merges;
	p->cap = pow2_above(kv->arr_n);
	p->keys = calloc(p->cap, sizeof(uint64_t));
	p->rank = malloc(p->cap * sizeof(uint32_t));
	p->merged = malloc(p->cap * sizeof(int32_t));
	char *buf = malloc(1 << 16);
	if (!p->keys || !p->rank || !p->merged || !buf) {
		free(buf);
		return -ENOMEM;
	}
	uint64_t i = 0;
	const uint8_t *pos = NULL;
	struct llm_gguf_str s;
	while (llm_gguf_arr_str_next(kv, &i, &pos, &s) == 0) {
		const char *sp = memchr(s.p, ' ', s.n);
		if (!sp || s.n >= (1 << 16))
			continue;
		size_t na = (size_t)(sp - s.p), nb = s.n - na - 1;
		memcpy(buf, s.p, na);
		memcpy(buf + na, sp + 1, nb);
		int32_t a = str_get(t, s.p, na), b = str_get(t, sp + 1, nb);
		int32_t m = str_get(t, buf, na + nb);
		if (a >= 0 && b >= 0 && m >= 0)
			pair_put(p, a, b, (uint32_t)(i - 1), m);
	}
	free(buf);
	return 0;
}

static int cmp_len_desc(const void *a, const void *b, void *arg)
{
	const struct llm_tok *t = arg;
	uint32_t x = t->text_n[*(const int32_t *)a], y = t->text_n[*(const int32_t *)b];
	return x < y ? 1 : x > y ? -1 : 0;
}

static int load_specials(struct llm_tok *t)
{
	t->specials = malloc(t->n * sizeof(int32_t));
	if (!t->specials)
		return -ENOMEM;
	for (uint32_t k = 0; k < t->n; k++)
		if ((t->type[k] == TOKEN_TYPE_CONTROL || t->type[k] == TOKEN_TYPE_USER) &&
		    t->text_n[k])
			t->specials[t->n_specials++] = (int32_t)k;
	qsort_r(t->specials, t->n_specials, sizeof(int32_t), cmp_len_desc, t);
	return 0;
}

static int load_bytes(struct llm_tok *t, char *err, size_t cap)
{
	memset(t->cp_byte, 0, sizeof(t->cp_byte));
	for (int b = 0; b < 256; b++) {
		char s[4];
		uint32_t cp = byte_cp((uint8_t)b);
		size_t n = utf8_put(cp, s);
		if (cp < sizeof(t->cp_byte))
			t->cp_byte[cp] = (uint8_t)b;
		/* Some vocabularies lack control bytes: such bytes are dropped,
		 * as llama.cpp does. */
		t->byte_tok[b] = str_get(t, s, n);
	}
	(void)err;
	(void)cap;
	return 0;
}

int llm_tok_load(const struct llm_gguf *g, struct llm_tok **out, char *err,
		 size_t cap)
{
	struct llm_gguf_str model;
	if (llm_gguf_get_str(g, "tokenizer.ggml.model", &model) != 0 ||
	    model.n != 4 || memcmp(model.p, "gpt2", 4) != 0)
		return kvt_errmsg(KVT_EFORMAT, err, cap, "tokenizer.ggml.model is not gpt2");
	struct llm_tok *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int rc = load_tokens(t, g, err, cap);
	if (rc == 0)
		rc = load_merges(t, g, err, cap);
	if (rc == 0)
		rc = load_specials(t);
	if (rc == 0)
		rc = load_bytes(t, err, cap);
	if (rc) {
		llm_tok_free(t);
		return rc;
	}
	uint32_t v;
	t->bos = llm_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v) == 0 && v < t->n ? (int32_t)v : -1;
	t->eos = llm_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v) == 0 && v < t->n ? (int32_t)v : -1;
	t->loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	*out = t;
	return 0;
}

void llm_tok_free(struct llm_tok *t)
{
	if (!t)
		return;
	for (uint32_t k = 0; t->text && k < t->n; k++)
		free(t->text[k]);
	free(t->text);
	free(t->text_n);
	free(t->type);
	free(t->vocab.slots);
	free(t->merges.keys);
	free(t->merges.rank);
	free(t->merges.merged);
	free(t->specials);
	if (t->loc != (locale_t)0)
		freelocale(t->loc);
	free(t);
}

uint32_t llm_tok_vocab(const struct llm_tok *t) { return t->n; }
int32_t llm_tok_bos(const struct llm_tok *t) { return t->bos; }
int32_t llm_tok_eos(const struct llm_tok *t) { return t->eos; }

int llm_tok_is_control(const struct llm_tok *t, int32_t id)
{
	return id >= 0 && (uint32_t)id < t->n && t->type[id] == TOKEN_TYPE_CONTROL;
}

int llm_tok_find(const struct llm_tok *t, const char *piece, int32_t *id)
{
	int32_t r = str_get(t, piece, strlen(piece));
	if (r < 0)
		return KVT_ENOTFOUND;
	*id = r;
	return 0;
}

/* ---------------------------------------------------------------- encoding */

struct ids {
	int32_t *v;
	size_t n, cap;
};

static int push(struct ids *o, int32_t id)
{
	if (o->n == o->cap) {
		size_t c = o->cap ? 2 * o->cap : 256;
		int32_t *v = realloc(o->v, c * sizeof(int32_t));
		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = c;
	}
	o->v[o->n++] = id;
	return 0;
}

/* BPE of one pre-token (raw bytes): start from single bytes, merge the
 * lowest-ranked adjacent pair until none is left. */
static int bpe(const struct llm_tok *t, const uint8_t *s, size_t n, struct ids *o,
	       int32_t *sym)
{
	for (size_t i = 0; i < n; i++)
		sym[i] = t->byte_tok[s[i]];
	size_t m = n;
	for (;;) {
		uint32_t best = UINT32_MAX, r;
		size_t at = 0;
		int32_t merged = -1, mg;
		for (size_t i = 0; i + 1 < m; i++)
			if (pair_get(&t->merges, sym[i], sym[i + 1], &r, &mg) && r < best) {
				best = r;
				at = i;
				merged = mg;
			}
		if (merged < 0)
			break;
		sym[at] = merged;
		memmove(sym + at + 1, sym + at + 2, (m - at - 2) * sizeof(int32_t));
		m--;
	}
	for (size_t i = 0; i < m; i++)
		if (sym[i] >= 0 && push(o, sym[i]))
			return -ENOMEM;
	return 0;
}

struct cps {
	uint32_t *cp;
	size_t *off; /* byte offset of each character; off[n] = end */
	size_t n;
};

static enum cls cls_at(const struct llm_tok *t, const struct cps *c, size_t i)
{
	return classify(t, c->cp[i]);
}

static size_t run(const struct llm_tok *t, const struct cps *c, size_t i,
		  size_t end, enum cls k)
{
	while (i < end && cls_at(t, c, i) == k)
		i++;
	return i;
}

/* Length (in characters) of the GPT-2 regex match starting at i. */
static size_t gpt2_match(const struct llm_tok *t, const struct cps *c, size_t i,
			 size_t end)
{
	uint32_t ch = c->cp[i];
	if (ch == '\'' && i + 1 < end) {
		uint32_t a = c->cp[i + 1], b = i + 2 < end ? c->cp[i + 2] : 0;
		if (a == 's' || a == 't' || a == 'm' || a == 'd')
			return 2;
		if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
			return 3;
	}
	size_t j = i + (ch == ' ' && i + 1 < end);
	enum cls k = cls_at(t, c, j);
	if (j > i && k == C_SPACE)
		j = i;
	if (k == C_LETTER || k == C_NUMBER)
		return run(t, c, j, end, k) - i;
	if (k == C_OTHER) {
		while (j < end && cls_at(t, c, j) == C_OTHER)
			j++;
		return j - i;
	}
	size_t ws = run(t, c, i, end, C_SPACE) - i;
	if (ws > 1 && i + ws < end)
		return ws - 1;
	return ws ? ws : 1;
}

/* Pre-tokenizes characters [b, e): digits alone, the rest by the GPT-2 rule. */
static int encode_span(const struct llm_tok *t, const uint8_t *s, const struct cps *c,
		       size_t b, size_t e, struct ids *o, int32_t *sym)
{
	size_t i = b;
	while (i < e) {
		size_t seg = i;
		while (seg < e && !is_number(c->cp[seg]))
			seg++;
		while (i < seg) {
			size_t len = gpt2_match(t, c, i, seg);
			if (bpe(t, s + c->off[i], c->off[i + len] - c->off[i], o, sym))
				return -ENOMEM;
			i += len;
		}
		if (seg < e) {
			if (bpe(t, s + c->off[seg], c->off[seg + 1] - c->off[seg], o, sym))
				return -ENOMEM;
			i = seg + 1;
		}
	}
	return 0;
}

static int decode_cps(const uint8_t *s, size_t n, struct cps *c)
{
	c->cp = malloc((n + 1) * sizeof(uint32_t));
	c->off = malloc((n + 1) * sizeof(size_t));
	if (!c->cp || !c->off)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n;) {
		int bad;
		c->off[k] = i;
		i += utf8_get(s + i, n - i, &c->cp[k], &bad);
		if (bad)
			c->cp[k] = 0xFFFD; /* classify as "other", keep the byte */
		k++;
	}
	c->off[k] = n;
	c->n = k;
	return 0;
}

/* Finds the next special token at or after byte i; returns its byte offset
 * (n when none) and its id in *id. */
static size_t next_special(const struct llm_tok *t, const char *s, size_t n,
			   size_t i, int32_t *id)
{
	for (; i < n; i++)
		for (uint32_t k = 0; k < t->n_specials; k++) {
			int32_t sp = t->specials[k];
			uint32_t len = t->text_n[sp];
			if (len <= n - i && s[i] == t->text[sp][0] &&
			    memcmp(s + i, t->text[sp], len) == 0) {
				*id = sp;
				return i;
			}
		}
	return n;
}

static int encode_text(const struct llm_tok *t, const char *text, size_t len,
		       struct ids *o)
{
	struct cps c = {0};
	int32_t *sym = malloc((len + 1) * sizeof(int32_t));
	int rc = sym ? decode_cps((const uint8_t *)text, len, &c) : -ENOMEM;
	if (rc == 0)
		rc = encode_span(t, (const uint8_t *)text, &c, 0, c.n, o, sym);
	free(c.cp);
	free(c.off);
	free(sym);
	return rc;
}

int llm_tok_encode(const struct llm_tok *t, const char *text, size_t len,
		   int parse_special, int32_t **ids, size_t *n)
{
	if (!t || (!text && len) || !ids || !n)
		return -EINVAL;
	struct ids o = {0};
	size_t i = 0;
	int rc = 0;
	while (i < len && rc == 0) {
		int32_t sp = -1;
		size_t j = parse_special ? next_special(t, text, len, i, &sp) : len;
		if (j > i)
			rc = encode_text(t, text + i, j - i, &o);
		if (rc == 0 && j < len) {
			rc = push(&o, sp);
			j += t->text_n[sp];
		}
		i = j;
	}
	if (rc) {
		free(o.v);
		return rc;
	}
	*ids = o.v;
	*n = o.n;
	return 0;
}

/* ---------------------------------------------------------------- decoding */

static int append(char **buf, size_t *n, size_t *cap, const char *s, size_t len)
{
	if (*n + len + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		while (c < *n + len + 1)
			c *= 2;
		char *b = realloc(*buf, c);
		if (!b)
			return -ENOMEM;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *n, s, len);
	*n += len;
	(*buf)[*n] = 0;
	return 0;
}

static int decode_one(const struct llm_tok *t, int32_t id, int special, char **buf,
		      size_t *n, size_t *cap)
{
	const char *s = t->text[id];
	size_t len = t->text_n[id];
	if (t->type[id] == TOKEN_TYPE_CONTROL || t->type[id] == TOKEN_TYPE_USER)
		return special || t->type[id] == TOKEN_TYPE_USER ? append(buf, n, cap, s, len) : 0;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		int bad;
		size_t l = utf8_get((const uint8_t *)s + i, len - i, &cp, &bad);
		char b;
		int rc;
		if (!bad && cp < 324 && (cp >= 256 || byte_cp((uint8_t)cp) == cp)) {
			b = (char)t->cp_byte[cp];
			rc = append(buf, n, cap, &b, 1);
		} else {
			rc = append(buf, n, cap, s + i, l);
		}
		if (rc)
			return rc;
		i += l;
	}
	return 0;
}

int llm_tok_decode(const struct llm_tok *t, const int32_t *ids, size_t n,
		   int special, char **out, size_t *len)
{
	if (!t || (!ids && n) || !out || !len)
		return -EINVAL;
	char *buf = NULL;
	size_t used = 0, cap = 0;
	int rc = append(&buf, &used, &cap, "", 0);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = (ids[i] < 0 || (uint32_t)ids[i] >= t->n)
			     ? -EINVAL
			     : decode_one(t, ids[i], special, &buf, &used, &cap);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = used;
	return 0;
}
