/*
 * session.c - one client connection of kvtierd: reads frames, dispatches
 * them through a command table, replies. Decoding lives in protocol.c; this
 * file only maps messages onto the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "locate.h"
#include "retrieve.h"
#include "server_internal.h"
#include "wire.h"

struct arena_ref {
	dev_t dev;
	ino_t ino;
	uint32_t region;
};

struct open_cache {
	struct kvt_cache *cache;
	struct kvt_shape shape;
	struct kvt_rindex *index; /* made by the first RETRIEVE, or NULL */
};

struct kvt_session_state {
	struct open_cache *caches; /* max_open_caches slots; handle = index + 1 */
	struct arena_ref *arenas;  /* host arenas already sent to this client */
	size_t n_arenas;
	uint32_t next_region;
	int staging_fd;            /* -1 until the first staged read */
	uint8_t *staging;
	uint32_t staging_region;
	struct kvt_wbuf in;
	struct kvt_wbuf out;
	int fatal;                 /* close the connection after the reply */
	char why[128];             /* detail for the error reply, or "" */
};

struct request {
	const struct kvt_frame_header *h;
	const uint8_t *p;
	size_t len;
	int fd;       /* descriptor sent with the request, or -1 (not ours) */
	int reply_fd; /* descriptor to send with the reply, or -1 (we close) */
};

typedef int (*handler_fn)(struct kvt_session *s, struct request *r);

/* A malformed payload: error reply, then the connection closes. */
static int malformed(struct kvt_session *s, int rc)
{
	if (rc == KVT_EPROTO || rc == KVT_ETOOBIG)
		s->st->fatal = 1;
	return rc;
}

#define DECODE(s, call)                                   \
	do {                                              \
		int rc_ = (call);                         \
		if (rc_)                                  \
			return malformed((s), rc_);       \
	} while (0)

static int explain(struct kvt_session *s, int rc, const char *why)
{
	snprintf(s->st->why, sizeof s->st->why, "%s", why);
	return rc;
}

static int cache_of(struct kvt_session *s, uint32_t handle,
		    struct open_cache **out)
{
	uint32_t max = s->srv->cfg.max_open_caches;
	if (handle == 0 || handle > max || !s->st->caches[handle - 1].cache)
		return explain(s, -EBADF, "no such cache handle");
	*out = &s->st->caches[handle - 1];
	return 0;
}

static int encode_info(struct kvt_session *s, uint32_t handle,
		       struct kvt_cache *cache)
{
	struct kvt_msg_cache_rep rep = {.handle = handle};
	int rc = kvt_cache_get_info(cache, &rep.info);
	return rc ? rc : kvt_enc_cache_rep(&s->st->out, &rep);
}

/* Keeps an opened cache in a free slot and replies with its info. */
static int adopt(struct kvt_session *s, struct kvt_cache *cache)
{
	uint32_t max = s->srv->cfg.max_open_caches;
	for (uint32_t i = 0; i < max; i++) {
		struct open_cache *oc = &s->st->caches[i];
		if (oc->cache)
			continue;
		struct kvt_cache_info info;
		int rc = kvt_cache_get_info(cache, &info);
		if (!rc)
			rc = encode_info(s, i + 1, cache);
		if (rc) {
			kvt_cache_close(cache);
			return rc;
		}
		oc->cache = cache;
		oc->shape = info.config.shape;
		return 0;
	}
	kvt_cache_close(cache);
	return explain(s, -EMFILE, "too many open caches on this connection");
}

static int has_free_slot(struct kvt_session *s)
{
	for (uint32_t i = 0; i < s->srv->cfg.max_open_caches; i++)
		if (!s->st->caches[i].cache)
			return 1;
	return 0;
}

/* ---------------------------------------------------------------- handlers */

