/* test_protocol.c - frame and message encode/decode round trips, and the
 * rejection of every kind of malformed frame. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "protocol.h"

static struct kvt_wbuf w;

static void setup(void)
{
	kvt_wbuf_init(&w);
}

static void teardown(void)
{
	kvt_wbuf_free(&w);
}

TestSuite(protocol, .init = setup, .fini = teardown);

static struct kvt_cache_info sample_info(const char *name)
{
	struct kvt_cache_info i;
	memset(&i, 0, sizeof i);
	strcpy(i.name, name);
	i.id = 0x1122334455667788ull;
	i.config.shape = (struct kvt_shape){32, 8, 128, 16, KVT_DTYPE_BF16};
	i.config.cold = (struct kvt_codec_params){.id = KVT_CODEC_ZIPCACHE,
		.bits = 2, .high_bits = 8, .group = 32, .residual = 0,
		.salient_ratio = 0.25f};
	i.config.recent_tokens = 128;
	i.n_tokens = 4096;
	i.n_blocks = 8192;
	i.raw_bytes = 1ull << 33;
	i.stored_bytes = 1ull << 31;
	return i;
}

static void assert_info_eq(const struct kvt_cache_info *a,
			   const struct kvt_cache_info *b)
{
	cr_assert_str_eq(a->name, b->name);
	cr_assert_eq(a->id, b->id);
	cr_assert_eq(memcmp(&a->config.shape, &b->config.shape, sizeof a->config.shape), 0);
	cr_assert_eq(a->config.cold.id, b->config.cold.id);
	cr_assert_eq(a->config.cold.bits, b->config.cold.bits);
	cr_assert_eq(a->config.cold.high_bits, b->config.cold.high_bits);
	cr_assert_eq(a->config.cold.group, b->config.cold.group);
	cr_assert_eq(a->config.cold.salient_ratio, b->config.cold.salient_ratio);
	cr_assert_eq(a->config.recent_tokens, b->config.recent_tokens);
	cr_assert_eq(a->n_tokens, b->n_tokens);
	cr_assert_eq(a->n_blocks, b->n_blocks);
	cr_assert_eq(a->raw_bytes, b->raw_bytes);
	cr_assert_eq(a->stored_bytes, b->stored_bytes);
}

Test(protocol, header_round_trip)
{
	struct kvt_frame_header h = {KVT_PROTO_VERSION, KVT_OP_READ_BLOCK,
				     KVT_PF_REPLY | KVT_PF_FD, 0xdeadbeefcafe1234ull, 777};
	uint8_t buf[KVT_PROTO_HEADER_BYTES];
	kvt_frame_header_encode(buf, &h);
	cr_assert_eq(kvt_get_u32(buf), KVT_PROTO_MAGIC);
	struct kvt_frame_header d;
	cr_assert_eq(kvt_frame_header_decode(buf, sizeof buf, 1000, &d), 0);
	cr_assert_eq(d.op, h.op);
	cr_assert_eq(d.flags, h.flags);
	cr_assert_eq(d.req_id, h.req_id);
	cr_assert_eq(d.len, h.len);
}

static int decode_mutated(size_t at, uint8_t value, uint32_t max)
{
	struct kvt_frame_header h = {KVT_PROTO_VERSION, KVT_OP_OPEN, 0, 42, 10};
	uint8_t buf[KVT_PROTO_HEADER_BYTES];
	kvt_frame_header_encode(buf, &h);
	buf[at] = value;
	struct kvt_frame_header d;
	return kvt_frame_header_decode(buf, sizeof buf, max, &d);
}

Test(protocol, every_bad_header_is_rejected)
{
	uint8_t buf[KVT_PROTO_HEADER_BYTES] = {0};
	struct kvt_frame_header d;
	for (size_t n = 0; n < sizeof buf; n++)
		cr_assert_eq(kvt_frame_header_decode(buf, n, 100, &d), KVT_EPROTO,
			     "truncated to %zu", n);
	cr_assert_eq(decode_mutated(0, 'X', 100), KVT_EPROTO);      /* magic */
	cr_assert_eq(decode_mutated(4, 0, 100), KVT_EVERSION);      /* version */
	cr_assert_eq(decode_mutated(4, 99, 100), KVT_EVERSION);
	cr_assert_eq(decode_mutated(5, 0, 100), KVT_EPROTO);        /* op */
	cr_assert_eq(decode_mutated(5, 40, 100), KVT_EPROTO);       /* reserved op */
	cr_assert_eq(decode_mutated(6, 0x80, 100), KVT_EPROTO);     /* flag */
	cr_assert_eq(decode_mutated(7, 0x01, 100), KVT_EPROTO);
	cr_assert_eq(decode_mutated(21, 1, 100), KVT_EPROTO);       /* reserved */
	cr_assert_eq(decode_mutated(0, 'K', 9), KVT_ETOOBIG);       /* len 10 > 9 */
	cr_assert_eq(decode_mutated(19, 0xff, UINT32_MAX), KVT_ETOOBIG); /* > 16 MiB */
	cr_assert_eq(decode_mutated(0, 'K', 10), 0);
}

