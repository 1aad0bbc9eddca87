/* server_internal.h - state shared by server.c and session.c. */
#ifndef KVTIER_DAEMON_SERVER_INTERNAL_H
#define KVTIER_DAEMON_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "server.h"

struct kvt_session {
	struct kvt_server *srv;
	struct kvt_session *next; /* in srv->sessions, under srv->lock */
	pthread_t thread;
	int sock;
	atomic_int done;          /* the thread has released everything but
	                             sock and this struct */
	uint64_t id;
	pid_t pid;
	uid_t uid;
	struct kvt_session_state *st; /* owned by the session thread */
};

struct kvt_server {
	struct kvt_store *store;
	struct kvt_server_config cfg;
	char *path;
	int listen_fd;
	int wake_fd;              /* eventfd: stop requested or a session ended */
	atomic_int stopping;
	pthread_mutex_t lock;
	struct kvt_session *sessions;
	uint32_t n_sessions;
	uint64_t next_id;
};

/* Thread entry of a session: serves requests until the peer leaves or the
 * socket is shut down, releases the session's resources, sets done and
 * wakes the server so it joins the thread and closes the socket. */
void *kvt_session_main(void *arg);

#endif