static int do_hello(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_hello_req m;
	DECODE(s, kvt_dec_hello_req(r->p, r->len, &m));
	if (m.min_version > KVT_PROTO_VERSION ||
	    m.max_version < KVT_PROTO_MIN_VERSION)
		return explain(s, KVT_EVERSION, "no common protocol version");
	const struct kvt_server_config *c = &s->srv->cfg;
	struct kvt_msg_hello_rep rep = {
		.version = m.max_version < KVT_PROTO_VERSION ? m.max_version
							     : KVT_PROTO_VERSION,
		.max_frame = c->max_frame,
		.max_inline = c->max_inline,
		.max_open_caches = c->max_open_caches,
		.max_staging = c->max_inflight,
	};
	return kvt_enc_hello_rep(&s->st->out, &rep);
}

static int do_create(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_create_req m;
	DECODE(s, kvt_dec_create_req(r->p, r->len, &m));
	if (!has_free_slot(s))
		return explain(s, -EMFILE, "too many open caches");
	struct kvt_cache *cache;
	int rc = kvt_cache_create(s->srv->store, m.name, &m.config, &cache);
	return rc ? rc : adopt(s, cache);
}

static int do_open(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_name m;
	DECODE(s, kvt_dec_name(r->p, r->len, &m));
	if (!has_free_slot(s))
		return explain(s, -EMFILE, "too many open caches");
	struct kvt_cache *cache;
	int rc = kvt_cache_open(s->srv->store, m.name, &cache);
	return rc ? rc : adopt(s, cache);
}

static int do_close(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_handle m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_handle(r->p, r->len, &m));
	int rc = cache_of(s, m.handle, &oc);
	if (rc)
		return rc;
	kvt_daemon_retrieve_free(oc->index);
	kvt_cache_close(oc->cache);
	*oc = (struct open_cache){0};
	return 0;
}

static int do_drop(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_name m;
	DECODE(s, kvt_dec_name(r->p, r->len, &m));
	return kvt_cache_drop(s->srv->store, m.name);
}

static int do_list(struct kvt_session *s, struct request *r)
{
	DECODE(s, r->len ? KVT_EPROTO : 0);
	struct kvt_msg_list_rep rep = {0};
	size_t n = 0;
	int rc = kvt_store_list(s->srv->store, &rep.infos, &n);
	if (rc)
		return rc;
	rep.n = (uint32_t)n;
	rc = n > UINT32_MAX ? KVT_ETOOBIG : kvt_enc_list_rep(&s->st->out, &rep);
	free(rep.infos);
	return rc;
}

static int do_info(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_handle m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_handle(r->p, r->len, &m));
	int rc = cache_of(s, m.handle, &oc);
	return rc ? rc : encode_info(s, m.handle, oc->cache);
}

static int do_stats(struct kvt_session *s, struct request *r)
{
	DECODE(s, r->len ? KVT_EPROTO : 0);
	struct kvt_msg_stats_rep rep;
	int rc = kvt_store_stats(s->srv->store, &rep.stats);
	return rc ? rc : kvt_enc_stats_rep(&s->st->out, &rep);
}

/* Maps [offset, offset + len) of a client memfd read-only. The memfd must
 * be sealed against shrinking so the client cannot make us fault. */
static int map_client_fd(struct kvt_session *s, int fd, uint64_t offset,
			 uint64_t len, void **base, size_t *map_len,
			 const uint8_t **data)
{
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK))
		return explain(s, -EPERM, "append memfd not sealed (F_SEAL_SHRINK)");
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	if ((uint64_t)st.st_size < offset + len)
		return explain(s, -EINVAL, "append range past the memfd's end");
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t start = offset / page * page;
	*map_len = (size_t)(offset + len - start);
	*base = mmap(NULL, *map_len, PROT_READ, MAP_SHARED, fd, (off_t)start);
	if (*base == MAP_FAILED)
		return -errno;
	*data = (const uint8_t *)*base + (offset - start);
	return 0;
}