Test(protocol, frame_begin_end_fills_length)
{
	struct kvt_msg_handle m = {99};
	kvt_frame_begin(&w);
	cr_assert_eq(kvt_enc_handle(&w, &m), 0);
	cr_assert_eq(kvt_frame_end(&w, KVT_OP_CLOSE, 0, 5), 0);
	struct kvt_frame_header d;
	cr_assert_eq(kvt_frame_header_decode(w.data, w.len, 1 << 20, &d), 0);
	cr_assert_eq(d.len, 4);
	cr_assert_eq(d.req_id, 5);
	struct kvt_msg_handle back;
	cr_assert_eq(kvt_dec_handle(w.data + KVT_PROTO_HEADER_BYTES, d.len, &back), 0);
	cr_assert_eq(back.handle, 99);
}

Test(protocol, hello_round_trip_and_limits)
{
	struct kvt_msg_hello_req q = {1, 3}, q2;
	kvt_enc_hello_req(&w, &q);
	cr_assert_eq(kvt_dec_hello_req(w.data, w.len, &q2), 0);
	cr_assert_eq(q2.min_version, 1);
	cr_assert_eq(q2.max_version, 3);
	q = (struct kvt_msg_hello_req){3, 1};
	w.len = 0;
	kvt_enc_hello_req(&w, &q);
	cr_assert_eq(kvt_dec_hello_req(w.data, w.len, &q2), KVT_EPROTO);

	struct kvt_msg_hello_rep r = {1, 1 << 20, 4096, 8, 1ull << 26}, r2;
	w.len = 0;
	kvt_enc_hello_rep(&w, &r);
	cr_assert_eq(kvt_dec_hello_rep(w.data, w.len, &r2), 0);
	cr_assert_eq(r2.version, 1);
	cr_assert_eq(r2.max_frame, 1 << 20);
	cr_assert_eq(r2.max_inline, 4096);
	cr_assert_eq(r2.max_open_caches, 8);
	cr_assert_eq(r2.max_staging, 1ull << 26);
	r.max_inline = r.max_frame + 1;
	w.len = 0;
	kvt_enc_hello_rep(&w, &r);
	cr_assert_eq(kvt_dec_hello_rep(w.data, w.len, &r2), KVT_EPROTO);
}

Test(protocol, create_round_trip)
{
	struct kvt_msg_create_req m = {0}, d;
	strcpy(m.name, "doc/with spaces");
	m.config = sample_info("x").config;
	cr_assert_eq(kvt_enc_create_req(&w, &m), 0);
	cr_assert_eq(kvt_dec_create_req(w.data, w.len, &d), 0);
	cr_assert_str_eq(d.name, m.name);
	cr_assert_eq(memcmp(&d.config.shape, &m.config.shape, sizeof m.config.shape), 0);
	cr_assert_eq(d.config.cold.salient_ratio, 0.25f);
	cr_assert_null(d.config.cold.saliency);
}

Test(protocol, names_are_bounded)
{
	struct kvt_msg_name m, d;
	memset(m.name, 'a', KVT_NAME_MAX);
	m.name[KVT_NAME_MAX] = 0;
	cr_assert_eq(kvt_enc_name(&w, &m), 0);
	cr_assert_eq(kvt_dec_name(w.data, w.len, &d), 0);
	cr_assert_eq(strlen(d.name), KVT_NAME_MAX);

	uint8_t buf[300] = {0};
	cr_assert_eq(kvt_dec_name(buf, 2, &d), KVT_EPROTO); /* empty name */
	kvt_put_u16(buf, 256);
	memset(buf + 2, 'a', 256);
	cr_assert_eq(kvt_dec_name(buf, 258, &d), KVT_ETOOBIG);
	kvt_put_u16(buf, 3);
	memcpy(buf + 2, "a\0b", 3);
	cr_assert_eq(kvt_dec_name(buf, 5, &d), KVT_EPROTO); /* NUL inside */
	kvt_put_u16(buf, 10);
	cr_assert_eq(kvt_dec_name(buf, 5, &d), KVT_EPROTO); /* past the end */
}

