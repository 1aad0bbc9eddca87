/* protocol.c - encoding and decoding of kvtierd frames (see protocol.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "protocol.h"

static const char *const op_names[] = {
	[KVT_OP_HELLO] = "hello",	[KVT_OP_CREATE] = "create",
	[KVT_OP_OPEN] = "open",		[KVT_OP_CLOSE] = "close",
	[KVT_OP_DROP] = "drop",		[KVT_OP_LIST] = "list",
	[KVT_OP_INFO] = "info",		[KVT_OP_APPEND] = "append",
	[KVT_OP_READ] = "read",		[KVT_OP_READ_BLOCK] = "read_block",
	[KVT_OP_STATS] = "stats",	[KVT_OP_LOCATE] = "locate",
	[KVT_OP_RETRIEVE] = "retrieve",
	[KVT_OP_SNAPSHOT_SAVE] = "snapshot_save",
	[KVT_OP_SNAPSHOT_LOAD] = "snapshot_load",
};

int kvt_op_known(unsigned op)
{
	if (op == KVT_OP_ERROR)
		return 1;
	return op < sizeof op_names / sizeof op_names[0] && op_names[op];
}

const char *kvt_op_name(unsigned op)
{
	if (op == KVT_OP_ERROR)
		return "error";
	return kvt_op_known(op) ? op_names[op] : "?";
}

/* ---------------------------------------------------------------- header */

void kvt_frame_header_encode(uint8_t *buf, const struct kvt_frame_header *h)
{
	kvt_put_u32(buf, KVT_PROTO_MAGIC);
	buf[4] = h->version;
	buf[5] = h->op;
	kvt_put_u16(buf + 6, h->flags);
	kvt_put_u64(buf + 8, h->req_id);
	kvt_put_u32(buf + 16, h->len);
	kvt_put_u32(buf + 20, 0);
}

int kvt_frame_header_decode(const uint8_t *buf, size_t len,
			    uint32_t max_payload, struct kvt_frame_header *h)
{
	if (len < KVT_PROTO_HEADER_BYTES || kvt_get_u32(buf) != KVT_PROTO_MAGIC)
		return KVT_EPROTO;
	h->version = buf[4];
	h->op = buf[5];
	h->flags = kvt_get_u16(buf + 6);
	h->req_id = kvt_get_u64(buf + 8);
	h->len = kvt_get_u32(buf + 16);
	if (!kvt_op_known(h->op) || (h->flags & ~KVT_PF_ALL) ||
	    kvt_get_u32(buf + 20) != 0)
		return KVT_EPROTO;
	if (h->version < KVT_PROTO_MIN_VERSION || h->version > KVT_PROTO_VERSION)
		return KVT_EVERSION;
	if (max_payload > KVT_PROTO_MAX_PAYLOAD)
		max_payload = KVT_PROTO_MAX_PAYLOAD;
	if (h->len > max_payload)
		return KVT_ETOOBIG;
	return 0;
}

/* ---------------------------------------------------------------- writer */

void kvt_wbuf_init(struct kvt_wbuf *w)
{
	memset(w, 0, sizeof *w);
}

void kvt_wbuf_free(struct kvt_wbuf *w)
{
	free(w->data);
	kvt_wbuf_init(w);
}

uint8_t *kvt_wbuf_grow(struct kvt_wbuf *w, size_t n)
{
	if (w->err)
		return NULL;
	if (n > SIZE_MAX / 2 - w->len) {
		w->err = KVT_ETOOBIG;
		return NULL;
	}
	if (w->len + n > w->cap || !w->data) {
		size_t cap = w->cap ? w->cap : 256;
		if (cap < 256)
			cap = 256;
		while (cap < w->len + n)
			cap *= 2;
		uint8_t *p = realloc(w->data, cap);
		if (!p) {
			w->err = -ENOMEM;
			return NULL;
		}
		w->data = p;
		w->cap = cap;
	}
	uint8_t *at = w->data + w->len;
	w->len += n;
	return at;
}

static void put_u8(struct kvt_wbuf *w, uint8_t v)
{
	uint8_t *p = kvt_wbuf_grow(w, 1);
	if (p)
		*p = v;
}

static void put_u16(struct kvt_wbuf *w, uint16_t v)
{
	uint8_t *p = kvt_wbuf_grow(w, 2);
	if (p)
		kvt_put_u16(p, v);
}