static int do_append(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_append_req m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_append_req(r->p, r->len, &m));
	if ((m.via == KVT_APPEND_FD) != (r->fd >= 0))
		return malformed(s, KVT_EPROTO);
	int rc = cache_of(s, m.handle, &oc);
	if (rc)
		return rc;
	if (m.len != kvt_proto_kv_bytes(&oc->shape, m.n_tokens))
		return explain(s, KVT_ESHAPE, "K+V bytes do not match n_tokens");
	uint64_t bound = m.via == KVT_APPEND_INLINE ? s->srv->cfg.max_inline
						    : s->srv->cfg.max_inflight;
	if (m.len > bound)
		return explain(s, KVT_ETOOBIG, "append larger than the server's bound");
	if (m.via == KVT_APPEND_INLINE) {
		const uint8_t *k = m.data;
		return kvt_cache_append(oc->cache, m.layer, m.n_tokens, k,
					k + m.len / 2);
	}
	void *base = NULL;
	size_t map_len = 0;
	const uint8_t *k = NULL;
	rc = map_client_fd(s, r->fd, m.offset, m.len, &base, &map_len, &k);
	if (rc)
		return rc;
	rc = kvt_cache_append(oc->cache, m.layer, m.n_tokens, k, k + m.len / 2);
	munmap(base, map_len);
	return rc;
}

/* A read-only descriptor for fd's file: the client may map but not write. */
static int reopen_ro(int fd, int *out)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return -errno;
	*out = ro;
	return 0;
}

static int ensure_staging(struct kvt_session *s)
{
	struct kvt_session_state *st = s->st;
	if (st->staging)
		return 0;
	size_t len = (size_t)s->srv->cfg.max_inflight;
	int fd = memfd_create("kvtier-staging", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	void *p = MAP_FAILED;
	if (!ftruncate(fd, (off_t)len))
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	st->staging_fd = fd;
	st->staging = p;
	return 0;
}

/* Fills a staging location reply; the staging memfd goes with the first. */
static int reply_staged(struct kvt_session *s, struct request *r,
			struct kvt_msg_loc_rep *loc)
{
	struct kvt_session_state *st = s->st;
	if (!st->staging_region) {
		int rc = reopen_ro(st->staging_fd, &r->reply_fd);
		if (rc)
			return rc;
		st->staging_region = ++st->next_region;
	}
	loc->kind = KVT_REGION_STAGING;
	loc->region = st->staging_region;
	return kvt_enc_loc_rep(&st->out, loc);
}

static int do_read(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_read_req m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_read_req(r->p, r->len, &m));
	int rc = cache_of(s, m.handle, &oc);
	if (rc)
		return rc;
	uint64_t len = kvt_proto_kv_bytes(&oc->shape, m.n_tokens);
	if (!m.n_tokens || len > s->srv->cfg.max_inflight)
		return explain(s, KVT_ETOOBIG, "read larger than the staging area");
	if ((rc = ensure_staging(s)))
		return rc;
	uint8_t *k = s->st->staging;
	rc = kvt_cache_read(oc->cache, m.layer, m.first, m.n_tokens, k,
			    k + len / 2);
	if (rc)
		return rc;
	struct kvt_msg_loc_rep loc = {.codec = KVT_CODEC_RAW,
				      .len = (uint32_t)len,
				      .n_tokens = m.n_tokens};
	return reply_staged(s, r, &loc);
}