Test(protocol, cache_and_list_round_trip)
{
	struct kvt_msg_cache_rep c = {7, sample_info("alpha")}, cd;
	kvt_enc_cache_rep(&w, &c);
	cr_assert_eq(kvt_dec_cache_rep(w.data, w.len, &cd), 0);
	cr_assert_eq(cd.handle, 7);
	assert_info_eq(&cd.info, &c.info);

	struct kvt_cache_info infos[3] = {sample_info("a"), sample_info("bb"),
					  sample_info("ccc")};
	struct kvt_msg_list_rep l = {3, infos}, ld;
	w.len = 0;
	kvt_enc_list_rep(&w, &l);
	cr_assert_eq(kvt_dec_list_rep(w.data, w.len, &ld), 0);
	cr_assert_eq(ld.n, 3);
	for (int i = 0; i < 3; i++)
		assert_info_eq(&ld.infos[i], &infos[i]);
	free(ld.infos);

	struct kvt_msg_list_rep empty = {0, NULL};
	w.len = 0;
	kvt_enc_list_rep(&w, &empty);
	cr_assert_eq(kvt_dec_list_rep(w.data, w.len, &ld), 0);
	cr_assert_eq(ld.n, 0);
	cr_assert_null(ld.infos);
}

Test(protocol, list_count_cannot_force_a_huge_allocation)
{
	uint8_t buf[8];
	kvt_put_u32(buf, 0xffffffffu);
	kvt_put_u32(buf + 4, 0);
	struct kvt_msg_list_rep l;
	cr_assert_eq(kvt_dec_list_rep(buf, sizeof buf, &l), KVT_EPROTO);
}

Test(protocol, bad_enums_in_config_are_rejected)
{
	struct kvt_msg_create_req m = {0}, d;
	strcpy(m.name, "n");
	m.config = sample_info("x").config;
	kvt_enc_create_req(&w, &m);
	size_t dtype_at = 2 + 1 + 16;
	w.data[dtype_at] = 9;
	cr_assert_eq(kvt_dec_create_req(w.data, w.len, &d), KVT_EPROTO);
	w.data[dtype_at] = KVT_DTYPE_F16;
	w.data[dtype_at + 4] = 7; /* codec id */
	cr_assert_eq(kvt_dec_create_req(w.data, w.len, &d), KVT_EPROTO);
}

Test(protocol, append_inline_and_fd)
{
	uint8_t kv[64];
	for (int i = 0; i < 64; i++)
		kv[i] = (uint8_t)i;
	struct kvt_msg_append_req m = {3, 1, 2, KVT_APPEND_INLINE, 0, 64, kv}, d;
	kvt_enc_append_req(&w, &m);
	cr_assert_eq(kvt_dec_append_req(w.data, w.len, &d), 0);
	cr_assert_eq(d.len, 64);
	cr_assert_eq(memcmp(d.data, kv, 64), 0);
	/* Inline length that disagrees with the payload. */
	cr_assert_eq(kvt_dec_append_req(w.data, w.len - 1, &d), KVT_EPROTO);

	struct kvt_msg_append_req f = {3, 1, 2, KVT_APPEND_FD, 4096, 1 << 20, NULL};
	w.len = 0;
	kvt_enc_append_req(&w, &f);
	cr_assert_eq(kvt_dec_append_req(w.data, w.len, &d), 0);
	cr_assert_eq(d.offset, 4096);
	cr_assert_null(d.data);
	/* Trailing bytes after an fd append. */
	kvt_wbuf_grow(&w, 1)[0] = 0;
	cr_assert_eq(kvt_dec_append_req(w.data, w.len, &d), KVT_EPROTO);

	f.offset = UINT64_MAX - 10; /* offset + len overflows */
	w.len = 0;
	kvt_enc_append_req(&w, &f);
	cr_assert_eq(kvt_dec_append_req(w.data, w.len, &d), KVT_EPROTO);
	f.offset = 0;
	f.via = 5;
	w.len = 0;
	kvt_enc_append_req(&w, &f);
	cr_assert_eq(kvt_dec_append_req(w.data, w.len, &d), KVT_EPROTO);
}