static void put_u32(struct kvt_wbuf *w, uint32_t v)
{
	uint8_t *p = kvt_wbuf_grow(w, 4);
	if (p)
		kvt_put_u32(p, v);
}

static void put_u64(struct kvt_wbuf *w, uint64_t v)
{
	uint8_t *p = kvt_wbuf_grow(w, 8);
	if (p)
		kvt_put_u64(p, v);
}

static void put_bytes(struct kvt_wbuf *w, const void *src, size_t n)
{
	uint8_t *p = kvt_wbuf_grow(w, n);
	if (p && n)
		memcpy(p, src, n);
}

static void put_f32(struct kvt_wbuf *w, float f)
{
	uint32_t v;
	memcpy(&v, &f, sizeof v);
	put_u32(w, v);
}

static void put_f64(struct kvt_wbuf *w, double f)
{
	uint64_t v;
	memcpy(&v, &f, sizeof v);
	put_u64(w, v);
}

/* A string as u16 length + bytes; max bytes, no NUL inside. */
static void put_str(struct kvt_wbuf *w, const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n > max) {
		if (!w->err)
			w->err = KVT_ETOOBIG;
		return;
	}
	put_u16(w, (uint16_t)n);
	put_bytes(w, s, n);
}

void kvt_frame_begin(struct kvt_wbuf *w)
{
	w->len = 0;
	w->err = 0;
	kvt_wbuf_grow(w, KVT_PROTO_HEADER_BYTES);
}

int kvt_frame_end(struct kvt_wbuf *w, unsigned op, unsigned flags,
		  uint64_t req_id)
{
	if (w->err)
		return w->err;
	size_t payload = w->len - KVT_PROTO_HEADER_BYTES;
	if (payload > KVT_PROTO_MAX_PAYLOAD)
		return KVT_ETOOBIG;
	struct kvt_frame_header h = {
		.version = KVT_PROTO_VERSION,
		.op = (uint8_t)op,
		.flags = (uint16_t)flags,
		.req_id = req_id,
		.len = (uint32_t)payload,
	};
	kvt_frame_header_encode(w->data, &h);
	return 0;
}

/* ---------------------------------------------------------------- reader */

/* Cursor over a payload; the first error sticks, later gets return 0. */
struct rbuf {
	const uint8_t *p;
	size_t len;
	size_t pos;
	int err;
};

static const uint8_t *take(struct rbuf *r, size_t n)
{
	if (r->err || n > r->len - r->pos) {
		r->err = KVT_EPROTO;
		return NULL;
	}
	const uint8_t *at = r->p + r->pos;
	r->pos += n;
	return at;
}

static uint8_t get_u8(struct rbuf *r)
{
	const uint8_t *p = take(r, 1);
	return p ? *p : 0;
}

static uint16_t get_u16(struct rbuf *r)
{
	const uint8_t *p = take(r, 2);
	return p ? kvt_get_u16(p) : 0;
}

static uint32_t get_u32(struct rbuf *r)
{
	const uint8_t *p = take(r, 4);
	return p ? kvt_get_u32(p) : 0;
}

static uint64_t get_u64(struct rbuf *r)
{
	const uint8_t *p = take(r, 8);
	return p ? kvt_get_u64(p) : 0;
}

static float get_f32(struct rbuf *r)
{
	uint32_t v = get_u32(r);
	float f;
	memcpy(&f, &v, sizeof f);
	return f;
}

static double get_f64(struct rbuf *r)
{
	uint64_t v = get_u64(r);
	double f;
	memcpy(&f, &v, sizeof f);
	return f;
}

/* Reads a string of min..max bytes without NUL into dst (max + 1 bytes). */
static void get_str(struct rbuf *r, char *dst, size_t min, size_t max)
{
	uint16_t n = get_u16(r);
	if (!r->err && (n < min || n > max)) {
		r->err = n > max ? KVT_ETOOBIG : KVT_EPROTO;
		return;
	}
	const uint8_t *s = take(r, n);
	if (!s)
		return;
	if (memchr(s, 0, n)) {
		r->err = KVT_EPROTO;
		return;
	}
	memcpy(dst, s, n);
	dst[n] = 0;
}

static void check(struct rbuf *r, int ok)
{
	if (!ok && !r->err)
		r->err = KVT_EPROTO;
}

