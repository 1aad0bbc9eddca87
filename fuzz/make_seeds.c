/* make_seeds.c - writes one valid frame per message kind into DIR, the
 * starting corpus of fuzz_protocol. Usage: make_seeds DIR */
#include <stdio.h>
#include <string.h>

#include "protocol.h"

static void save(const char *dir, const char *name, struct kvt_wbuf *w,
		 unsigned op, unsigned flags)
{
	char path[4096];
	kvt_frame_end(w, op, flags, 1);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(w->data, 1, w->len, f);
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_seeds DIR\n");
		return 2;
	}
	const char *d = argv[1];
	struct kvt_wbuf w;
	kvt_wbuf_init(&w);
	struct kvt_cache_info info;
	memset(&info, 0, sizeof info);
	strcpy(info.name, "doc");
	info.config.shape = (struct kvt_shape){2, 2, 8, 16, KVT_DTYPE_F16};
	info.config.cold.id = KVT_CODEC_KIVI;

	kvt_frame_begin(&w);
	kvt_enc_hello_req(&w, &(struct kvt_msg_hello_req){1, 1});
	save(d, "hello_req", &w, KVT_OP_HELLO, 0);
	kvt_frame_begin(&w);
	kvt_enc_hello_rep(&w, &(struct kvt_msg_hello_rep){1, 1 << 20, 4096, 8, 1 << 20});
	save(d, "hello_rep", &w, KVT_OP_HELLO, KVT_PF_REPLY);
	struct kvt_msg_create_req cr = {.config = info.config};
	strcpy(cr.name, "doc");
	kvt_frame_begin(&w);
	kvt_enc_create_req(&w, &cr);
	save(d, "create", &w, KVT_OP_CREATE, 0);
	kvt_frame_begin(&w);
	kvt_enc_name(&w, &(struct kvt_msg_name){"doc"});
	save(d, "open", &w, KVT_OP_OPEN, 0);
	kvt_frame_begin(&w);
	kvt_enc_handle(&w, &(struct kvt_msg_handle){1});
	save(d, "close", &w, KVT_OP_CLOSE, 0);
	kvt_frame_begin(&w);
	kvt_enc_cache_rep(&w, &(struct kvt_msg_cache_rep){1, info});
	save(d, "cache_rep", &w, KVT_OP_OPEN, KVT_PF_REPLY);
	kvt_frame_begin(&w);
	kvt_enc_list_rep(&w, &(struct kvt_msg_list_rep){1, &info});
	save(d, "list_rep", &w, KVT_OP_LIST, KVT_PF_REPLY);
	uint8_t kv[32] = {1, 2, 3};
	kvt_frame_begin(&w);
	kvt_enc_append_req(&w, &(struct kvt_msg_append_req){1, 0, 1, KVT_APPEND_INLINE, 0, 32, kv});
	save(d, "append_inline", &w, KVT_OP_APPEND, 0);
	kvt_frame_begin(&w);
	kvt_enc_append_req(&w, &(struct kvt_msg_append_req){1, 0, 1, KVT_APPEND_FD, 0, 32, NULL});
	save(d, "append_fd", &w, KVT_OP_APPEND, KVT_PF_FD);
	kvt_frame_begin(&w);
	kvt_enc_read_req(&w, &(struct kvt_msg_read_req){1, 0, 0, 16});
	save(d, "read", &w, KVT_OP_READ, 0);
	kvt_frame_begin(&w);
	kvt_enc_loc_rep(&w, &(struct kvt_msg_loc_rep){KVT_REGION_ARENA, 0, 1, 0, 64, 16, 7});
	save(d, "loc_rep", &w, KVT_OP_READ_BLOCK, KVT_PF_REPLY | KVT_PF_FD);
	struct kvt_msg_stats_rep st;
	memset(&st, 0, sizeof st);
	kvt_frame_begin(&w);
	kvt_enc_stats_rep(&w, &st);
	save(d, "stats_rep", &w, KVT_OP_STATS, KVT_PF_REPLY);
	float q[2 * 8] = {1, -1, 0.5f};
	kvt_frame_begin(&w);
	kvt_enc_retrieve_req(&w, &(struct kvt_msg_retrieve_req){
		1, 0, 0, 2, 1, 64, 16, 32, sizeof q, (const uint8_t *)q});
	save(d, "retrieve", &w, KVT_OP_RETRIEVE, 0);
	uint32_t blocks[2] = {0, 3}, valid[2] = {16, 5};
	kvt_frame_begin(&w);
	kvt_enc_retrieve_rep(&w, &(struct kvt_msg_retrieve_rep){16, 2, 21, 53, blocks, valid});
	save(d, "retrieve_rep", &w, KVT_OP_RETRIEVE, KVT_PF_REPLY);
	kvt_frame_begin(&w);
	kvt_enc_error(&w, &(struct kvt_msg_error){KVT_ENOTFOUND, "not found"});
	save(d, "error", &w, KVT_OP_ERROR, KVT_PF_REPLY);
	kvt_wbuf_free(&w);
	return 0;
}
