/* client.c - the kvtierd client library (see include/kvtier/client.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvtier/client.h"
#include "loc_cache.h"
#include "path.h"
#include "wire.h"

/* The block checksum of kvtier (XXH3-64, as kvt_checksum), inlined here so
 * the compiler may use the build's vector ISA: the shared library of the
 * distribution is built for baseline x86-64 and hashes about 3x slower,
 * and every shared read is verified. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define READ_RETRIES 4

/* A descriptor the daemon sent us, mapped read-only. */
struct region {
	uint32_t id;
	int fd;
	const uint8_t *map;
	size_t len;
};

struct kvt_client {
	int sock;
	int broken;               /* transport failed: every call fails */
	pthread_mutex_t lock;
	uint64_t next_req;
	struct kvt_msg_hello_rep limits;
	struct kvt_wbuf out;
	struct kvt_wbuf in;
	struct kvt_wbuf scratch;  /* inline appends are packed here */
	struct region *regions;
	size_t n_regions;
	int append_fd;            /* sealed memfd reused by large appends */
	uint8_t *append_map;
	struct kvt_client_cache *caches;
};

struct kvt_client_cache {
	struct kvt_client *cl;
	struct kvt_client_cache *next;
	uint32_t handle;
	struct kvt_shape shape;
	struct kvt_loc_cache locs; /* full shared blocks seen before */
	int locate_useful;         /* the last LOCATE found shared blocks */
};

int kvt_client_default_socket(char *buf, size_t cap)
{
	return kvt_default_socket_path(buf, cap);
}

/* ---------------------------------------------------------------- requests */

static void begin(struct kvt_client *cl)
{
	kvt_frame_begin(&cl->out);
}

/* Sends the frame in cl->out and waits for its reply; on an error reply
 * returns the daemon's code. *reply_fd (may be NULL: then none allowed)
 * gets a descriptor sent with the reply. */
/* An interim progress frame of request id: passed to fn (may be NULL). */
static int take_progress(struct kvt_client *cl, const struct kvt_frame_header *h,
			 unsigned op, uint64_t id, int got, kvt_progress_fn fn,
			 void *ctx)
{
	struct kvt_msg_progress m;
	if (h->op != op || h->req_id != id || !(h->flags & KVT_PF_REPLY) ||
	    got >= 0 || kvt_dec_progress(cl->in.data, cl->in.len, &m)) {
		if (got >= 0)
			close(got);
		cl->broken = 1;
		return KVT_EPROTO;
	}
	if (fn)
		fn(ctx, m.done, m.total); /* cannot cancel: the daemon decides */
	return 0;
}

/* rpc, for requests that may get interim progress frames first. */
static int rpc_progress(struct kvt_client *cl, unsigned op, int fd,
			int *reply_fd, kvt_progress_fn fn, void *ctx)
{
	if (cl->broken)
		return KVT_ECLOSED;
	uint64_t id = ++cl->next_req;
	int rc = kvt_frame_end(&cl->out, op, fd >= 0 ? KVT_PF_FD : 0, id);
	if (rc)
		return rc;
	int sent = kvt_wire_send(cl->sock, cl->out.data, cl->out.len, fd);
	struct kvt_frame_header h;
	int got;
	/* Even when sending failed, the daemon may have said why it closed. */
	do {
		rc = kvt_wire_recv(cl->sock, KVT_PROTO_MAX_PAYLOAD, &h, &cl->in, &got);
		if (rc == 0 && !sent && (h.flags & KVT_PF_PROGRESS) &&
		    (rc = take_progress(cl, &h, op, id, got, fn, ctx)))
			return rc;
	} while (rc == 0 && !sent && (h.flags & KVT_PF_PROGRESS));
	if (rc) {
		cl->broken = 1;
		return sent ? sent : rc;
	}
	if (h.op == KVT_OP_ERROR) {
		struct kvt_msg_error e;
		if (got >= 0)
			close(got);
		rc = kvt_dec_error(cl->in.data, cl->in.len, &e);
		if (rc || sent)
			cl->broken = 1;
		return rc ? rc : e.code;
	}
	if (sent || h.op != op || h.req_id != id || !(h.flags & KVT_PF_REPLY) ||
	    (got >= 0 && !reply_fd)) {
		if (got >= 0)
			close(got);
		cl->broken = 1;
		return sent ? sent : KVT_EPROTO;
	}
	if (reply_fd)
		*reply_fd = got;
	return 0;
}