static int finish(struct rbuf *r)
{
	if (!r->err && r->pos != r->len)
		r->err = KVT_EPROTO;
	return r->err;
}

#define RBUF(p, len) {(p), (len), 0, 0}

/* ---------------------------------------------------------------- shared parts */

static void put_config(struct kvt_wbuf *w, const struct kvt_cache_config *c)
{
	put_u32(w, c->shape.n_layers);
	put_u32(w, c->shape.n_kv_heads);
	put_u32(w, c->shape.head_dim);
	put_u32(w, c->shape.block_tokens);
	put_u32(w, (uint32_t)c->shape.dtype);
	put_u8(w, (uint8_t)c->cold.id);
	put_u8(w, c->cold.bits);
	put_u8(w, c->cold.high_bits);
	put_u16(w, c->cold.group);
	put_u32(w, c->cold.residual);
	put_f32(w, c->cold.salient_ratio);
	put_u32(w, c->recent_tokens);
}

static void get_config(struct rbuf *r, struct kvt_cache_config *c)
{
	memset(c, 0, sizeof *c);
	c->shape.n_layers = get_u32(r);
	c->shape.n_kv_heads = get_u32(r);
	c->shape.head_dim = get_u32(r);
	c->shape.block_tokens = get_u32(r);
	uint32_t dtype = get_u32(r);
	uint8_t codec = get_u8(r);
	/* Only the enum's range is checked here; the store validates the rest. */
	check(r, dtype >= KVT_DTYPE_F16 && dtype <= KVT_DTYPE_F32);
	check(r, codec <= KVT_CODEC_ZIPCACHE);
	c->shape.dtype = (enum kvt_dtype)dtype;
	c->cold.id = (enum kvt_codec_id)codec;
	c->cold.bits = get_u8(r);
	c->cold.high_bits = get_u8(r);
	c->cold.group = get_u16(r);
	c->cold.residual = get_u32(r);
	c->cold.salient_ratio = get_f32(r);
	c->recent_tokens = get_u32(r);
}

static void put_info(struct kvt_wbuf *w, const struct kvt_cache_info *i)
{
	put_str(w, i->name, KVT_NAME_MAX);
	put_u64(w, i->id);
	put_config(w, &i->config);
	put_u64(w, i->n_tokens);
	put_u64(w, i->n_blocks);
	put_u64(w, i->raw_bytes);
	put_u64(w, i->stored_bytes);
}

/* Smallest encoding of an info: a 1-byte name. */
#define INFO_MIN_BYTES (2 + 1 + 8 + 20 + 3 + 2 + 4 + 4 + 4 + 32)

static void get_info(struct rbuf *r, struct kvt_cache_info *i)
{
	memset(i, 0, sizeof *i);
	get_str(r, i->name, 1, KVT_NAME_MAX);
	i->id = get_u64(r);
	get_config(r, &i->config);
	i->n_tokens = get_u64(r);
	i->n_blocks = get_u64(r);
	i->raw_bytes = get_u64(r);
	i->stored_bytes = get_u64(r);
}

/* ---------------------------------------------------------------- messages */

int kvt_enc_hello_req(struct kvt_wbuf *w, const struct kvt_msg_hello_req *m)
{
	put_u16(w, m->min_version);
	put_u16(w, m->max_version);
	return w->err;
}

int kvt_dec_hello_req(const uint8_t *p, size_t len, struct kvt_msg_hello_req *m)
{
	struct rbuf r = RBUF(p, len);
	m->min_version = get_u16(&r);
	m->max_version = get_u16(&r);
	check(&r, m->min_version <= m->max_version);
	return finish(&r);
}

int kvt_enc_hello_rep(struct kvt_wbuf *w, const struct kvt_msg_hello_rep *m)
{
	put_u16(w, m->version);
	put_u32(w, m->max_frame);
	put_u32(w, m->max_inline);
	put_u32(w, m->max_open_caches);
	put_u64(w, m->max_staging);
	return w->err;
}

int kvt_dec_hello_rep(const uint8_t *p, size_t len, struct kvt_msg_hello_rep *m)
{
	struct rbuf r = RBUF(p, len);
	m->version = get_u16(&r);
	m->max_frame = get_u32(&r);
	m->max_inline = get_u32(&r);
	m->max_open_caches = get_u32(&r);
	m->max_staging = get_u64(&r);
	check(&r, m->max_frame <= KVT_PROTO_MAX_PAYLOAD &&
			  m->max_inline <= m->max_frame);
	return finish(&r);
}

