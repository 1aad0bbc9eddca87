/*
 * client.h - client library of kvtierd, the kvtier daemon.
 *
 * Mirrors the store API of kvtier.h over the daemon's Unix socket, with the
 * same conventions: functions return 0 or a negative code (-errno or
 * KVT_E*; kvt_strerror() describes them), results come back through
 * out-parameters, handles are opaque, close functions accept NULL.
 * Errors specific to the client: KVT_ECLOSED (the daemon went away: the
 * client is unusable and should be closed), KVT_EPROTO (the daemon sent
 * something unexpected; also unusable), KVT_EVERSION (no common protocol
 * version), -EACCES (the daemon refused this uid/gid), -EUSERS (the daemon
 * has too many clients), -EMFILE (too many caches open on this connection).
 * Any error the store returns on the daemon side is passed through.
 *
 * Bulk data does not go through the socket. Reads of blocks on the
 * daemon's host tier are copied straight from the daemon's shared memory
 * (a read-only mapping of its memfd arena) and verified with the block's
 * checksum; other reads come through a per-connection staging memfd.
 * Appends larger than a small inline bound travel in a sealed memfd.
 *
 * Thread safety: a kvt_client and its caches may be used from several
 * threads; requests on one client are serialised. Use one client per
 * thread for parallel requests.
 */
#ifndef KVTIER_CLIENT_H
#define KVTIER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/kvtier.h"
#include "kvtier/retrieval.h"
#include "kvtier/snapshot.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kvt_client;
struct kvt_client_cache;

/*
 * Writes the default socket path into buf (cap bytes):
 * $XDG_RUNTIME_DIR/kvtier.sock, or /tmp/kvtier-$UID.sock without
 * XDG_RUNTIME_DIR. Returns 0 or -ENAMETOOLONG.
 */
int kvt_client_default_socket(char *buf, size_t cap);

/*
 * Connects to the daemon at path (NULL: the default path) and negotiates
 * the protocol version. On success *out owns the connection; release it
 * with kvt_client_close(). Errors: -ENOENT / -ECONNREFUSED (no daemon),
 * -ENAMETOOLONG, -EACCES, -EUSERS, KVT_EVERSION, KVT_EPROTO, -ENOMEM.
 */
int kvt_client_connect(const char *path, struct kvt_client **out);

/* Closes the connection and every cache handle still open on it (their
 * kvt_client_cache pointers become invalid). NULL is a no-op. */
void kvt_client_close(struct kvt_client *cl);

/* Creates the cache `name` on the daemon and opens it (kvt_cache_create). */
int kvt_client_cache_create(struct kvt_client *cl, const char *name,
			    const struct kvt_cache_config *cfg,
			    struct kvt_client_cache **out);

/* Opens an existing cache (kvt_cache_open). KVT_ENOTFOUND, -EMFILE. */
int kvt_client_cache_open(struct kvt_client *cl, const char *name,
			  struct kvt_client_cache **out);

/* Closes a cache handle (the cache stays on the daemon). NULL is a no-op. */
void kvt_client_cache_close(struct kvt_client_cache *cache);

/* Deletes a cache (kvt_cache_drop): KVT_ENOTFOUND, KVT_EBUSY when a
 * handle to it is open anywhere, this client included. */
int kvt_client_cache_drop(struct kvt_client *cl, const char *name);

/*
 * Appends n_tokens tokens to `layer` (kvt_cache_append); k and v are
 * [n_kv_heads][n_tokens][head_dim] arrays of the cache dtype. Appends
 * larger than the daemon's in-flight bound are split into several
 * requests, each atomic on its own. Errors: as kvt_cache_append.
 */
int kvt_client_cache_append(struct kvt_client_cache *cache, uint32_t layer,
			    uint32_t n_tokens, const void *k, const void *v);

/* Reads tokens [first, first + n_tokens) of `layer` (kvt_cache_read);
 * large reads are split into several requests. */
int kvt_client_cache_read(struct kvt_client_cache *cache, uint32_t layer,
			  uint64_t first, uint32_t n_tokens, void *k, void *v);

/*
 * Reads one raw block (kvt_cache_read_block) into dst (dst_len >=
 * kvt_block_bytes()). *n_tokens (may be NULL) gets its valid tokens.
 * A block replaced on the daemon while it was being copied is detected by
 * its checksum and read again. Errors: as kvt_cache_read_block,
 * KVT_ECORRUPT when the shared copy kept failing its checksum.
 */
int kvt_client_cache_read_block(struct kvt_client_cache *cache, uint32_t layer,
				uint64_t block, void *dst, size_t dst_len,
				uint32_t *n_tokens);

/* Current description and sizes of the cache (kvt_cache_get_info). */
int kvt_client_cache_get_info(struct kvt_client_cache *cache,
			      struct kvt_cache_info *out);

/* Lists the daemon's caches (kvt_store_list): *out is malloc'd (NULL when
 * *n is 0), the caller frees it. */
int kvt_client_list(struct kvt_client *cl, struct kvt_cache_info **out,
		    size_t *n);

/* Statistics of the daemon's store (kvt_store_stats). */
int kvt_client_stats(struct kvt_client *cl, struct kvt_stats *out);

/*
 * Block selection on the daemon (kvt_retrieve of retrieval.h): the daemon
 * keeps a retrieval index per open cache handle, loaded from the cache's
 * metadata or built from its keys on first use (a damaged stored index is
 * rebuilt), and indexes appended tokens before each call. q: float32 [n_q_heads][n_queries][head_dim].
 * On success *out is a selection to release with kvt_selection_free().
 * Errors: as kvt_retrieve, KVT_ESHAPE (queries of the wrong size),
 * KVT_ETOOBIG (queries larger than a frame), -ENOTSUP (a daemon without
 * retrieval).
 */
int kvt_client_cache_retrieve(struct kvt_client_cache *cache, uint32_t layer,
			      const struct kvt_retrieve_params *p, const float *q,
			      struct kvt_selection *out);

/*
 * Snapshots through the daemon (kvtier/snapshot.h): the daemon itself
 * writes or reads the file, with its own file-system rights, so path is
 * resolved here to an absolute path (symlinks included; for a save the
 * directory must exist) and must mean the same file to the daemon. The
 * daemon serves these requests only to peers with its own uid (-EPERM
 * otherwise). opts (may be NULL): zstd_level and progress are used; the
 * progress callback runs in this thread as the daemon reports, its return
 * value is ignored (a save or load cannot be cancelled from here).
 * Errors: those of kvt_snapshot_save / kvt_snapshot_load as the daemon
 * returns them, -errno from resolving path, -ENAMETOOLONG, and the
 * client errors above.
 */
int kvt_client_snapshot_save(struct kvt_client *cl, const char *name,
			     const char *path, const struct kvt_snapshot_opts *opts,
			     struct kvt_snapshot_info *info);

int kvt_client_snapshot_load(struct kvt_client *cl, const char *path,
			     const char *as_name,
			     const struct kvt_snapshot_opts *opts,
			     struct kvt_snapshot_info *info);

#ifdef __cplusplus
}
#endif

#endif /* KVTIER_CLIENT_H */