static int rpc(struct kvt_client *cl, unsigned op, int fd, int *reply_fd)
{
	return rpc_progress(cl, op, fd, reply_fd, NULL, NULL);
}

static int hello(struct kvt_client *cl)
{
	struct kvt_msg_hello_req req = {KVT_PROTO_MIN_VERSION, KVT_PROTO_VERSION};
	begin(cl);
	kvt_enc_hello_req(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_HELLO, -1, NULL);
	if (!rc)
		rc = kvt_dec_hello_rep(cl->in.data, cl->in.len, &cl->limits);
	if (!rc && (cl->limits.version < KVT_PROTO_MIN_VERSION ||
		    cl->limits.version > KVT_PROTO_VERSION))
		rc = KVT_EVERSION;
	return rc;
}

static int dial(const char *path, int *out)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof addr.sun_path)
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int kvt_client_connect(const char *path, struct kvt_client **out)
{
	char def[108];
	if (!path) {
		int rc = kvt_client_default_socket(def, sizeof def);
		if (rc)
			return rc;
		path = def;
	}
	struct kvt_client *cl = calloc(1, sizeof *cl);
	if (!cl)
		return -ENOMEM;
	cl->append_fd = -1;
	pthread_mutex_init(&cl->lock, NULL);
	int rc = dial(path, &cl->sock);
	if (rc) {
		cl->sock = -1;
		kvt_client_close(cl);
		return rc;
	}
	rc = hello(cl);
	if (rc) {
		kvt_client_close(cl);
		return rc;
	}
	*out = cl;
	return 0;
}

void kvt_client_close(struct kvt_client *cl)
{
	if (!cl)
		return;
	/* Closing the socket makes the daemon release every handle. */
	if (cl->sock >= 0)
		close(cl->sock);
	while (cl->caches) {
		struct kvt_client_cache *c = cl->caches;
		cl->caches = c->next;
		kvt_loc_cache_free(&c->locs);
		free(c);
	}
	for (size_t i = 0; i < cl->n_regions; i++) {
		munmap((void *)cl->regions[i].map, cl->regions[i].len);
		close(cl->regions[i].fd);
	}
	free(cl->regions);
	if (cl->append_map)
		munmap(cl->append_map, cl->limits.max_staging);
	if (cl->append_fd >= 0)
		close(cl->append_fd);
	kvt_wbuf_free(&cl->out);
	kvt_wbuf_free(&cl->in);
	kvt_wbuf_free(&cl->scratch);
	pthread_mutex_destroy(&cl->lock);
	free(cl);
}

/* ---------------------------------------------------------------- caches */