int kvt_enc_name(struct kvt_wbuf *w, const struct kvt_msg_name *m)
{
	put_str(w, m->name, KVT_NAME_MAX);
	return w->err;
}

int kvt_dec_name(const uint8_t *p, size_t len, struct kvt_msg_name *m)
{
	struct rbuf r = RBUF(p, len);
	get_str(&r, m->name, 1, KVT_NAME_MAX);
	return finish(&r);
}

int kvt_enc_create_req(struct kvt_wbuf *w, const struct kvt_msg_create_req *m)
{
	put_str(w, m->name, KVT_NAME_MAX);
	put_config(w, &m->config);
	return w->err;
}

int kvt_dec_create_req(const uint8_t *p, size_t len,
		       struct kvt_msg_create_req *m)
{
	struct rbuf r = RBUF(p, len);
	get_str(&r, m->name, 1, KVT_NAME_MAX);
	get_config(&r, &m->config);
	return finish(&r);
}

int kvt_enc_handle(struct kvt_wbuf *w, const struct kvt_msg_handle *m)
{
	put_u32(w, m->handle);
	return w->err;
}

int kvt_dec_handle(const uint8_t *p, size_t len, struct kvt_msg_handle *m)
{
	struct rbuf r = RBUF(p, len);
	m->handle = get_u32(&r);
	return finish(&r);
}

int kvt_enc_cache_rep(struct kvt_wbuf *w, const struct kvt_msg_cache_rep *m)
{
	put_u32(w, m->handle);
	put_info(w, &m->info);
	return w->err;
}

int kvt_dec_cache_rep(const uint8_t *p, size_t len, struct kvt_msg_cache_rep *m)
{
	struct rbuf r = RBUF(p, len);
	m->handle = get_u32(&r);
	get_info(&r, &m->info);
	return finish(&r);
}

