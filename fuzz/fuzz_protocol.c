/*
 * fuzz_protocol.c - libFuzzer target for the kvtierd frame parser.
 *
 * The input is read as a frame (header + payload) and, independently, fed
 * whole to every message decoder. Besides memory safety (ASan/UBSan), it
 * checks that whatever a decoder accepts re-encodes to the very same
 * bytes: the encoding is canonical, so a decoder cannot accept input that
 * the encoder would never produce.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define ROUND_TRIP(type, dec, enc, extra_free)                            \
	do {                                                              \
		type m;                                                   \
		if (dec(p, len, &m) == 0) {                               \
			struct kvt_wbuf w;                                \
			kvt_wbuf_init(&w);                                \
			if (enc(&w, &m) || w.len != len ||                \
			    (len && memcmp(w.data, p, len)))              \
				abort();                                  \
			kvt_wbuf_free(&w);                                \
			extra_free;                                       \
		}                                                         \
	} while (0)

static void decode_all(const uint8_t *p, size_t len)
{
	ROUND_TRIP(struct kvt_msg_hello_req, kvt_dec_hello_req, kvt_enc_hello_req, );
	ROUND_TRIP(struct kvt_msg_hello_rep, kvt_dec_hello_rep, kvt_enc_hello_rep, );
	ROUND_TRIP(struct kvt_msg_name, kvt_dec_name, kvt_enc_name, );
	ROUND_TRIP(struct kvt_msg_create_req, kvt_dec_create_req, kvt_enc_create_req, );
	ROUND_TRIP(struct kvt_msg_handle, kvt_dec_handle, kvt_enc_handle, );
	ROUND_TRIP(struct kvt_msg_cache_rep, kvt_dec_cache_rep, kvt_enc_cache_rep, );
	ROUND_TRIP(struct kvt_msg_list_rep, kvt_dec_list_rep, kvt_enc_list_rep,
		   free(m.infos));
	ROUND_TRIP(struct kvt_msg_append_req, kvt_dec_append_req, kvt_enc_append_req, );
	ROUND_TRIP(struct kvt_msg_read_req, kvt_dec_read_req, kvt_enc_read_req, );
	ROUND_TRIP(struct kvt_msg_loc_rep, kvt_dec_loc_rep, kvt_enc_loc_rep, );
	ROUND_TRIP(struct kvt_msg_stats_rep, kvt_dec_stats_rep, kvt_enc_stats_rep, );
	static struct kvt_msg_locate_rep locate; /* 10 KiB: not on the stack */
	if (kvt_dec_locate_rep(p, len, &locate) == 0) {
		struct kvt_wbuf w;
		kvt_wbuf_init(&w);
		if (kvt_enc_locate_rep(&w, &locate) || w.len != len ||
		    memcmp(w.data, p, len))
			abort();
		kvt_wbuf_free(&w);
	}
	ROUND_TRIP(struct kvt_msg_error, kvt_dec_error, kvt_enc_error, );
	ROUND_TRIP(struct kvt_msg_snap_save_req, kvt_dec_snap_save_req,
		   kvt_enc_snap_save_req, );
	ROUND_TRIP(struct kvt_msg_snap_load_req, kvt_dec_snap_load_req,
		   kvt_enc_snap_load_req, );
	ROUND_TRIP(struct kvt_msg_snap_rep, kvt_dec_snap_rep, kvt_enc_snap_rep, );
	ROUND_TRIP(struct kvt_msg_progress, kvt_dec_progress, kvt_enc_progress, );
	ROUND_TRIP(struct kvt_msg_retrieve_req, kvt_dec_retrieve_req,
		   kvt_enc_retrieve_req, );
	ROUND_TRIP(struct kvt_msg_retrieve_rep, kvt_dec_retrieve_rep,
		   kvt_enc_retrieve_rep, free(m.blocks); free(m.n_valid));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvt_frame_header h;
	int rc = kvt_frame_header_decode(data, size, 1u << 20, &h);
	if (rc == 0) {
		size_t body = size - KVT_PROTO_HEADER_BYTES;
		/* Copy the payload to its own allocation so ASan sees its end. */
		size_t n = h.len < body ? h.len : body;
		uint8_t *payload = malloc(n ? n : 1);
		if (!payload)
			return 0;
		memcpy(payload, data + KVT_PROTO_HEADER_BYTES, n);
		decode_all(payload, n);
		free(payload);
	}
	decode_all(data, size);
	return 0;
}
