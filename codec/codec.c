/*
 * codec.c - generic part of every codec: the header, parameter checks and
 * dispatch to the per-codec tables.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "codec_internal.h"
#include "half.h"

static const struct kvt_codec_ops *const codecs[] = {
	&kvt_codec_raw_ops,
	&kvt_codec_kivi_ops,
	&kvt_codec_zipcache_ops,
};

static const struct kvt_codec_ops *codec_ops(unsigned id)
{
	for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++)
		if ((unsigned)codecs[i]->id == id)
			return codecs[i];
	return NULL;
}

const char *kvt_codec_name(enum kvt_codec_id id)
{
	const struct kvt_codec_ops *ops = codec_ops(id);
	return ops ? ops->name : NULL;
}

int kvt_codec_from_name(const char *name, enum kvt_codec_id *out)
{
	for (size_t i = 0; name && i < sizeof codecs / sizeof codecs[0]; i++) {
		if (strcmp(codecs[i]->name, name) == 0) {
			*out = codecs[i]->id;
			return 0;
		}
	}
	return KVT_ECODEC;
}

int kvt_codec_params_init(struct kvt_codec_params *p, enum kvt_codec_id id)
{
	if (!p || !codec_ops(id))
		return -EINVAL;
	memset(p, 0, sizeof *p);
	p->id = id;
	if (id == KVT_CODEC_KIVI) {
		p->bits = 2;
		p->group = 32;
		p->residual = 128;
	} else if (id == KVT_CODEC_ZIPCACHE) {
		p->bits = 2;
		p->high_bits = 4;
		p->salient_ratio = 0.2f;
		p->residual = 0;
	}
	return 0;
}

static int desc_check(const struct kvt_tensor_desc *d)
{
	if (!d || kvt_dtype_size(d->dtype) == 0)
		return -EINVAL;
	if (d->heads == 0 || d->dim == 0 || d->heads > KVT_MAX_KV_HEADS * 4 ||
	    d->dim > KVT_MAX_HEAD_DIM)
		return -EINVAL;
	if ((uint64_t)d->heads * d->tokens * d->dim > (1ull << 31))
		return -EINVAL;
	return 0;
}

int kvt_codec_check(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		    const struct kvt_tensor_desc *d)
{
	int rc = desc_check(d);
	if (rc)
		return rc;
	if (!p || (kind != KVT_KIND_KEY && kind != KVT_KIND_VALUE))
		return -EINVAL;
	const struct kvt_codec_ops *ops = codec_ops(p->id);
	if (!ops)
		return KVT_ECODEC;
	return ops->check ? ops->check(p, kind, d) : 0;
}

int kvt_codec_encoded_size(const struct kvt_codec_params *p,
			   enum kvt_kv_kind kind,
			   const struct kvt_tensor_desc *d, size_t *out)
{
	int rc = kvt_codec_check(p, kind, d);
	if (rc)
		return rc;
	size_t payload = codec_ops(p->id)->payload_size(p, kind, d);
	if (payload > UINT32_MAX)
		return KVT_ETOOBIG;
	*out = KVT_CODEC_HEADER_BYTES + payload;
	return 0;
}

static void header_write(const struct kvt_codec_header *h, uint8_t *o)
{
	kvt_put_u32(o + 0, h->magic);
	o[4] = h->version;
	o[5] = h->codec;
	o[6] = h->kind;
	o[7] = h->dtype;
	o[8] = h->bits;
	o[9] = h->high_bits;
	kvt_put_u16(o + 10, h->group);
	kvt_put_u32(o + 12, h->heads);
	kvt_put_u32(o + 16, h->tokens);
	kvt_put_u32(o + 20, h->dim);
	kvt_put_u32(o + 24, h->residual);
	kvt_put_u32(o + 28, h->n_salient);
	kvt_put_u32(o + 32, h->payload_len);
	kvt_put_u32(o + 36, h->reserved);
}

static void header_parse(const uint8_t *s, struct kvt_codec_header *h)
{
	h->magic = kvt_get_u32(s + 0);
	h->version = s[4];
	h->codec = s[5];
	h->kind = s[6];
	h->dtype = s[7];
	h->bits = s[8];
	h->high_bits = s[9];
	h->group = kvt_get_u16(s + 10);
	h->heads = kvt_get_u32(s + 12);
	h->tokens = kvt_get_u32(s + 16);
	h->dim = kvt_get_u32(s + 20);
	h->residual = kvt_get_u32(s + 24);
	h->n_salient = kvt_get_u32(s + 28);
	h->payload_len = kvt_get_u32(s + 32);
	h->reserved = kvt_get_u32(s + 36);
}

int kvt_codec_encode(const struct kvt_codec_params *p, enum kvt_kv_kind kind,
		     const struct kvt_tensor_desc *d, const void *src,
		     void *dst, size_t cap, size_t *written)
{
	size_t need;
	int rc = kvt_codec_encoded_size(p, kind, d, &need);
	if (rc)
		return rc;
	if (!src || !dst || !written)
		return -EINVAL;
	if (cap < need)
		return -ENOBUFS;
	const struct kvt_codec_ops *ops = codec_ops(p->id);
	struct kvt_codec_header h = {
		.magic = KVT_CODEC_MAGIC, .version = KVT_CODEC_VERSION,
		.codec = (uint8_t)p->id, .kind = (uint8_t)kind,
		.dtype = (uint8_t)d->dtype, .heads = d->heads,
		.tokens = d->tokens, .dim = d->dim,
		.payload_len = (uint32_t)(need - KVT_CODEC_HEADER_BYTES),
	};
	ops->fill_header(p, kind, d, &h);
	header_write(&h, dst);
	rc = ops->encode(p, &h, src, (uint8_t *)dst + KVT_CODEC_HEADER_BYTES);
	if (rc)
		return rc;
	*written = need;
	return 0;
}

int kvt_codec_read_header(const void *src, size_t len,
			  struct kvt_codec_header *out)
{
	struct kvt_codec_header h;
	if (!src || !out)
		return -EINVAL;
	if (len < KVT_CODEC_HEADER_BYTES)
		return KVT_EFORMAT;
	header_parse(src, &h);
	if (h.magic != KVT_CODEC_MAGIC)
		return KVT_EFORMAT;
	if (h.version != KVT_CODEC_VERSION)
		return KVT_EVERSION;
	const struct kvt_codec_ops *ops = codec_ops(h.codec);
	if (!ops)
		return KVT_ECODEC;
	struct kvt_tensor_desc d = {h.heads, h.tokens, h.dim, h.dtype};
	if (desc_check(&d) || h.kind > KVT_KIND_VALUE || h.reserved != 0)
		return KVT_EFORMAT;
	if ((size_t)h.payload_len != len - KVT_CODEC_HEADER_BYTES)
		return KVT_EFORMAT;
	int rc = ops->validate(&h);
	if (rc)
		return rc;
	*out = h;
	return 0;
}

int kvt_codec_decode_f32(const void *src, size_t len, float *dst, size_t cap,
			 struct kvt_tensor_desc *desc)
{
	struct kvt_codec_header h;
	int rc = kvt_codec_read_header(src, len, &h);
	if (rc)
		return rc;
	if (!dst || cap < kvt_header_elems(&h) * sizeof(float))
		return -ENOBUFS;
	rc = codec_ops(h.codec)->decode_f32(
		&h, (const uint8_t *)src + KVT_CODEC_HEADER_BYTES, dst);
	if (rc)
		return rc;
	if (desc)
		*desc = (struct kvt_tensor_desc){h.heads, h.tokens, h.dim,
						 h.dtype};
	return 0;
}

int kvt_codec_decode(const void *src, size_t len, void *dst, size_t cap,
		     struct kvt_tensor_desc *desc)
{
	struct kvt_codec_header h;
	int rc = kvt_codec_read_header(src, len, &h);
	if (rc)
		return rc;
	size_t n = kvt_header_elems(&h);
	if (!dst || cap < n * kvt_dtype_size(h.dtype))
		return -ENOBUFS;
	if (h.dtype == KVT_DTYPE_F32)
		return kvt_codec_decode_f32(src, len, dst, cap, desc);
	const struct kvt_codec_ops *ops = codec_ops(h.codec);
	if (ops->decode_native) {
		rc = ops->decode_native(
			&h, (const uint8_t *)src + KVT_CODEC_HEADER_BYTES, dst);
		if (rc <= 0) {
			if (rc == 0 && desc)
				*desc = (struct kvt_tensor_desc){
					h.heads, h.tokens, h.dim, h.dtype};
			return rc;
		}
	}
	float *tmp = malloc(n ? n * sizeof(float) : 1);
	if (!tmp)
		return -ENOMEM;
	rc = kvt_codec_decode_f32(src, len, tmp, n * sizeof(float), desc);
	if (rc == 0)
		kvt_from_f32(h.dtype, tmp, dst, n);
	free(tmp);
	return rc;
}