int kvt_enc_list_rep(struct kvt_wbuf *w, const struct kvt_msg_list_rep *m)
{
	put_u32(w, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		put_info(w, &m->infos[i]);
	return w->err;
}

int kvt_dec_list_rep(const uint8_t *p, size_t len, struct kvt_msg_list_rep *m)
{
	struct rbuf r = RBUF(p, len);
	uint32_t n = get_u32(&r);
	/* Bound the allocation by what the payload can hold. */
	check(&r, n <= (len - r.pos) / INFO_MIN_BYTES);
	if (r.err)
		return r.err;
	struct kvt_cache_info *infos = NULL;
	if (n && !(infos = calloc(n, sizeof *infos)))
		return -ENOMEM;
	for (uint32_t i = 0; i < n && !r.err; i++)
		get_info(&r, &infos[i]);
	if (finish(&r)) {
		free(infos);
		return r.err;
	}
	m->n = n;
	m->infos = infos;
	return 0;
}

int kvt_enc_append_req(struct kvt_wbuf *w, const struct kvt_msg_append_req *m)
{
	put_u32(w, m->handle);
	put_u32(w, m->layer);
	put_u32(w, m->n_tokens);
	put_u8(w, m->via);
	put_u64(w, m->offset);
	put_u64(w, m->len);
	if (m->via == KVT_APPEND_INLINE)
		put_bytes(w, m->data, m->len);
	return w->err;
}

int kvt_dec_append_req(const uint8_t *p, size_t len,
		       struct kvt_msg_append_req *m)
{
	struct rbuf r = RBUF(p, len);
	m->handle = get_u32(&r);
	m->layer = get_u32(&r);
	m->n_tokens = get_u32(&r);
	m->via = get_u8(&r);
	m->offset = get_u64(&r);
	m->len = get_u64(&r);
	m->data = NULL;
	check(&r, m->n_tokens > 0 && m->len > 0);
	check(&r, m->via == KVT_APPEND_INLINE || m->via == KVT_APPEND_FD);
	if (!r.err && m->via == KVT_APPEND_INLINE) {
		check(&r, m->offset == 0 && m->len == len - r.pos);
		m->data = take(&r, r.err ? 0 : (size_t)m->len);
	}
	check(&r, m->offset <= UINT64_MAX - m->len);
	return finish(&r);
}

int kvt_enc_read_req(struct kvt_wbuf *w, const struct kvt_msg_read_req *m)
{
	put_u32(w, m->handle);
	put_u32(w, m->layer);
	put_u64(w, m->first);
	put_u32(w, m->n_tokens);
	return w->err;
}

int kvt_dec_read_req(const uint8_t *p, size_t len, struct kvt_msg_read_req *m)
{
	struct rbuf r = RBUF(p, len);
	m->handle = get_u32(&r);
	m->layer = get_u32(&r);
	m->first = get_u64(&r);
	m->n_tokens = get_u32(&r);
	return finish(&r);
}

int kvt_enc_loc_rep(struct kvt_wbuf *w, const struct kvt_msg_loc_rep *m)
{
	put_u8(w, m->kind);
	put_u8(w, m->codec);
	put_u32(w, m->region);
	put_u64(w, m->offset);
	put_u32(w, m->len);
	put_u32(w, m->n_tokens);
	put_u64(w, m->checksum);
	return w->err;
}

static void get_loc(struct rbuf *r, struct kvt_msg_loc_rep *m, int kind_min)
{
	m->kind = get_u8(r);
	m->codec = get_u8(r);
	m->region = get_u32(r);
	m->offset = get_u64(r);
	m->len = get_u32(r);
	m->n_tokens = get_u32(r);
	m->checksum = get_u64(r);
	check(r, m->kind >= kind_min && m->kind <= KVT_REGION_STAGING);
	check(r, m->codec <= KVT_CODEC_ZIPCACHE);
	check(r, m->offset <= UINT64_MAX - m->len);
}

int kvt_dec_loc_rep(const uint8_t *p, size_t len, struct kvt_msg_loc_rep *m)
{
	struct rbuf r = RBUF(p, len);
	get_loc(&r, m, KVT_REGION_ARENA);
	return finish(&r);
}

int kvt_enc_locate_rep(struct kvt_wbuf *w, const struct kvt_msg_locate_rep *m)
{
	if (m->n > KVT_LOCATE_MAX) {
		w->err = w->err ? w->err : KVT_ETOOBIG;
		return w->err;
	}
	put_u32(w, m->n);
	for (uint32_t i = 0; i < m->n; i++)
		kvt_enc_loc_rep(w, &m->locs[i]);
	return w->err;
}

int kvt_dec_locate_rep(const uint8_t *p, size_t len,
		       struct kvt_msg_locate_rep *m)
{
	struct rbuf r = RBUF(p, len);
	m->n = get_u32(&r);
	if (!r.err && m->n > KVT_LOCATE_MAX)
		r.err = KVT_ETOOBIG;
	for (uint32_t i = 0; i < m->n && !r.err; i++)
		get_loc(&r, &m->locs[i], 0);
	return finish(&r);
}

int kvt_enc_stats_rep(struct kvt_wbuf *w, const struct kvt_msg_stats_rep *m)
{
	const struct kvt_stats *s = &m->stats;
	for (int t = 0; t < KVT_TIER_COUNT; t++) {
		put_u8(w, s->tier[t].present ? 1 : 0);
		put_u64(w, s->tier[t].capacity);
		put_u64(w, s->tier[t].used_bytes);
		put_u64(w, s->tier[t].n_blocks);
	}
	put_u64(w, s->n_caches);
	put_u64(w, s->n_blocks);
	put_u64(w, s->raw_bytes);
	put_u64(w, s->stored_bytes);
	put_f64(w, s->compression_ratio);
	put_u64(w, s->demotions);
	put_u64(w, s->promotions);
	return w->err;
}

int kvt_dec_stats_rep(const uint8_t *p, size_t len, struct kvt_msg_stats_rep *m)
{
	struct rbuf r = RBUF(p, len);
	struct kvt_stats *s = &m->stats;
	memset(s, 0, sizeof *s);
	for (int t = 0; t < KVT_TIER_COUNT; t++) {
		uint8_t present = get_u8(&r);
		check(&r, present <= 1);
		s->tier[t].present = present;
		s->tier[t].capacity = get_u64(&r);
		s->tier[t].used_bytes = get_u64(&r);
		s->tier[t].n_blocks = get_u64(&r);
	}
	s->n_caches = get_u64(&r);
	s->n_blocks = get_u64(&r);
	s->raw_bytes = get_u64(&r);
	s->stored_bytes = get_u64(&r);
	s->compression_ratio = get_f64(&r);
	s->demotions = get_u64(&r);
	s->promotions = get_u64(&r);
	return finish(&r);
}

int kvt_enc_error(struct kvt_wbuf *w, const struct kvt_msg_error *m)
{
	put_u32(w, (uint32_t)m->code);
	put_str(w, m->message, KVT_PROTO_MAX_MESSAGE);
	return w->err;
}

int kvt_dec_error(const uint8_t *p, size_t len, struct kvt_msg_error *m)
{
	struct rbuf r = RBUF(p, len);
	m->code = (int32_t)get_u32(&r);
	check(&r, m->code < 0);
	get_str(&r, m->message, 0, KVT_PROTO_MAX_MESSAGE);
	return finish(&r);
}

uint64_t kvt_proto_kv_bytes(const struct kvt_shape *shape, uint32_t n_tokens)
{
	if (kvt_shape_check(shape))
		return 0;
	return 2ull * shape->n_kv_heads * shape->head_dim *
	       kvt_dtype_size(shape->dtype) * n_tokens;
}

/* ---------------------------------------------------------------- retrieve */

int kvt_enc_retrieve_req(struct kvt_wbuf *w, const struct kvt_msg_retrieve_req *m)
{
	put_u32(w, m->handle);
	put_u32(w, m->layer);
	put_u8(w, m->mode);
	put_u32(w, m->n_q_heads);
	put_u32(w, m->n_queries);
	put_u64(w, m->budget_tokens);
	put_u32(w, m->sink_tokens);
	put_u32(w, m->recent_tokens);
	put_u32(w, m->q_len);
	put_bytes(w, m->q, m->q_len);
	return w->err;
}

int kvt_dec_retrieve_req(const uint8_t *p, size_t len,
			 struct kvt_msg_retrieve_req *m)
{
	struct rbuf r = RBUF(p, len);
	m->handle = get_u32(&r);
	m->layer = get_u32(&r);
	m->mode = get_u8(&r);
	m->n_q_heads = get_u32(&r);
	m->n_queries = get_u32(&r);
	m->budget_tokens = get_u64(&r);
	m->sink_tokens = get_u32(&r);
	m->recent_tokens = get_u32(&r);
	m->q_len = get_u32(&r);
	uint64_t vec = (uint64_t)m->n_q_heads * m->n_queries * 4;
	check(&r, vec > 0 && m->q_len > 0 && m->q_len % vec == 0);
	m->q = take(&r, r.err ? 0 : m->q_len);
	return finish(&r);
}

int kvt_enc_retrieve_rep(struct kvt_wbuf *w, const struct kvt_msg_retrieve_rep *m)
{
	if (m->n_blocks > KVT_RETRIEVE_MAX_BLOCKS) {
		w->err = w->err ? w->err : KVT_ETOOBIG;
		return w->err;
	}
	put_u32(w, m->block_tokens);
	put_u32(w, m->n_blocks);
	put_u64(w, m->n_tokens);
	put_u64(w, m->total_tokens);
	for (uint32_t i = 0; i < m->n_blocks; i++) {
		put_u32(w, m->blocks[i]);
		put_u32(w, m->n_valid[i]);
	}
	return w->err;
}

/* Blocks ascending, valid counts within a block, summing to n_tokens. */
static void check_blocks(struct rbuf *r, const struct kvt_msg_retrieve_rep *m)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < m->n_blocks; i++) {
		check(r, m->n_valid[i] <= m->block_tokens);
		check(r, i == 0 || m->blocks[i] > m->blocks[i - 1]);
		sum += m->n_valid[i];
	}
	check(r, sum == m->n_tokens && m->n_tokens <= m->total_tokens);
}