/* Region id of a host arena for this client, sending its fd the first time. */
static int arena_region(struct kvt_session *s, struct request *r, int fd,
			uint32_t *region)
{
	struct kvt_session_state *st = s->st;
	struct stat sb;
	if (fstat(fd, &sb))
		return -errno;
	for (size_t i = 0; i < st->n_arenas; i++) {
		if (st->arenas[i].dev == sb.st_dev && st->arenas[i].ino == sb.st_ino) {
			*region = st->arenas[i].region;
			return 0;
		}
	}
	if (r->reply_fd >= 0)
		return -ENOTSUP; /* one descriptor per reply: a later request */
	struct arena_ref *a = realloc(st->arenas, (st->n_arenas + 1) * sizeof *a);
	if (!a)
		return -ENOMEM;
	st->arenas = a;
	int rc = reopen_ro(fd, &r->reply_fd);
	if (rc)
		return rc;
	a[st->n_arenas] = (struct arena_ref){sb.st_dev, sb.st_ino, ++st->next_region};
	*region = a[st->n_arenas++].region;
	return 0;
}

/* Zero-copy path: only raw, full-size blocks in a memfd arena qualify;
 * -ENOTSUP for any other block. */
static int locate_shared(struct kvt_session *s, struct request *r,
			 struct open_cache *oc, uint32_t layer, uint64_t block,
			 struct kvt_msg_loc_rep *loc)
{
	struct kvt_block_loc bl;
	struct kvt_block_meta meta;
	int rc = kvt_daemon_locate(oc->cache, layer, block, &bl, &meta);
	if (rc)
		return rc;
	if (bl.fd < 0 || meta.codec != KVT_CODEC_RAW ||
	    bl.len != kvt_block_bytes(&oc->shape))
		return -ENOTSUP;
	*loc = (struct kvt_msg_loc_rep){
		.kind = KVT_REGION_ARENA,
		.codec = KVT_CODEC_RAW,
		.offset = bl.offset,
		.len = bl.len,
		.n_tokens = meta.n_tokens,
		.checksum = meta.checksum,
	};
	return arena_region(s, r, bl.fd, &loc->region);
}

static int do_locate(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_read_req m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_read_req(r->p, r->len, &m));
	if (!m.n_tokens || m.n_tokens > KVT_LOCATE_MAX)
		return malformed(s, KVT_EPROTO);
	int rc = cache_of(s, m.handle, &oc);
	if (rc)
		return rc;
	struct kvt_msg_locate_rep rep = {.n = m.n_tokens};
	for (uint32_t i = 0; i < rep.n; i++) {
		rc = locate_shared(s, r, oc, m.layer, m.first + i, &rep.locs[i]);
		if (rc == -ENOMEM)
			return rc;
		if (rc) /* not shared, not there (yet): kind 0 */
			memset(&rep.locs[i], 0, sizeof rep.locs[i]);
	}
	return kvt_enc_locate_rep(&s->st->out, &rep);
}

static int do_read_block(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_read_req m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_read_req(r->p, r->len, &m));
	if (m.n_tokens)
		return malformed(s, KVT_EPROTO);
	int rc = cache_of(s, m.handle, &oc);
	if (rc)
		return rc;
	struct kvt_msg_loc_rep loc;
	rc = locate_shared(s, r, oc, m.layer, m.first, &loc);
	if (!rc)
		return kvt_enc_loc_rep(&s->st->out, &loc);
	if (rc == -ENOMEM)
		return rc;
	/* Anything else: the store's own read has the authoritative answer. */
	size_t len = kvt_block_bytes(&oc->shape);
	if (len > s->srv->cfg.max_inflight)
		return explain(s, KVT_ETOOBIG, "block larger than the staging area");
	if ((rc = ensure_staging(s)))
		return rc;
	uint32_t n_tokens = 0;
	rc = kvt_cache_read_block(oc->cache, m.layer, m.first, s->st->staging,
				  len, &n_tokens);
	if (rc)
		return rc;
	loc = (struct kvt_msg_loc_rep){.codec = KVT_CODEC_RAW,
				       .len = (uint32_t)len,
				       .n_tokens = n_tokens};
	return reply_staged(s, r, &loc);
}

