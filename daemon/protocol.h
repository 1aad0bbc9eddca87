/*
 * protocol.h - the kvtierd wire protocol (internal to daemon/ and its tests).
 *
 * Pure encoding and decoding: no I/O, no dispatch. Every multi-byte field is
 * little-endian. A frame is a fixed 24-byte header followed by `len` payload
 * bytes:
 *
 *   off size field
 *     0    4 magic    KVT_PROTO_MAGIC ("KVTD")
 *     4    1 version  protocol version of this frame (KVT_PROTO_VERSION)
 *     5    1 op       enum kvt_op
 *     6    2 flags    KVT_PF_* (unknown bits are an error)
 *     8    8 req_id   chosen by the client, echoed in the reply
 *    16    4 len      payload bytes, <= the negotiated max frame
 *    20    4 reserved must be 0
 *
 * A request is answered by exactly one frame with the same req_id: either
 * the same op with KVT_PF_REPLY set, or KVT_OP_ERROR (code + message). A
 * frame with KVT_PF_FD set travels with exactly one file descriptor
 * (SCM_RIGHTS on the frame's first byte).
 *
 * Decoders take a whole payload and succeed only when it is consumed
 * exactly: short, long, out-of-range or inconsistent payloads all give
 * KVT_EPROTO (KVT_ETOOBIG for a length over a bound). Pointers in decoded
 * messages point into the payload buffer and live as long as it does.
 */
#ifndef KVTIER_DAEMON_PROTOCOL_H
#define KVTIER_DAEMON_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"
#include "kvtier/snapshot.h"

#define KVT_PROTO_MAGIC 0x4454564bu /* "KVTD" little-endian */
#define KVT_PROTO_VERSION 1
#define KVT_PROTO_MIN_VERSION 1
#define KVT_PROTO_HEADER_BYTES 24
#define KVT_PROTO_MAX_PAYLOAD (16u << 20) /* hard bound, whatever is negotiated */
#define KVT_PROTO_MAX_MESSAGE 1024        /* bytes of an error message */

enum kvt_op {
	KVT_OP_HELLO = 1,
	KVT_OP_CREATE = 2,
	KVT_OP_OPEN = 3,
	KVT_OP_CLOSE = 4,
	KVT_OP_DROP = 5,
	KVT_OP_LIST = 6,
	KVT_OP_INFO = 7,
	KVT_OP_APPEND = 8,
	KVT_OP_READ = 9,
	KVT_OP_READ_BLOCK = 10,
	KVT_OP_STATS = 11,
	KVT_OP_LOCATE = 12,   /* where a run of blocks lives (no data moves) */
	/* 32..47 retrieval (33..47 reserved: pin, ...), 48..63 snapshots;
	 * decoders reject the reserved ones. */
	KVT_OP_RETRIEVE = 32, /* the blocks queries attend to (retrieval.h) */
	KVT_OP_SNAPSHOT_SAVE = 48, /* the daemon writes a snapshot file */
	KVT_OP_SNAPSHOT_LOAD = 49, /* the daemon reads one into its store */
	KVT_OP_ERROR = 127,
};

enum kvt_proto_flag {
	KVT_PF_REPLY = 1u << 0, /* a reply to the request with the same req_id */
	KVT_PF_FD = 1u << 1,    /* one file descriptor accompanies the frame */
	KVT_PF_PROGRESS = 1u << 2, /* with REPLY: an interim progress report
	                              (kvt_msg_progress); the request's one
	                              final reply still follows */
};
#define KVT_PF_ALL (KVT_PF_REPLY | KVT_PF_FD | KVT_PF_PROGRESS)

struct kvt_frame_header {
	uint8_t version;
	uint8_t op;
	uint16_t flags;
	uint64_t req_id;
	uint32_t len;
};

/* 1 when op is a defined opcode. */
int kvt_op_known(unsigned op);

/* Name of an opcode for logs ("open", ...); "?" when unknown. */
const char *kvt_op_name(unsigned op);

/* Writes the 24 header bytes. */
void kvt_frame_header_encode(uint8_t *buf, const struct kvt_frame_header *h);