int kvt_dec_retrieve_rep(const uint8_t *p, size_t len,
			 struct kvt_msg_retrieve_rep *m)
{
	struct rbuf r = RBUF(p, len);
	m->block_tokens = get_u32(&r);
	m->n_blocks = get_u32(&r);
	m->n_tokens = get_u64(&r);
	m->total_tokens = get_u64(&r);
	check(&r, m->n_blocks <= KVT_RETRIEVE_MAX_BLOCKS &&
		  m->n_blocks == (len - r.pos) / 8 && (len - r.pos) % 8 == 0);
	if (r.err)
		return r.err;
	m->blocks = malloc(((size_t)m->n_blocks + 1) * 4);
	m->n_valid = malloc(((size_t)m->n_blocks + 1) * 4);
	if (!m->blocks || !m->n_valid) {
		free(m->blocks), free(m->n_valid);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < m->n_blocks; i++) {
		m->blocks[i] = get_u32(&r);
		m->n_valid[i] = get_u32(&r);
	}
	check_blocks(&r, m);
	if (finish(&r)) {
		free(m->blocks), free(m->n_valid);
		return r.err;
	}
	return 0;
}

/* ---------------------------------------------------------------- snapshots */

int kvt_enc_snap_save_req(struct kvt_wbuf *w, const struct kvt_msg_snap_save_req *m)
{
	put_str(w, m->name, KVT_NAME_MAX);
	put_str(w, m->path, KVT_PROTO_MAX_PATH);
	put_u8(w, m->zstd_level);
	put_u8(w, m->progress);
	return w->err;
}