static int retrieve_reply(struct kvt_session *s, const struct kvt_selection *sel)
{
	struct kvt_msg_retrieve_rep rep = {sel->block_tokens, sel->n_blocks,
					   sel->n_tokens, sel->total_tokens,
					   sel->blocks, sel->n_valid};
	if (sel->n_blocks > KVT_RETRIEVE_MAX_BLOCKS)
		return explain(s, KVT_ETOOBIG, "selection too large for one reply");
	return kvt_enc_retrieve_rep(&s->st->out, &rep);
}

static int do_retrieve(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_retrieve_req m;
	struct open_cache *oc;
	DECODE(s, kvt_dec_retrieve_req(r->p, r->len, &m));
	int rc = cache_of(s, m.handle, &oc);
	if (rc)
		return rc;
	uint64_t want = (uint64_t)m.n_q_heads * m.n_queries * oc->shape.head_dim * 4;
	if (m.q_len != want)
		return explain(s, KVT_ESHAPE, "queries do not match n_q_heads x n_queries x head_dim");
	float *q = malloc(m.q_len);
	if (!q)
		return -ENOMEM;
	memcpy(q, m.q, m.q_len);
	struct kvt_retrieve_params p = {(enum kvt_retrieval_mode)m.mode, m.n_q_heads,
					m.n_queries, m.budget_tokens, m.sink_tokens,
					m.recent_tokens};
	struct kvt_selection sel;
	rc = kvt_daemon_retrieve(oc->cache, &oc->index, m.layer, &p, q, &sel);
	free(q);
	if (rc)
		return rc;
	rc = retrieve_reply(s, &sel);
	kvt_selection_free(&sel);
	return rc;
}

/* ---------------------------------------------------------------- snapshots */

/* Interim progress frames of a snapshot request, at most one a percent. */
struct progress {
	struct kvt_session *s;
	const struct kvt_frame_header *h;
	int enabled;
	uint64_t last_pct;
};

static int send_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	uint64_t pct = total ? done * 100 / total : 100;
	if (!p->enabled || (pct == p->last_pct && done < total))
		return 0;
	p->last_pct = pct;
	struct kvt_msg_progress m = {done < total ? done : total, total};
	struct kvt_wbuf w;
	kvt_wbuf_init(&w);
	kvt_frame_begin(&w);
	kvt_enc_progress(&w, &m);
	int rc = kvt_frame_end(&w, p->h->op, KVT_PF_REPLY | KVT_PF_PROGRESS,
			       p->h->req_id);
	rc = rc ? rc : kvt_wire_send(p->s->sock, w.data, w.len, -1);
	kvt_wbuf_free(&w);
	return rc; /* a client gone mid-save aborts the save */
}

/* The daemon opens these files with its own rights: only for its own uid,
 * and only absolute paths (the client's working directory means nothing
 * here). */
static int snapshot_allowed(struct kvt_session *s, const char *path)
{
	if (s->uid != geteuid())
		return explain(s, -EPERM, "snapshot files are read and written with "
			       "the daemon's rights: only its own uid may ask");
	if (path[0] != '/')
		return explain(s, -EINVAL, "snapshot path must be absolute");
	return 0;
}

static int do_snapshot_save(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_snap_save_req m;
	struct kvt_msg_snap_rep rep;
	DECODE(s, kvt_dec_snap_save_req(r->p, r->len, &m));
	int rc = snapshot_allowed(s, m.path);
	if (rc)
		return rc;
	struct progress p = {s, r->h, m.progress, UINT64_MAX};
	struct kvt_snapshot_opts o = {.zstd_level = m.zstd_level,
				      .progress = send_progress,
				      .progress_ctx = &p};
	rc = kvt_snapshot_save(s->srv->store, m.name, m.path, &o, &rep.info);
	kvt_log(s->srv->cfg.log, rc ? KVT_LOG_WARN : KVT_LOG_INFO,
		"client %llu: snapshot save %s -> %s: %s", (unsigned long long)s->id,
		m.name, m.path, rc ? kvt_strerror(rc) : "ok");
	return rc ? rc : kvt_enc_snap_rep(&s->st->out, &rep);
}

