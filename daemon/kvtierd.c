/* kvtierd.c - the kvtier daemon: owns a store and serves it on a socket. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "config.h"
#include "server.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvtierd [OPTIONS]\n\n"
		"Serves a kvtier store to local processes on a Unix socket.\n\n"
		"  --socket PATH        socket path (default $XDG_RUNTIME_DIR/kvtier.sock,\n"
		"                       else /tmp/kvtier-$UID.sock)\n"
		"  --data-dir DIR       disk tier directory (default: memory only)\n"
		"  --host-bytes N       host tier budget (K/M/G suffixes; default 1G)\n"
		"  --gpu-bytes N        GPU tier budget (default 0: none)\n"
		"  --disk-bytes N       disk tier budget (default 0: unlimited)\n"
		"  --config FILE        read `key = value` settings (same keys as the\n"
		"                       long options, '-' or '_'); flags win\n"
		"  --allow-uid UID      also accept peers with this uid (repeatable)\n"
		"  --allow-gid GID      also accept peers with this gid (repeatable)\n"
		"  --max-clients N      concurrent clients (default 64)\n"
		"  --max-open-caches N  open caches per client (default 64)\n"
		"  --max-inflight N     shared-memory bytes per request (default 64M)\n"
		"  --max-inline N       append bytes sent inline (default 256K)\n"
		"  --max-frame N        request frame bound (default 16M)\n"
		"  --frame-timeout-ms N a started frame must complete within N ms\n"
		"                       (default 30000; 0: no limit)\n"
		"  --foreground         stay in the foreground (default: detach once\n"
		"                       the socket is ready)\n"
		"  --log-level LEVEL    error, warn, info (default) or debug\n"
		"  -h, --help           this text\n\n"
		"Logs go to stderr. SIGTERM or SIGINT flushes the store and exits.\n");
}

/* Splits "--key=value" / "--key value"; returns the number of argv used. */
static int parse_flag(char **argv, int left, const char **key, const char **val,
		      char *buf, size_t cap)
{
	const char *a = argv[0] + 2;
	const char *eq = strchr(a, '=');
	if (eq) {
		snprintf(buf, cap, "%.*s", (int)(eq - a), a);
		*key = buf;
		*val = eq + 1;
		return 1;
	}
	*key = a;
	*val = left > 1 ? argv[1] : NULL;
	return 2;
}

/* Applies every flag; --config only records the file's path. */
static int apply_flags(struct kvtd_options *o, int argc, char **argv,
		       const char **config)
{
	for (int i = 1; i < argc;) {
		if (!strcmp(argv[i], "--foreground")) {
			o->foreground = 1;
			i++;
			continue;
		}
		if (strncmp(argv[i], "--", 2)) {
			fprintf(stderr, "kvtierd: unexpected argument '%s'\n", argv[i]);
			return -EINVAL;
		}
		char buf[64];
		const char *key, *val;
		i += parse_flag(argv + i, argc - i, &key, &val, buf, sizeof buf);
		if (!val) {
			fprintf(stderr, "kvtierd: --%s needs a value\n", key);
			return -EINVAL;
		}
		int rc = !strcmp(key, "config") ? (*config = val, 0)
						: kvtd_options_set(o, key, val);
		if (rc) {
			fprintf(stderr, "kvtierd: %s --%s '%s'\n",
				rc == -ENOENT ? "unknown option" : "bad value for",
				key, val);
			return rc;
		}
	}
	return 0;
}

static int parse_options(struct kvtd_options *o, int argc, char **argv)
{
	const char *config = NULL;
	kvtd_options_init(o);
	int rc = apply_flags(o, argc, argv, &config);
	if (rc || !config)
		return rc;
	int line;
	kvtd_options_init(o);
	rc = kvtd_options_load(o, config, &line);
	if (rc) {
		fprintf(stderr, "kvtierd: %s:%d: %s\n", config, line,
			rc == -ENOENT && line ? "unknown key" : kvt_strerror(rc));
		return rc;
	}
	return apply_flags(o, argc, argv, &config);
}

/* Serves until SIGTERM/SIGINT; ready_fd >= 0 gets one byte once serving. */
static int serve(struct kvtd_options *o, int sig_fd, int ready_fd)
{
	struct kvt_store *store;
	o->store.data_dir = o->data_dir[0] ? o->data_dir : NULL;
	int rc = kvt_store_open(&o->store, &store);
	if (rc) {
		kvt_log(&o->log, KVT_LOG_ERROR, "opening the store: %s",
			rc == KVT_EBUSY ? "its data directory is in use by another "
					  "process (another kvtierd, or an offline kvtier)"
					: kvt_strerror(rc));
		return rc;
	}
	struct kvt_server *srv;
	o->server.socket_path = o->socket;
	o->server.stop_fd = sig_fd;
	o->server.log = &o->log;
	rc = kvt_server_create(store, &o->server, &srv);
	if (rc) {
		kvt_log(&o->log, KVT_LOG_ERROR, "socket %s: %s", o->socket,
			kvt_strerror(rc));
		kvt_store_close(store);
		return rc;
	}
	if (ready_fd >= 0) {
		ssize_t n = write(ready_fd, "", 1);
		(void)n;
		close(ready_fd);
	}
	rc = kvt_server_run(srv);
	kvt_server_destroy(srv);
	int frc = kvt_store_flush(store);
	if (frc)
		kvt_log(&o->log, KVT_LOG_ERROR, "flush: %s", kvt_strerror(frc));
	kvt_store_close(store);
	kvt_log(&o->log, KVT_LOG_INFO, "store flushed and closed");
	return rc ? rc : frc;
}

/* Forks; the parent exits once the child reports the socket is ready. */
static int detach(int *ready_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		char c;
		_exit(read(p[0], &c, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	setsid();
	if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout))
		return -errno;
	*ready_fd = p[1];
	return 0;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		}
	}
	struct kvtd_options o;
	if (parse_options(&o, argc, argv))
		return 2;
	int ready_fd = -1;
	if (!o.foreground && detach(&ready_fd))
		return 1;
	/* Signals are blocked in every thread and read from a signalfd by the
	 * accept loop, so shutdown runs in ordinary code, not a handler. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	int sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sig_fd < 0) {
		perror("kvtierd: signalfd");
		return 1;
	}
	int rc = serve(&o, sig_fd, ready_fd);
	close(sig_fd);
	return rc ? 1 : 0;
}