Test(protocol, read_and_loc_round_trip)
{
	struct kvt_msg_read_req r = {1, 2, 1ull << 40, 16}, rd;
	kvt_enc_read_req(&w, &r);
	cr_assert_eq(kvt_dec_read_req(w.data, w.len, &rd), 0);
	cr_assert_eq(rd.handle, 1);
	cr_assert_eq(rd.layer, 2);
	cr_assert_eq(rd.first, 1ull << 40);
	cr_assert_eq(rd.n_tokens, 16);

	struct kvt_msg_loc_rep l = {KVT_REGION_ARENA, KVT_CODEC_RAW, 3, 65536,
				    32768, 16, 0x0123456789abcdefull}, ld;
	w.len = 0;
	kvt_enc_loc_rep(&w, &l);
	cr_assert_eq(kvt_dec_loc_rep(w.data, w.len, &ld), 0);
	cr_assert(ld.kind == l.kind && ld.codec == l.codec && ld.region == 3);
	cr_assert(ld.offset == 65536 && ld.len == 32768 && ld.n_tokens == 16);
	cr_assert_eq(ld.checksum, l.checksum);
	w.data[0] = 9; /* unknown region kind */
	cr_assert_eq(kvt_dec_loc_rep(w.data, w.len, &ld), KVT_EPROTO);
}

Test(protocol, stats_round_trip)
{
	struct kvt_msg_stats_rep s, d;
	memset(&s, 0, sizeof s);
	s.stats.tier[KVT_TIER_HOST] = (struct kvt_tier_usage){1, 1 << 30, 12345, 7};
	s.stats.n_caches = 3;
	s.stats.compression_ratio = 3.75;
	s.stats.promotions = 11;
	kvt_enc_stats_rep(&w, &s);
	cr_assert_eq(kvt_dec_stats_rep(w.data, w.len, &d), 0);
	cr_assert_eq(memcmp(&s.stats, &d.stats, sizeof s.stats), 0);
	w.data[0] = 2; /* present must be 0 or 1 */
	cr_assert_eq(kvt_dec_stats_rep(w.data, w.len, &d), KVT_EPROTO);
}

Test(protocol, error_round_trip_and_bounds)
{
	struct kvt_msg_error e = {KVT_ENOTFOUND, "no such cache"}, d;
	kvt_enc_error(&w, &e);
	cr_assert_eq(kvt_dec_error(w.data, w.len, &d), 0);
	cr_assert_eq(d.code, KVT_ENOTFOUND);
	cr_assert_str_eq(d.message, "no such cache");
	kvt_put_u32(w.data, 0); /* an error must carry a negative code */
	cr_assert_eq(kvt_dec_error(w.data, w.len, &d), KVT_EPROTO);
}

/* Every strict prefix of every valid payload is rejected, never read past. */
Test(protocol, every_truncation_is_rejected)
{
	struct kvt_cache_info info = sample_info("truncate-me");
	struct kvt_msg_cache_rep c = {1, info};
	kvt_enc_cache_rep(&w, &c);
	for (size_t n = 0; n < w.len; n++) {
		uint8_t *copy = malloc(n ? n : 1); /* exact size for ASan/valgrind */
		memcpy(copy, w.data, n);
		struct kvt_msg_cache_rep d;
		cr_assert_neq(kvt_dec_cache_rep(copy, n, &d), 0, "prefix %zu", n);
		free(copy);
	}
	struct kvt_msg_stats_rep s = {0}, sd;
	w.len = 0;
	kvt_enc_stats_rep(&w, &s);
	for (size_t n = 0; n < w.len; n++)
		cr_assert_eq(kvt_dec_stats_rep(w.data, n, &sd), KVT_EPROTO);
	struct kvt_msg_read_req r = {1, 1, 1, 1}, rd;
	w.len = 0;
	kvt_enc_read_req(&w, &r);
	for (size_t n = 0; n < w.len; n++)
		cr_assert_eq(kvt_dec_read_req(w.data, n, &rd), KVT_EPROTO);
}

Test(protocol, op_names)
{
	cr_assert_str_eq(kvt_op_name(KVT_OP_APPEND), "append");
	cr_assert_str_eq(kvt_op_name(200), "?");
	cr_assert(kvt_op_known(KVT_OP_ERROR));
	cr_assert(!kvt_op_known(0));
}