static int do_snapshot_load(struct kvt_session *s, struct request *r)
{
	struct kvt_msg_snap_load_req m;
	struct kvt_msg_snap_rep rep;
	DECODE(s, kvt_dec_snap_load_req(r->p, r->len, &m));
	int rc = snapshot_allowed(s, m.path);
	if (rc)
		return rc;
	struct progress p = {s, r->h, m.progress, UINT64_MAX};
	struct kvt_snapshot_opts o = {.progress = send_progress, .progress_ctx = &p};
	rc = kvt_snapshot_load(s->srv->store, m.path, m.as_name[0] ? m.as_name : NULL,
			       &o, &rep.info);
	kvt_log(s->srv->cfg.log, rc ? KVT_LOG_WARN : KVT_LOG_INFO,
		"client %llu: snapshot load %s: %s", (unsigned long long)s->id,
		m.path, rc ? kvt_strerror(rc) : "ok");
	return rc ? rc : kvt_enc_snap_rep(&s->st->out, &rep);
}

/* ---------------------------------------------------------------- dispatch */

struct command {
	handler_fn fn;
	int takes_fd;
};

static const struct command commands[] = {
	[KVT_OP_HELLO] = {do_hello, 0},
	[KVT_OP_CREATE] = {do_create, 0},
	[KVT_OP_OPEN] = {do_open, 0},
	[KVT_OP_CLOSE] = {do_close, 0},
	[KVT_OP_DROP] = {do_drop, 0},
	[KVT_OP_LIST] = {do_list, 0},
	[KVT_OP_INFO] = {do_info, 0},
	[KVT_OP_APPEND] = {do_append, 1},
	[KVT_OP_READ] = {do_read, 0},
	[KVT_OP_READ_BLOCK] = {do_read_block, 0},
	[KVT_OP_STATS] = {do_stats, 0},
	[KVT_OP_LOCATE] = {do_locate, 0},
	[KVT_OP_RETRIEVE] = {do_retrieve, 0},
	[KVT_OP_SNAPSHOT_SAVE] = {do_snapshot_save, 0},
	[KVT_OP_SNAPSHOT_LOAD] = {do_snapshot_load, 0},
};

static const struct command *command_of(const struct kvt_frame_header *h)
{
	if (h->op >= sizeof commands / sizeof commands[0] || (h->flags & KVT_PF_REPLY))
		return NULL;
	return commands[h->op].fn ? &commands[h->op] : NULL;
}

static int send_error(struct kvt_session *s, uint64_t req_id, int code)
{
	struct kvt_msg_error e = {.code = code < 0 ? code : KVT_EPROTO};
	const char *why = s->st->why[0] ? s->st->why : kvt_strerror(code);
	snprintf(e.message, sizeof e.message, "%s", why);
	struct kvt_wbuf *w = &s->st->out;
	kvt_frame_begin(w);
	kvt_enc_error(w, &e);
	int rc = kvt_frame_end(w, KVT_OP_ERROR, KVT_PF_REPLY, req_id);
	return rc ? rc : kvt_wire_send(s->sock, w->data, w->len, -1);
}

static int send_reply(struct kvt_session *s, const struct kvt_frame_header *h,
		      int reply_fd)
{
	struct kvt_wbuf *w = &s->st->out;
	unsigned flags = KVT_PF_REPLY | (reply_fd >= 0 ? KVT_PF_FD : 0);
	int rc = kvt_frame_end(w, h->op, flags, h->req_id);
	return rc ? rc : kvt_wire_send(s->sock, w->data, w->len, reply_fd);
}