/*
 * Decodes a header from len bytes. Errors: KVT_EPROTO (fewer than 24 bytes,
 * bad magic, unknown op or flag, reserved bits set), KVT_EVERSION (version
 * outside [KVT_PROTO_MIN_VERSION, KVT_PROTO_VERSION]), KVT_ETOOBIG (len over
 * max_payload, itself capped at KVT_PROTO_MAX_PAYLOAD). *h is filled even on
 * KVT_ETOOBIG/KVT_EVERSION so the error reply can echo req_id.
 */
int kvt_frame_header_decode(const uint8_t *buf, size_t len,
			    uint32_t max_payload, struct kvt_frame_header *h);

/* ---------------------------------------------------------------- buffers */

/* Growable output buffer; the first error sticks and later puts are no-ops. */
struct kvt_wbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
	int err;
};

void kvt_wbuf_init(struct kvt_wbuf *w);
void kvt_wbuf_free(struct kvt_wbuf *w);
/* Appends n bytes and returns where they go, or NULL after an error. */
uint8_t *kvt_wbuf_grow(struct kvt_wbuf *w, size_t n);

/*
 * Encodes a whole frame (header + payload written by the message encoder
 * into w) in one call: kvt_frame_begin reserves the header, kvt_frame_end
 * fills it with the payload length. kvt_frame_end returns w->err, or
 * KVT_ETOOBIG when the payload exceeds KVT_PROTO_MAX_PAYLOAD.
 */
void kvt_frame_begin(struct kvt_wbuf *w);
int kvt_frame_end(struct kvt_wbuf *w, unsigned op, unsigned flags,
		  uint64_t req_id);

/* ---------------------------------------------------------------- messages */

struct kvt_msg_hello_req {
	uint16_t min_version;
	uint16_t max_version;
};

/* Server limits, sent in the hello reply. */
struct kvt_msg_hello_rep {
	uint16_t version;         /* the version both sides will speak */
	uint32_t max_frame;       /* payload bound for requests */
	uint32_t max_inline;      /* bytes of K+V an append may carry inline */
	uint32_t max_open_caches; /* open cache handles per client */
	uint64_t max_staging;     /* bytes of the client's staging memfd */
};

/* open, drop */
struct kvt_msg_name {
	char name[KVT_NAME_MAX + 1];
};

struct kvt_msg_create_req {
	char name[KVT_NAME_MAX + 1];
	struct kvt_cache_config config; /* config.cold.saliency is always NULL */
};

/* close, info */
struct kvt_msg_handle {
	uint32_t handle;
};

/* create, open and info replies */
struct kvt_msg_cache_rep {
	uint32_t handle;
	struct kvt_cache_info info;
};

/* list reply: decode allocates infos with malloc (NULL when n is 0). */
struct kvt_msg_list_rep {
	uint32_t n;
	struct kvt_cache_info *infos;
};

enum kvt_append_via {
	KVT_APPEND_INLINE = 0, /* K then V follow in the payload */
	KVT_APPEND_FD = 1,     /* K then V at [offset, offset+len) of the
	                          sealed memfd sent with the frame */
};

struct kvt_msg_append_req {
	uint32_t handle;
	uint32_t layer;
	uint32_t n_tokens;
	uint8_t via;        /* enum kvt_append_via */
	uint64_t offset;    /* KVT_APPEND_FD only, else 0 */
	uint64_t len;       /* bytes of K + V */
	const void *data;   /* KVT_APPEND_INLINE: len bytes in the payload */
};

struct kvt_msg_read_req {
	uint32_t handle;
	uint32_t layer;
	uint64_t first;     /* first token (READ) or block index (READ_BLOCK) */
	uint32_t n_tokens;  /* READ only; 0 for READ_BLOCK */
};

enum kvt_region_kind {
	KVT_REGION_ARENA = 1,   /* a host-tier arena of the daemon (read-only) */
	KVT_REGION_STAGING = 2, /* the client's own staging memfd */
};

/*
 * Where the bytes of a read are. region identifies a file descriptor sent
 * earlier (or with this very reply, flag KVT_PF_FD) to this client; region
 * ids are per connection and never reused within it.
 */