Test(protocol, locate_round_trip_and_bounds)
{
	static struct kvt_msg_locate_rep m, d;
	m.n = 3;
	m.locs[0] = (struct kvt_msg_loc_rep){KVT_REGION_ARENA, 0, 1, 4096, 8192, 16, 99};
	memset(&m.locs[1], 0, sizeof m.locs[1]); /* not shared */
	m.locs[2] = (struct kvt_msg_loc_rep){KVT_REGION_ARENA, 0, 2, 0, 8192, 16, 5};
	cr_assert_eq(kvt_enc_locate_rep(&w, &m), 0);
	cr_assert_eq(kvt_dec_locate_rep(w.data, w.len, &d), 0);
	cr_assert_eq(d.n, 3);
	cr_assert_eq(d.locs[0].offset, 4096);
	cr_assert_eq(d.locs[1].kind, 0);
	cr_assert_eq(d.locs[2].region, 2);
	cr_assert_eq(d.locs[2].checksum, 5);
	/* A single read's location may not be "not shared". */
	struct kvt_msg_loc_rep l;
	cr_assert_eq(kvt_dec_loc_rep(w.data + 4 + 32, 32, &l), KVT_EPROTO);
	kvt_put_u32(w.data, KVT_LOCATE_MAX + 1);
	cr_assert_eq(kvt_dec_locate_rep(w.data, w.len, &d), KVT_ETOOBIG);
	kvt_put_u32(w.data, 4); /* more entries than the payload holds */
	cr_assert_eq(kvt_dec_locate_rep(w.data, w.len, &d), KVT_EPROTO);
	m.n = KVT_LOCATE_MAX + 1;
	w.len = 0;
	cr_assert_eq(kvt_enc_locate_rep(&w, &m), KVT_ETOOBIG);
}

Test(protocol, snapshot_messages_round_trip_and_bounds)
{
	struct kvt_msg_snap_save_req s = {.zstd_level = 3, .progress = 1}, sd;
	strcpy(s.name, "doc");
	strcpy(s.path, "/var/tmp/doc.kvs");
	kvt_enc_snap_save_req(&w, &s);
	cr_assert_eq(kvt_dec_snap_save_req(w.data, w.len, &sd), 0);
	cr_assert_str_eq(sd.name, "doc");
	cr_assert_str_eq(sd.path, "/var/tmp/doc.kvs");
	cr_assert_eq(sd.zstd_level, 3);
	cr_assert_eq(sd.progress, 1);
	for (size_t n = 0; n < w.len; n++)
		cr_assert_neq(kvt_dec_snap_save_req(w.data, n, &sd), 0, "prefix %zu", n);
	w.data[w.len - 2] = 23; /* zstd level out of range */
	cr_assert_eq(kvt_dec_snap_save_req(w.data, w.len, &sd), KVT_EPROTO);

	struct kvt_msg_snap_load_req l = {.progress = 0}, ld;
	strcpy(l.path, "/x.kvs"); /* as_name empty: the file's name */
	w.len = 0;
	kvt_enc_snap_load_req(&w, &l);
	cr_assert_eq(kvt_dec_snap_load_req(w.data, w.len, &ld), 0);
	cr_assert_str_eq(ld.path, "/x.kvs");
	cr_assert_str_eq(ld.as_name, "");
	for (size_t n = 0; n < w.len; n++)
		cr_assert_neq(kvt_dec_snap_load_req(w.data, n, &ld), 0, "prefix %zu", n);

	struct kvt_msg_snap_rep r = {{.name = "doc", .version = 1, .n_tokens = 7,
				      .n_blocks = 2, .n_sections = 4, .payload_bytes = 9,
				      .n_meta = 1, .meta_bytes = 3, .file_bytes = 500}}, rd;
	r.info.config = sample_info("x").config;
	w.len = 0;
	kvt_enc_snap_rep(&w, &r);
	cr_assert_eq(kvt_dec_snap_rep(w.data, w.len, &rd), 0);
	cr_assert_eq(memcmp(&rd.info, &r.info, sizeof r.info), 0);
	for (size_t n = 0; n < w.len; n++)
		cr_assert_neq(kvt_dec_snap_rep(w.data, n, &rd), 0, "prefix %zu", n);

	struct kvt_msg_progress p = {5, 10}, pd;
	w.len = 0;
	kvt_enc_progress(&w, &p);
	cr_assert_eq(kvt_dec_progress(w.data, w.len, &pd), 0);
	cr_assert_eq(pd.done, 5);
	p.done = 11; /* more done than total */
	w.len = 0;
	kvt_enc_progress(&w, &p);
	cr_assert_eq(kvt_dec_progress(w.data, w.len, &pd), KVT_EPROTO);
	cr_assert_str_eq(kvt_op_name(KVT_OP_SNAPSHOT_SAVE), "snapshot_save");
}