/* out = dir + "/" + base (base may be ""). */
static int copy_path(char *out, size_t cap, const char *dir, const char *base)
{
	int n = base[0] ? snprintf(out, cap, "%s%s%s", dir,
				   strcmp(dir, "/") ? "/" : "", base)
			: snprintf(out, cap, "%s", dir);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int name_check(const char *name)
{
	return name && name[0] && strlen(name) <= KVT_NAME_MAX ? 0 : -EINVAL;
}

/* Turns a create/open reply into a handle. */
static int adopt(struct kvt_client *cl, struct kvt_client_cache **out)
{
	struct kvt_msg_cache_rep rep;
	int rc = kvt_dec_cache_rep(cl->in.data, cl->in.len, &rep);
	if (rc)
		return rc;
	struct kvt_client_cache *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM; /* the daemon's handle goes when we disconnect */
	c->cl = cl;
	c->handle = rep.handle;
	c->shape = rep.info.config.shape;
	c->locate_useful = 1;
	c->next = cl->caches;
	cl->caches = c;
	*out = c;
	return 0;
}

int kvt_client_cache_create(struct kvt_client *cl, const char *name,
			    const struct kvt_cache_config *cfg,
			    struct kvt_client_cache **out)
{
	if (name_check(name) || !cfg || cfg->cold.saliency)
		return -EINVAL;
	struct kvt_msg_create_req req = {.config = *cfg};
	strcpy(req.name, name);
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_create_req(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_CREATE, -1, NULL);
	if (!rc)
		rc = adopt(cl, out);
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

int kvt_client_cache_open(struct kvt_client *cl, const char *name,
			  struct kvt_client_cache **out)
{
	if (name_check(name))
		return -EINVAL;
	struct kvt_msg_name req;
	strcpy(req.name, name);
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_name(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_OPEN, -1, NULL);
	if (!rc)
		rc = adopt(cl, out);
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

void kvt_client_cache_close(struct kvt_client_cache *cache)
{
	if (!cache)
		return;
	struct kvt_client *cl = cache->cl;
	pthread_mutex_lock(&cl->lock);
	struct kvt_msg_handle req = {cache->handle};
	begin(cl);
	kvt_enc_handle(&cl->out, &req);
	rpc(cl, KVT_OP_CLOSE, -1, NULL); /* a dead daemon closed it anyway */
	for (struct kvt_client_cache **pp = &cl->caches; *pp; pp = &(*pp)->next) {
		if (*pp == cache) {
			*pp = cache->next;
			break;
		}
	}
	kvt_loc_cache_free(&cache->locs);
	free(cache);
	pthread_mutex_unlock(&cl->lock);
}

int kvt_client_cache_drop(struct kvt_client *cl, const char *name)
{
	if (name_check(name))
		return -EINVAL;
	struct kvt_msg_name req;
	strcpy(req.name, name);
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_name(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_DROP, -1, NULL);
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

int kvt_client_cache_get_info(struct kvt_client_cache *cache,
			      struct kvt_cache_info *out)
{
	struct kvt_client *cl = cache->cl;
	struct kvt_msg_handle req = {cache->handle};
	struct kvt_msg_cache_rep rep;
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_handle(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_INFO, -1, NULL);
	if (!rc)
		rc = kvt_dec_cache_rep(cl->in.data, cl->in.len, &rep);
	pthread_mutex_unlock(&cl->lock);
	if (!rc)
		*out = rep.info;
	return rc;
}

int kvt_client_list(struct kvt_client *cl, struct kvt_cache_info **out,
		    size_t *n)
{
	struct kvt_msg_list_rep rep;
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	int rc = rpc(cl, KVT_OP_LIST, -1, NULL);
	if (!rc)
		rc = kvt_dec_list_rep(cl->in.data, cl->in.len, &rep);
	pthread_mutex_unlock(&cl->lock);
	if (!rc) {
		*out = rep.infos;
		*n = rep.n;
	}
	return rc;
}

int kvt_client_stats(struct kvt_client *cl, struct kvt_stats *out)
{
	struct kvt_msg_stats_rep rep;
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	int rc = rpc(cl, KVT_OP_STATS, -1, NULL);
	if (!rc)
		rc = kvt_dec_stats_rep(cl->in.data, cl->in.len, &rep);
	pthread_mutex_unlock(&cl->lock);
	if (!rc)
		*out = rep.stats;
	return rc;
}

/* ---------------------------------------------------------------- snapshots */

/* The daemon resolves nothing: paths go absolute, symlinks resolved. A
 * file to be written need not exist, its directory must. */
static int absolute(const char *path, int must_exist, char *out, size_t cap)
{
	char buf[PATH_MAX], dir[PATH_MAX];
	if (!path || !path[0] || strlen(path) >= sizeof buf)
		return -EINVAL;
	if (must_exist)
		return realpath(path, buf) ? copy_path(out, cap, buf, "") : -errno;
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return -EISDIR;
	kvt_path_dir(path, dir, sizeof dir);
	if (!realpath(dir, buf))
		return -errno;
	return copy_path(out, cap, buf, base);
}

/* Sends the snapshot request encoded in cl->out (lock held) and decodes
 * the reply into *info (may be NULL). */
static int snap_rpc_locked(struct kvt_client *cl, unsigned op,
			   const struct kvt_snapshot_opts *opts,
			   struct kvt_snapshot_info *info)
{
	struct kvt_msg_snap_rep rep;
	int rc = rpc_progress(cl, op, -1, NULL, opts ? opts->progress : NULL,
			      opts ? opts->progress_ctx : NULL);
	if (!rc)
		rc = kvt_dec_snap_rep(cl->in.data, cl->in.len, &rep);
	if (!rc && info)
		*info = rep.info;
	return rc;
}

int kvt_client_snapshot_save(struct kvt_client *cl, const char *name,
			     const char *path, const struct kvt_snapshot_opts *opts,
			     struct kvt_snapshot_info *info)
{
	struct kvt_msg_snap_save_req req = {0};
	int level = opts ? opts->zstd_level : 0;
	if (name_check(name) || level < 0 || level > 22)
		return -EINVAL;
	int rc = absolute(path, 0, req.path, sizeof req.path);
	if (rc)
		return rc;
	strcpy(req.name, name);
	req.zstd_level = (uint8_t)level;
	req.progress = opts && opts->progress;
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_snap_save_req(&cl->out, &req);
	rc = snap_rpc_locked(cl, KVT_OP_SNAPSHOT_SAVE, opts, info);
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

int kvt_client_snapshot_load(struct kvt_client *cl, const char *path,
			     const char *as_name,
			     const struct kvt_snapshot_opts *opts,
			     struct kvt_snapshot_info *info)
{
	struct kvt_msg_snap_load_req req = {0};
	if (as_name && name_check(as_name))
		return -EINVAL;
	int rc = absolute(path, 1, req.path, sizeof req.path);
	if (rc)
		return rc;
	if (as_name)
		strcpy(req.as_name, as_name);
	req.progress = opts && opts->progress;
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_snap_load_req(&cl->out, &req);
	rc = snap_rpc_locked(cl, KVT_OP_SNAPSHOT_LOAD, opts, info);
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

/* ---------------------------------------------------------------- bulk data */

/* Bytes of one token of one head (a row of K or V). */
static size_t row_bytes(const struct kvt_shape *s)
{
	return (size_t)s->head_dim * kvt_dtype_size(s->dtype);
}

/* Copies tokens [first, first + n) of [heads][total][row] k and v into dst
 * as [heads][n][row] K followed by V. */
static void pack(uint8_t *dst, const struct kvt_shape *s, const uint8_t *k,
		 const uint8_t *v, uint64_t total, uint64_t first, uint32_t n)
{
	size_t row = row_bytes(s), part = (size_t)n * row * s->n_kv_heads;
	for (uint32_t h = 0; h < s->n_kv_heads; h++) {
		size_t src = ((size_t)h * total + first) * row;
		memcpy(dst + (size_t)h * n * row, k + src, (size_t)n * row);
		memcpy(dst + part + (size_t)h * n * row, v + src, (size_t)n * row);
	}
}

/* The reverse of pack. */
static void unpack(const uint8_t *src, const struct kvt_shape *s, uint8_t *k,
		   uint8_t *v, uint64_t total, uint64_t first, uint32_t n)
{
	size_t row = row_bytes(s), part = (size_t)n * row * s->n_kv_heads;
	for (uint32_t h = 0; h < s->n_kv_heads; h++) {
		size_t dst = ((size_t)h * total + first) * row;
		memcpy(k + dst, src + (size_t)h * n * row, (size_t)n * row);
		memcpy(v + dst, src + part + (size_t)h * n * row, (size_t)n * row);
	}
}

/* Tokens per request so that K+V fit in bound bytes (0: not even one). */
static uint32_t chunk_tokens(const struct kvt_shape *s, uint64_t bound,
			     uint32_t want)
{
	uint64_t per = 2 * row_bytes(s) * s->n_kv_heads;
	uint64_t n = per ? bound / per : 0;
	return n < want ? (uint32_t)n : want;
}

/* The append memfd: sized once to the daemon's bound and sealed against
 * shrinking (the daemon requires it), so it can be reused. */
static int ensure_append_fd(struct kvt_client *cl)
{
	if (cl->append_map)
		return 0;
	size_t len = (size_t)cl->limits.max_staging;
	int fd = memfd_create("kvtier-append", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	void *p = MAP_FAILED;
	if (!ftruncate(fd, (off_t)len) &&
	    !fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	cl->append_fd = fd;
	cl->append_map = p;
	return 0;
}

static int append_chunk(struct kvt_client_cache *c, uint32_t layer,
			const uint8_t *k, const uint8_t *v, uint32_t total,
			uint32_t first, uint32_t n)
{
	struct kvt_client *cl = c->cl;
	uint64_t len = kvt_proto_kv_bytes(&c->shape, n);
	struct kvt_msg_append_req req = {c->handle, layer, n,
					 KVT_APPEND_INLINE, 0, len, NULL};
	int fd = -1;
	if (len <= cl->limits.max_inline) {
		cl->scratch.len = 0;
		uint8_t *buf = kvt_wbuf_grow(&cl->scratch, len);
		if (!buf)
			return cl->scratch.err;
		pack(buf, &c->shape, k, v, total, first, n);
		req.data = buf;
	} else {
		int rc = ensure_append_fd(cl);
		if (rc)
			return rc;
		pack(cl->append_map, &c->shape, k, v, total, first, n);
		req.via = KVT_APPEND_FD;
		fd = cl->append_fd;
	}
	begin(cl);
	kvt_enc_append_req(&cl->out, &req);
	return rpc(cl, KVT_OP_APPEND, fd, NULL);
}

int kvt_client_cache_append(struct kvt_client_cache *cache, uint32_t layer,
			    uint32_t n_tokens, const void *k, const void *v)
{
	if (!k || !v || !n_tokens)
		return -EINVAL;
	struct kvt_client *cl = cache->cl;
	uint32_t step = chunk_tokens(&cache->shape, cl->limits.max_staging, n_tokens);
	if (!step)
		return KVT_ETOOBIG;
	pthread_mutex_lock(&cl->lock);
	int rc = 0;
	for (uint32_t at = 0; at < n_tokens && !rc; at += step) {
		uint32_t n = n_tokens - at < step ? n_tokens - at : step;
		rc = append_chunk(cache, layer, k, v, n_tokens, at, n);
	}
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

static struct region *region_find(struct kvt_client *cl, uint32_t id)
{
	for (size_t i = 0; i < cl->n_regions; i++)
		if (cl->regions[i].id == id)
			return &cl->regions[i];
	return NULL;
}

/* Maps (or re-maps, when it grew) a region's whole file read-only. */
static int region_map(struct region *r)
{
	struct stat st;
	if (fstat(r->fd, &st))
		return -errno;
	if (!st.st_size)
		return KVT_EPROTO;
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, r->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (r->map)
		munmap((void *)r->map, r->len);
	r->map = p;
	r->len = (size_t)st.st_size;
	return 0;
}

static int region_add(struct kvt_client *cl, uint32_t id, int fd)
{
	struct region *r = realloc(cl->regions, (cl->n_regions + 1) * sizeof *r);
	if (!r) {
		close(fd);
		return -ENOMEM;
	}
	cl->regions = r;
	r += cl->n_regions;
	*r = (struct region){.id = id, .fd = fd};
	int rc = region_map(r);
	if (rc) {
		close(fd);
		return rc;
	}
	cl->n_regions++;
	return 0;
}

/* Bytes [offset, offset + len) of a region, mapped; NULL if out of range. */
static int region_bytes(struct kvt_client *cl, const struct kvt_msg_loc_rep *loc,
			int fd, const uint8_t **out)
{
	if (fd >= 0 && region_find(cl, loc->region)) {
		close(fd);
		return KVT_EPROTO;
	}
	int rc = fd >= 0 ? region_add(cl, loc->region, fd) : 0;
	struct region *r = region_find(cl, loc->region);
	if (rc || !r)
		return rc ? rc : KVT_EPROTO;
	if (loc->offset + loc->len > r->len && (rc = region_map(r)))
		return rc;
	if (loc->offset + loc->len > r->len)
		return KVT_EPROTO;
	*out = r->map + loc->offset;
	return 0;
}

/* Sends the read request in cl->out; *loc and *src describe the bytes. */
static int locate(struct kvt_client *cl, unsigned op,
		  struct kvt_msg_loc_rep *loc, const uint8_t **src)
{
	int fd = -1;
	int rc = rpc(cl, op, -1, &fd);
	if (rc)
		return rc;
	rc = kvt_dec_loc_rep(cl->in.data, cl->in.len, loc);
	if (rc) {
		if (fd >= 0)
			close(fd);
		cl->broken = 1;
		return rc;
	}
	return region_bytes(cl, loc, fd, src);
}

static int read_chunk(struct kvt_client_cache *c, uint32_t layer,
		      uint64_t first, uint32_t total, uint32_t at, uint32_t n,
		      uint8_t *k, uint8_t *v)
{
	struct kvt_client *cl = c->cl;
	struct kvt_msg_read_req req = {c->handle, layer, first + at, n};
	struct kvt_msg_loc_rep loc;
	const uint8_t *src;
	begin(cl);
	kvt_enc_read_req(&cl->out, &req);
	int rc = locate(cl, KVT_OP_READ, &loc, &src);
	if (rc)
		return rc;
	if (loc.len != kvt_proto_kv_bytes(&c->shape, n) ||
	    loc.kind != KVT_REGION_STAGING)
		return KVT_EPROTO;
	unpack(src, &c->shape, k, v, total, at, n);
	return 0;
}

int kvt_client_cache_read(struct kvt_client_cache *cache, uint32_t layer,
			  uint64_t first, uint32_t n_tokens, void *k, void *v)
{
	if (!k || !v || !n_tokens)
		return -EINVAL;
	struct kvt_client *cl = cache->cl;
	uint32_t step = chunk_tokens(&cache->shape, cl->limits.max_staging, n_tokens);
	if (!step)
		return KVT_ETOOBIG;
	pthread_mutex_lock(&cl->lock);
	int rc = 0;
	for (uint32_t at = 0; at < n_tokens && !rc; at += step) {
		uint32_t n = n_tokens - at < step ? n_tokens - at : step;
		rc = read_chunk(cache, layer, first, n_tokens, at, n, k, v);
	}
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

/* Copies a shared block from its mapping; -EAGAIN when the bytes do not
 * match the checksum taken when the daemon located it (the block moved or
 * its slot was reused while we copied: the daemon never stops for us). */
static int copy_checked(void *dst, const uint8_t *src, size_t len,
			uint64_t checksum)
{
	memcpy(dst, src, len);
	return XXH3_64bits(dst, len) == checksum ? 0 : -EAGAIN;
}

/* Reads a block at a location remembered from an earlier read, if any:
 * 0 when done, -ENOENT when the daemon must be asked. */
static int read_block_known(struct kvt_client_cache *c, uint32_t layer,
			    uint64_t block, void *dst, size_t len,
			    uint32_t *n_tokens)
{
	uint64_t key = kvt_loc_key(layer, block);
	const struct kvt_loc_entry *e = kvt_loc_cache_get(&c->locs, key);
	struct region *r = e ? region_find(c->cl, e->region) : NULL;
	if (!r || e->len != len || e->offset + len > r->len ||
	    copy_checked(dst, r->map + e->offset, len, e->checksum)) {
		if (e)
			kvt_loc_cache_forget(&c->locs, key);
		return -ENOENT;
	}
	if (n_tokens)
		*n_tokens = e->n_tokens;
	return 0;
}

/* Remembers a full shared block's location (a partial one still grows). */
static void remember(struct kvt_client_cache *c, uint32_t layer, uint64_t block,
		     const struct kvt_msg_loc_rep *loc)
{
	if (loc->kind != KVT_REGION_ARENA || loc->n_tokens != c->shape.block_tokens)
		return;
	struct kvt_loc_entry e = {.offset = loc->offset, .checksum = loc->checksum,
				  .region = loc->region, .len = loc->len,
				  .n_tokens = loc->n_tokens};
	kvt_loc_cache_put(&c->locs, kvt_loc_key(layer, block), &e);
}

#define LOCATE_AHEAD 64 /* blocks per LOCATE request, aligned windows so
			   * random reads do not locate a block twice */

/* Asks where the window of LOCATE_AHEAD blocks around block lives and
 * remembers the shared ones, so the reads that follow need no round trip. */
static int locate_ahead(struct kvt_client_cache *c, uint32_t layer,
			uint64_t block)
{
	block -= block % LOCATE_AHEAD;
	struct kvt_client *cl = c->cl;
	struct kvt_msg_read_req req = {c->handle, layer, block, LOCATE_AHEAD};
	int fd = -1, shared = 0;
	begin(cl);
	kvt_enc_read_req(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_LOCATE, -1, &fd);
	struct kvt_msg_locate_rep *rep = rc ? NULL : malloc(sizeof *rep);
	if (!rc && !rep)
		rc = -ENOMEM;
	if (!rc)
		rc = kvt_dec_locate_rep(cl->in.data, cl->in.len, rep);
	for (uint32_t i = 0; !rc && i < rep->n; i++) {
		const struct kvt_msg_loc_rep *loc = &rep->locs[i];
		const uint8_t *src;
		if (loc->kind != KVT_REGION_ARENA)
			continue;
		shared++;
		if (kvt_loc_cache_get(&c->locs, kvt_loc_key(layer, block + i)) &&
		    region_find(cl, loc->region))
			continue; /* known already (and checked when read) */
		/* The descriptor belongs to the one region new to us. */
		int efd = fd >= 0 && !region_find(cl, loc->region) ? fd : -1;
		rc = region_bytes(cl, loc, efd, &src);
		if (efd >= 0)
			fd = -1;
		remember(c, layer, block + i, loc);
	}
	if (fd >= 0)
		close(fd);
	free(rep);
	c->locate_useful = shared > 0;
	return rc;
}

/* One request; -EAGAIN when a shared block changed under the copy. */
static int read_block_once(struct kvt_client_cache *c, uint32_t layer,
			   uint64_t block, void *dst, size_t len,
			   uint32_t *n_tokens)
{
	struct kvt_client *cl = c->cl;
	struct kvt_msg_read_req req = {c->handle, layer, block, 0};
	struct kvt_msg_loc_rep loc;
	const uint8_t *src;
	begin(cl);
	kvt_enc_read_req(&cl->out, &req);
	int rc = locate(cl, KVT_OP_READ_BLOCK, &loc, &src);
	if (rc)
		return rc;
	if (loc.len != len || loc.codec != KVT_CODEC_RAW)
		return KVT_EPROTO;
	if (loc.kind == KVT_REGION_ARENA) {
		if ((rc = copy_checked(dst, src, len, loc.checksum)))
			return rc;
		remember(c, layer, block, &loc);
		c->locate_useful = 1;
	} else {
		memcpy(dst, src, len);
	}
	if (n_tokens)
		*n_tokens = loc.n_tokens;
	return 0;
}

int kvt_client_cache_read_block(struct kvt_client_cache *cache, uint32_t layer,
				uint64_t block, void *dst, size_t dst_len,
				uint32_t *n_tokens)
{
	size_t len = kvt_block_bytes(&cache->shape);
	if (!dst)
		return -EINVAL;
	if (dst_len < len)
		return -ENOBUFS;
	struct kvt_client *cl = cache->cl;
	pthread_mutex_lock(&cl->lock);
	int rc = read_block_known(cache, layer, block, dst, len, n_tokens);
	if (rc == -ENOENT && cache->locate_useful && !locate_ahead(cache, layer, block))
		rc = read_block_known(cache, layer, block, dst, len, n_tokens);
	if (rc == -ENOENT)
		rc = -EAGAIN;
	for (int i = 0; i < READ_RETRIES && rc == -EAGAIN; i++)
		rc = read_block_once(cache, layer, block, dst, len, n_tokens);
	pthread_mutex_unlock(&cl->lock);
	return rc == -EAGAIN ? KVT_ECORRUPT : rc;
}

/* ---------------------------------------------------------------- retrieval */

int kvt_client_cache_retrieve(struct kvt_client_cache *cache, uint32_t layer,
			      const struct kvt_retrieve_params *p, const float *q,
			      struct kvt_selection *out)
{
	if (!cache || !p || !q || !out || !p->n_q_heads || !p->n_queries ||
	    p->n_q_heads > 4096 || p->n_queries > 4096)
		return -EINVAL;
	uint64_t qlen = (uint64_t)p->n_q_heads * p->n_queries * cache->shape.head_dim * 4;
	struct kvt_client *cl = cache->cl;
	if (qlen + 64 > cl->limits.max_frame)
		return KVT_ETOOBIG;
	struct kvt_msg_retrieve_req req = {
		cache->handle, layer, (uint8_t)p->mode, p->n_q_heads, p->n_queries,
		p->budget_tokens, p->sink_tokens, p->recent_tokens, (uint32_t)qlen,
		(const uint8_t *)q};
	struct kvt_msg_retrieve_rep rep;
	pthread_mutex_lock(&cl->lock);
	begin(cl);
	kvt_enc_retrieve_req(&cl->out, &req);
	int rc = rpc(cl, KVT_OP_RETRIEVE, -1, NULL);
	if (!rc)
		rc = kvt_dec_retrieve_rep(cl->in.data, cl->in.len, &rep);
	pthread_mutex_unlock(&cl->lock);
	if (rc)
		return rc;
	*out = (struct kvt_selection){layer, rep.block_tokens, rep.n_blocks,
				      rep.blocks, rep.n_valid, rep.n_tokens,
				      rep.total_tokens};
	return 0;
}