struct kvt_msg_loc_rep {
	uint8_t kind;       /* enum kvt_region_kind */
	uint8_t codec;      /* enum kvt_codec_id of the bytes */
	uint32_t region;
	uint64_t offset;
	uint32_t len;
	uint32_t n_tokens;  /* valid tokens (READ_BLOCK) */
	uint64_t checksum;  /* XXH3-64 of the len bytes, to detect a block
	                       replaced while the client copied it */
};

/*
 * LOCATE: the shared locations of blocks [first, first + n) of a layer
 * (request: kvt_msg_read_req with n_tokens = n, 1..KVT_LOCATE_MAX). Each
 * entry is a loc_rep of kind KVT_REGION_ARENA, or kind 0 when that block
 * is not shared (or lives in a second arena new to the client: one reply
 * carries at most one descriptor); the client reads those with READ_BLOCK.
 */
#define KVT_LOCATE_MAX 256

struct kvt_msg_locate_rep {
	uint32_t n;
	struct kvt_msg_loc_rep locs[KVT_LOCATE_MAX];
};

/*
 * RETRIEVE: kvt_retrieve on the daemon's index of an open cache (built, or
 * loaded from the cache's metadata, on first use and kept up to date).
 * The queries (float32 [n_q_heads][n_queries][head_dim]) follow inline.
 */
struct kvt_msg_retrieve_req {
	uint32_t handle;
	uint32_t layer;
	uint8_t mode;           /* enum kvt_retrieval_mode */
	uint32_t n_q_heads;
	uint32_t n_queries;
	uint64_t budget_tokens;
	uint32_t sink_tokens;
	uint32_t recent_tokens;
	uint32_t q_len;         /* bytes of queries, a multiple of 4 */
	const uint8_t *q;       /* in the payload, not aligned */
};

#define KVT_RETRIEVE_MAX_BLOCKS (1u << 20) /* 8 MiB reply at most */

struct kvt_msg_retrieve_rep {
	uint32_t block_tokens;
	uint32_t n_blocks;      /* <= KVT_RETRIEVE_MAX_BLOCKS */
	uint64_t n_tokens;
	uint64_t total_tokens;
	uint32_t *blocks;       /* decode: malloc'd (n_blocks + 1 entries) */
	uint32_t *n_valid;      /* decode: malloc'd */
};

struct kvt_msg_stats_rep {
	struct kvt_stats stats;
};

/*
 * Snapshots: the daemon itself reads or writes path (absolute, on its own
 * file system, with its own permissions; it serves these only to peers
 * with its own uid). With progress set, interim replies flagged
 * KVT_PF_PROGRESS carry kvt_msg_progress before the final reply.
 */
#define KVT_PROTO_MAX_PATH 4095

struct kvt_msg_snap_save_req {
	char name[KVT_NAME_MAX + 1];
	char path[KVT_PROTO_MAX_PATH + 1];
	uint8_t zstd_level; /* 0..22 */
	uint8_t progress;   /* 0 or 1 */
};

struct kvt_msg_snap_load_req {
	char path[KVT_PROTO_MAX_PATH + 1];
	char as_name[KVT_NAME_MAX + 1]; /* "": the name stored in the file */
	uint8_t progress;
};

/* Final reply of both: what was written or loaded. */
struct kvt_msg_snap_rep {
	struct kvt_snapshot_info info;
};

struct kvt_msg_progress {
	uint64_t done, total; /* bytes; done <= total */
};

struct kvt_msg_error {
	int32_t code;                       /* a kvtier code, < 0 */
	char message[KVT_PROTO_MAX_MESSAGE + 1];
};