int kvt_dec_snap_save_req(const uint8_t *p, size_t len,
			  struct kvt_msg_snap_save_req *m)
{
	struct rbuf r = RBUF(p, len);
	get_str(&r, m->name, 1, KVT_NAME_MAX);
	get_str(&r, m->path, 1, KVT_PROTO_MAX_PATH);
	m->zstd_level = get_u8(&r);
	m->progress = get_u8(&r);
	check(&r, m->zstd_level <= 22 && m->progress <= 1);
	return finish(&r);
}

int kvt_enc_snap_load_req(struct kvt_wbuf *w, const struct kvt_msg_snap_load_req *m)
{
	put_str(w, m->path, KVT_PROTO_MAX_PATH);
	put_str(w, m->as_name, KVT_NAME_MAX);
	put_u8(w, m->progress);
	return w->err;
}

int kvt_dec_snap_load_req(const uint8_t *p, size_t len,
			  struct kvt_msg_snap_load_req *m)
{
	struct rbuf r = RBUF(p, len);
	get_str(&r, m->path, 1, KVT_PROTO_MAX_PATH);
	get_str(&r, m->as_name, 0, KVT_NAME_MAX);
	m->progress = get_u8(&r);
	check(&r, m->progress <= 1);
	return finish(&r);
}

int kvt_enc_snap_rep(struct kvt_wbuf *w, const struct kvt_msg_snap_rep *m)
{
	const struct kvt_snapshot_info *i = &m->info;
	put_str(w, i->name, KVT_NAME_MAX);
	put_config(w, &i->config);
	put_u32(w, i->version);
	put_u64(w, i->n_tokens);
	put_u64(w, i->n_blocks);
	put_u64(w, i->n_sections);
	put_u64(w, i->payload_bytes);
	put_u64(w, i->n_meta);
	put_u64(w, i->meta_bytes);
	put_u64(w, i->file_bytes);
	return w->err;
}

int kvt_dec_snap_rep(const uint8_t *p, size_t len, struct kvt_msg_snap_rep *m)
{
	struct rbuf r = RBUF(p, len);
	struct kvt_snapshot_info *i = &m->info;
	memset(i, 0, sizeof *i);
	get_str(&r, i->name, 1, KVT_NAME_MAX);
	get_config(&r, &i->config);
	i->version = get_u32(&r);
	i->n_tokens = get_u64(&r);
	i->n_blocks = get_u64(&r);
	i->n_sections = get_u64(&r);
	i->payload_bytes = get_u64(&r);
	i->n_meta = get_u64(&r);
	i->meta_bytes = get_u64(&r);
	i->file_bytes = get_u64(&r);
	return finish(&r);
}

int kvt_enc_progress(struct kvt_wbuf *w, const struct kvt_msg_progress *m)
{
	put_u64(w, m->done);
	put_u64(w, m->total);
	return w->err;
}

int kvt_dec_progress(const uint8_t *p, size_t len, struct kvt_msg_progress *m)
{
	struct rbuf r = RBUF(p, len);
	m->done = get_u64(&r);
	m->total = get_u64(&r);
	check(&r, m->done <= m->total);
	return finish(&r);
}
