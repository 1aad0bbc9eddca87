/* server.c - socket setup, accept loop and session lifetimes of kvtierd. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "server_internal.h"
#include "wire.h"

void kvt_server_config_init(struct kvt_server_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->max_clients = 64;
	cfg->max_frame = KVT_PROTO_MAX_PAYLOAD;
	cfg->max_inline = 256u << 10;
	cfg->max_open_caches = 64;
	cfg->max_inflight = 64ull << 20;
	cfg->frame_timeout_ms = 30000;
	cfg->stop_fd = -1;
}

static int config_check(const struct kvt_server_config *cfg)
{
	if (!cfg->socket_path || !cfg->socket_path[0] || !cfg->max_clients ||
	    !cfg->max_open_caches || !cfg->max_inflight ||
	    cfg->max_frame > KVT_PROTO_MAX_PAYLOAD ||
	    cfg->max_frame < 4096 || cfg->max_inline > cfg->max_frame - 64 ||
	    cfg->n_allow_uids > KVT_SERVER_MAX_IDS ||
	    cfg->n_allow_gids > KVT_SERVER_MAX_IDS)
		return -EINVAL;
	return 0;
}

static int make_addr(const char *path, struct sockaddr_un *addr)
{
	memset(addr, 0, sizeof *addr);
	addr->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof addr->sun_path)
		return -ENAMETOOLONG;
	strcpy(addr->sun_path, path);
	return 0;
}

/* A socket file nobody accepts on is left over from a dead daemon. */
static int clear_stale(const struct sockaddr_un *addr)
{
	struct stat st;
	if (lstat(addr->sun_path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
	int err = errno;
	close(fd);
	if (rc == 0)
		return -EADDRINUSE;
	if (err != ECONNREFUSED)
		return -err;
	return unlink(addr->sun_path) ? -errno : 0;
}

static int listen_on(const char *path, int *out)
{
	struct sockaddr_un addr;
	int rc = make_addr(path, &addr);
	if (!rc)
		rc = clear_stale(&addr);
	if (rc)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* chmod right after bind; the window before it is covered by the
	 * SO_PEERCRED check every connection goes through. */
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) ||
	    chmod(path, 0600) || listen(fd, 64)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

int kvt_server_create(struct kvt_store *store,
		      const struct kvt_server_config *cfg,
		      struct kvt_server **out)
{
	if (!store || !cfg || config_check(cfg))
		return -EINVAL;
	struct kvt_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return -ENOMEM;
	srv->store = store;
	srv->cfg = *cfg;
	srv->listen_fd = -1;
	srv->path = strdup(cfg->socket_path);
	srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&srv->lock, NULL);
	int rc = !srv->path ? -ENOMEM : srv->wake_fd < 0 ? -errno : 0;
	if (!rc)
		rc = listen_on(srv->path, &srv->listen_fd);
	if (rc) {
		kvt_server_destroy(srv);
		return rc;
	}
	srv->cfg.socket_path = srv->path;
	*out = srv;
	return 0;
}

static void wake(struct kvt_server *srv)
{
	uint64_t one = 1;
	ssize_t n = write(srv->wake_fd, &one, sizeof one);
	(void)n; /* a full counter already means "wake up" */
}

void kvt_server_stop(struct kvt_server *srv)
{
	atomic_store(&srv->stopping, 1);
	wake(srv);
}

uint32_t kvt_server_clients(struct kvt_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	uint32_t n = srv->n_sessions;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

static int peer_allowed(const struct kvt_server *srv, const struct ucred *c)
{
	if (c->uid == getuid())
		return 1;
	for (size_t i = 0; i < srv->cfg.n_allow_uids; i++)
		if (c->uid == srv->cfg.allow_uids[i])
			return 1;
	for (size_t i = 0; i < srv->cfg.n_allow_gids; i++)
		if (c->gid == srv->cfg.allow_gids[i])
			return 1;
	return 0;
}

/* Sends an error frame to a connection we are about to refuse. */
static void refuse(int sock, int code, const char *why)
{
	struct kvt_msg_error e = {.code = code};
	snprintf(e.message, sizeof e.message, "%s", why);
	struct kvt_wbuf w;
	kvt_wbuf_init(&w);
	kvt_frame_begin(&w);
	kvt_enc_error(&w, &e);
	if (!kvt_frame_end(&w, KVT_OP_ERROR, KVT_PF_REPLY, 0))
		kvt_wire_send(sock, w.data, w.len, -1);
	kvt_wbuf_free(&w);
	close(sock);
}

static int start_session(struct kvt_server *srv, int sock,
			 const struct ucred *cred)
{
	struct kvt_session *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->srv = srv;
	s->sock = sock;
	s->pid = cred->pid;
	s->uid = cred->uid;
	pthread_mutex_lock(&srv->lock);
	s->id = ++srv->next_id;
	int rc = -pthread_create(&s->thread, NULL, kvt_session_main, s);
	if (!rc) {
		s->next = srv->sessions;
		srv->sessions = s;
		srv->n_sessions++;
	}
	pthread_mutex_unlock(&srv->lock);
	if (rc)
		free(s);
	return rc;
}

static void accept_one(struct kvt_server *srv)
{
	const struct kvt_log *log = srv->cfg.log;
	int sock = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (sock < 0) {
		if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
			kvt_log(log, KVT_LOG_WARN, "accept: %s", strerror(errno));
		return;
	}
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		close(sock);
		return;
	}
	if (!peer_allowed(srv, &cred)) {
		kvt_log(log, KVT_LOG_WARN, "refused pid %d uid %u gid %u",
			(int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
		refuse(sock, -EACCES, "peer uid/gid not allowed");
		return;
	}
	if (kvt_server_clients(srv) >= srv->cfg.max_clients) {
		kvt_log(log, KVT_LOG_WARN, "refused pid %d: %u clients",
			(int)cred.pid, srv->cfg.max_clients);
		refuse(sock, -EUSERS, "too many clients");
		return;
	}
	uint32_t ms = srv->cfg.frame_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (ms)
		setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int rc = start_session(srv, sock, &cred);
	if (rc)
		refuse(sock, rc, "cannot start a session");
}

/* Joins and frees the sessions whose thread has finished (all of them
 * when all is set, after shutting their sockets down). */
static void reap(struct kvt_server *srv, int all)
{
	pthread_mutex_lock(&srv->lock);
	if (all)
		for (struct kvt_session *s = srv->sessions; s; s = s->next)
			shutdown(s->sock, SHUT_RDWR);
	struct kvt_session **pp = &srv->sessions;
	while (*pp) {
		struct kvt_session *s = *pp;
		if (!all && !atomic_load(&s->done)) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		pthread_mutex_unlock(&srv->lock);
		pthread_join(s->thread, NULL);
		close(s->sock);
		free(s);
		pthread_mutex_lock(&srv->lock);
		/* Counted down only now, so a session that is counted out holds
		 * no descriptor any more. */
		srv->n_sessions--;
	}
	pthread_mutex_unlock(&srv->lock);
}

int kvt_server_run(struct kvt_server *srv)
{
	int rc = 0;
	kvt_log(srv->cfg.log, KVT_LOG_INFO, "listening on %s", srv->path);
	while (!atomic_load(&srv->stopping)) {
		struct pollfd p[3] = {
			{.fd = srv->listen_fd, .events = POLLIN},
			{.fd = srv->wake_fd, .events = POLLIN},
			{.fd = srv->cfg.stop_fd, .events = POLLIN},
		};
		if (poll(p, srv->cfg.stop_fd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (p[1].revents) {
			uint64_t v;
			ssize_t n = read(srv->wake_fd, &v, sizeof v);
			(void)n;
			reap(srv, 0);
		}
		if (srv->cfg.stop_fd >= 0 && p[2].revents)
			break;
		if (p[0].revents & POLLIN)
			accept_one(srv);
	}
	kvt_log(srv->cfg.log, KVT_LOG_INFO, "stopping: %u clients",
		kvt_server_clients(srv));
	reap(srv, 1);
	return rc;
}

void kvt_server_destroy(struct kvt_server *srv)
{
	if (!srv)
		return;
	reap(srv, 1);
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		unlink(srv->path);
	}
	if (srv->wake_fd >= 0)
		close(srv->wake_fd);
	pthread_mutex_destroy(&srv->lock);
	free(srv->path);
	free(srv);
}