/* Encoders append the payload to w and return w->err. */
int kvt_enc_hello_req(struct kvt_wbuf *w, const struct kvt_msg_hello_req *m);
int kvt_enc_hello_rep(struct kvt_wbuf *w, const struct kvt_msg_hello_rep *m);
int kvt_enc_name(struct kvt_wbuf *w, const struct kvt_msg_name *m);
int kvt_enc_create_req(struct kvt_wbuf *w, const struct kvt_msg_create_req *m);
int kvt_enc_handle(struct kvt_wbuf *w, const struct kvt_msg_handle *m);
int kvt_enc_cache_rep(struct kvt_wbuf *w, const struct kvt_msg_cache_rep *m);
int kvt_enc_list_rep(struct kvt_wbuf *w, const struct kvt_msg_list_rep *m);
int kvt_enc_append_req(struct kvt_wbuf *w, const struct kvt_msg_append_req *m);
int kvt_enc_read_req(struct kvt_wbuf *w, const struct kvt_msg_read_req *m);
int kvt_enc_loc_rep(struct kvt_wbuf *w, const struct kvt_msg_loc_rep *m);
int kvt_enc_locate_rep(struct kvt_wbuf *w, const struct kvt_msg_locate_rep *m);
int kvt_enc_stats_rep(struct kvt_wbuf *w, const struct kvt_msg_stats_rep *m);
int kvt_enc_retrieve_req(struct kvt_wbuf *w, const struct kvt_msg_retrieve_req *m);
int kvt_enc_retrieve_rep(struct kvt_wbuf *w, const struct kvt_msg_retrieve_rep *m);
int kvt_enc_error(struct kvt_wbuf *w, const struct kvt_msg_error *m);
int kvt_enc_snap_save_req(struct kvt_wbuf *w, const struct kvt_msg_snap_save_req *m);
int kvt_enc_snap_load_req(struct kvt_wbuf *w, const struct kvt_msg_snap_load_req *m);
int kvt_enc_snap_rep(struct kvt_wbuf *w, const struct kvt_msg_snap_rep *m);
int kvt_enc_progress(struct kvt_wbuf *w, const struct kvt_msg_progress *m);

/* Decoders: 0 or KVT_EPROTO / KVT_ETOOBIG / -ENOMEM (list only). */
int kvt_dec_hello_req(const uint8_t *p, size_t len, struct kvt_msg_hello_req *m);
int kvt_dec_hello_rep(const uint8_t *p, size_t len, struct kvt_msg_hello_rep *m);
int kvt_dec_name(const uint8_t *p, size_t len, struct kvt_msg_name *m);
int kvt_dec_create_req(const uint8_t *p, size_t len,
		       struct kvt_msg_create_req *m);
int kvt_dec_handle(const uint8_t *p, size_t len, struct kvt_msg_handle *m);
int kvt_dec_cache_rep(const uint8_t *p, size_t len, struct kvt_msg_cache_rep *m);
int kvt_dec_list_rep(const uint8_t *p, size_t len, struct kvt_msg_list_rep *m);
int kvt_dec_append_req(const uint8_t *p, size_t len,
		       struct kvt_msg_append_req *m);
int kvt_dec_read_req(const uint8_t *p, size_t len, struct kvt_msg_read_req *m);
int kvt_dec_loc_rep(const uint8_t *p, size_t len, struct kvt_msg_loc_rep *m);
int kvt_dec_locate_rep(const uint8_t *p, size_t len,
		       struct kvt_msg_locate_rep *m);
int kvt_dec_stats_rep(const uint8_t *p, size_t len, struct kvt_msg_stats_rep *m);
int kvt_dec_retrieve_req(const uint8_t *p, size_t len,
			 struct kvt_msg_retrieve_req *m);
/* Allocates m->blocks and m->n_valid (free both with free()). */
int kvt_dec_retrieve_rep(const uint8_t *p, size_t len,
			 struct kvt_msg_retrieve_rep *m);
int kvt_dec_error(const uint8_t *p, size_t len, struct kvt_msg_error *m);
int kvt_dec_snap_save_req(const uint8_t *p, size_t len,
			  struct kvt_msg_snap_save_req *m);
int kvt_dec_snap_load_req(const uint8_t *p, size_t len,
			  struct kvt_msg_snap_load_req *m);
int kvt_dec_snap_rep(const uint8_t *p, size_t len, struct kvt_msg_snap_rep *m);
int kvt_dec_progress(const uint8_t *p, size_t len, struct kvt_msg_progress *m);

/* Bytes of K + V for n_tokens tokens of shape (0 when shape is invalid). */
uint64_t kvt_proto_kv_bytes(const struct kvt_shape *shape, uint32_t n_tokens);

#endif /* KVTIER_DAEMON_PROTOCOL_H */
