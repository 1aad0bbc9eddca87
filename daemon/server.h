/*
 * server.h - the kvtierd server: serves one kvt_store on a Unix socket.
 *
 * Concurrency model: one thread per connected client, at most max_clients
 * at once (further connections get an error frame and are closed). A client
 * issues one request at a time, so a thread per client keeps each session a
 * plain sequence of blocking reads and store calls (the store serialises
 * internally), and a client that dies mid-request only ends its own thread,
 * whose cleanup releases everything the session held: cache handles,
 * descriptors, staging memory. The accept loop runs in the caller's thread
 * (kvt_server_run) and polls the listening socket plus a wake-up eventfd.
 */
#ifndef KVTIER_DAEMON_SERVER_H
#define KVTIER_DAEMON_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kvtier/kvtier.h"
#include "log.h"

#define KVT_SERVER_MAX_IDS 16

struct kvt_server_config {
	const char *socket_path;   /* copied; required */
	uint32_t max_clients;      /* concurrent connections (default 64) */
	uint32_t max_frame;        /* request payload bound (default 16 MiB) */
	uint32_t max_inline;       /* K+V bytes an append may carry inline
	                              (default 256 KiB) */
	uint32_t max_open_caches;  /* cache handles per client (default 64) */
	uint32_t frame_timeout_ms; /* a started frame must arrive within this
	                              (default 30000; 0: no limit), so a peer
	                              stuck mid-frame cannot hold a session */
	uint64_t max_inflight;     /* bytes one request may move through shared
	                              memory: size of the client's staging memfd
	                              and bound of an fd append (default 64 MiB) */
	uid_t allow_uids[KVT_SERVER_MAX_IDS]; /* besides the daemon's own uid */
	size_t n_allow_uids;
	gid_t allow_gids[KVT_SERVER_MAX_IDS]; /* peers with this primary gid */
	size_t n_allow_gids;
	int stop_fd;               /* run returns when readable (e.g. a
	                              signalfd); -1 for none */
	const struct kvt_log *log; /* NULL: warnings to stderr */
};

void kvt_server_config_init(struct kvt_server_config *cfg);

struct kvt_server;

/*
 * Binds cfg->socket_path (mode 0600). An existing socket file nobody
 * listens on is stale and replaced; one with a live listener gives
 * -EADDRINUSE; a non-socket file there gives -EEXIST. The server borrows
 * store, which must outlive it. Errors: -EINVAL, -ENAMETOOLONG, -ENOMEM,
 * -errno.
 */
int kvt_server_create(struct kvt_store *store,
		      const struct kvt_server_config *cfg,
		      struct kvt_server **out);

/* Accepts and serves clients until kvt_server_stop() or stop_fd fires;
 * then disconnects every client, waits for their threads and returns 0
 * (or -errno when the accept loop failed). */
int kvt_server_run(struct kvt_server *srv);

/* Asks run to return. Async-signal-safe, callable from any thread. */
void kvt_server_stop(struct kvt_server *srv);

/* Number of connected clients (for tests and stats). */
uint32_t kvt_server_clients(struct kvt_server *srv);

/* Closes the socket, unlinks its path and frees the server (not the
 * store). Must not race with run. NULL is a no-op. */
void kvt_server_destroy(struct kvt_server *srv);

#endif