/* Runs one decoded frame; returns what send_* returned. */
static int dispatch(struct kvt_session *s, const struct kvt_frame_header *h,
		    int fd)
{
	struct kvt_session_state *st = s->st;
	struct request r = {h, st->in.data, st->in.len, fd, -1};
	const struct command *cmd = command_of(h);
	st->why[0] = 0;
	kvt_frame_begin(&st->out);
	int rc;
	if (!cmd || (fd >= 0 && !cmd->takes_fd))
		rc = malformed(s, explain(s, KVT_EPROTO, "unexpected opcode or descriptor"));
	else
		rc = cmd->fn(s, &r);
	if (!rc) {
		rc = send_reply(s, h, r.reply_fd);
	} else {
		kvt_log(s->srv->cfg.log, st->fatal ? KVT_LOG_WARN : KVT_LOG_DEBUG,
			"client %llu: %s: %s", (unsigned long long)s->id,
			kvt_op_name(h->op), st->why[0] ? st->why : kvt_strerror(rc));
		rc = send_error(s, h->req_id, rc);
	}
	if (r.reply_fd >= 0)
		close(r.reply_fd);
	return rc;
}

/* Serves frames until the peer leaves, a frame is malformed or I/O fails. */
static void serve(struct kvt_session *s)
{
	struct kvt_session_state *st = s->st;
	while (!st->fatal) {
		struct kvt_frame_header h = {0};
		int fd;
		int rc = kvt_wire_recv(s->sock, s->srv->cfg.max_frame, &h, &st->in, &fd);
		if (rc == KVT_ECLOSED)
			return;
		if (rc) {
			st->fatal = 1;
			explain(s, rc, rc == KVT_ETOOBIG ? "frame too large"
				       : rc == -ETIMEDOUT ? "frame not completed in time"
							  : "malformed or truncated frame");
			kvt_log(s->srv->cfg.log, KVT_LOG_WARN, "client %llu: %s",
				(unsigned long long)s->id, st->why);
			send_error(s, h.req_id, rc);
			return;
		}
		rc = dispatch(s, &h, fd);
		if (fd >= 0)
			close(fd);
		if (rc)
			return;
		/* An idle session should not keep its largest frame's memory. */
		if (st->in.cap > (1u << 20))
			kvt_wbuf_free(&st->in);
		if (st->out.cap > (1u << 20))
			kvt_wbuf_free(&st->out);
	}
}

static void state_free(struct kvt_session *s)
{
	struct kvt_session_state *st = s->st;
	if (!st)
		return;
	for (uint32_t i = 0; st->caches && i < s->srv->cfg.max_open_caches; i++) {
		kvt_daemon_retrieve_free(st->caches[i].index);
		kvt_cache_close(st->caches[i].cache);
	}
	free(st->caches);
	free(st->arenas);
	if (st->staging)
		munmap(st->staging, (size_t)s->srv->cfg.max_inflight);
	if (st->staging_fd >= 0)
		close(st->staging_fd);
	kvt_wbuf_free(&st->in);
	kvt_wbuf_free(&st->out);
	free(st);
	s->st = NULL;
}

static int state_new(struct kvt_session *s)
{
	struct kvt_session_state *st = calloc(1, sizeof *st);
	if (!st)
		return -ENOMEM;
	st->staging_fd = -1;
	st->caches = calloc(s->srv->cfg.max_open_caches, sizeof *st->caches);
	s->st = st;
	return st->caches ? 0 : -ENOMEM;
}

void *kvt_session_main(void *arg)
{
	struct kvt_session *s = arg;
	const struct kvt_log *log = s->srv->cfg.log;
	kvt_log(log, KVT_LOG_INFO, "client %llu connected (pid %d uid %u)",
		(unsigned long long)s->id, (int)s->pid, (unsigned)s->uid);
	if (!state_new(s))
		serve(s);
	state_free(s);
	kvt_log(log, KVT_LOG_INFO, "client %llu disconnected",
		(unsigned long long)s->id);
	atomic_store(&s->done, 1);
	uint64_t one = 1;
	ssize_t n = write(s->srv->wake_fd, &one, sizeof one);
	(void)n;
	return NULL;
}
