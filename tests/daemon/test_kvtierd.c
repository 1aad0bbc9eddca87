/*
 * test_kvtierd.c - the kvtierd program (fork/exec of the built binary,
 * KVTIERD_PATH): start-up, detaching, config file, socket rules, shutdown
 * on SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "daemon_test.h"

static char sock[108];

static void setup(void)
{
	test_sock_path(sock, sizeof sock, "kvtierd");
	unlink(sock);
}

TestSuite(kvtierd, .init = setup, .timeout = 30);

/* Starts kvtierd --foreground with extra arguments; stderr to /dev/null
 * unless keep_stderr. */
static pid_t start(const char *const *extra, int keep_stderr)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		const char *argv[16] = {KVTIERD_PATH, "--foreground", "--socket", sock};
		int n = 4;
		for (; extra && *extra && n < 15; extra++)
			argv[n++] = *extra;
		argv[n] = NULL;
		if (!keep_stderr) {
			int fd = open("/dev/null", O_WRONLY);
			dup2(fd, 2);
		}
		execv(KVTIERD_PATH, (char **)argv);
		_exit(127);
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Connects, retrying while the daemon starts. */
static struct kvt_client *connect_retry(void)
{
	struct kvt_client *cl = NULL;
	for (int i = 0; i < 3000; i++, usleep(1000))
		if (!kvt_client_connect(sock, &cl))
			return cl;
	cr_assert_fail("kvtierd did not come up on %s", sock);
	return NULL;
}

Test(kvtierd, help_and_bad_options)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		execl(KVTIERD_PATH, KVTIERD_PATH, "--help", (char *)NULL);
		_exit(127);
	}
	cr_assert_eq(wait_exit(pid), 0);
	const char *bad[] = {"--no-such-option", "1", NULL};
	cr_assert_eq(wait_exit(start(bad, 0)), 2);
	const char *bad_value[] = {"--host-bytes", "lots", NULL};
	cr_assert_eq(wait_exit(start(bad_value, 0)), 2);
}

Test(kvtierd, serves_and_stops_on_sigterm)
{
	pid_t pid = start(NULL, 0);
	struct kvt_client *cl = connect_retry();
	struct stat st;
	cr_assert_eq(stat(sock, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	struct kvt_stats s;
	cr_assert_eq(kvt_client_stats(cl, &s), 0);
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid), 0);
	cr_assert_eq(access(sock, F_OK), -1, "socket left behind");
	/* The connected client sees the daemon go. */
	cr_assert_neq(kvt_client_stats(cl, &s), 0);
	kvt_client_close(cl);
}

Test(kvtierd, a_live_socket_is_an_error_a_stale_one_is_replaced)
{
	pid_t first = start(NULL, 0);
	struct kvt_client *cl = connect_retry();
	kvt_client_close(cl);
	cr_assert_eq(wait_exit(start(NULL, 0)), 1); /* address in use */
	kill(first, SIGKILL);                        /* leaves a stale socket */
	wait_exit(first);
	cr_assert_eq(access(sock, F_OK), 0);
	pid_t second = start(NULL, 0);
	cl = connect_retry();
	kvt_client_close(cl);
	kill(second, SIGINT);
	cr_assert_eq(wait_exit(second), 0);
}

Test(kvtierd, config_file_and_flags)
{
	char conf[128];
	snprintf(conf, sizeof conf, "%s.conf", sock);
	FILE *f = fopen(conf, "w");
	fprintf(f, "# kvtierd settings\nmax_clients = 1\nhost-bytes = 64M\n"
		   "log_level = error\n");
	fclose(f);
	const char *args[] = {"--config", conf, NULL};
	pid_t pid = start(args, 0);
	struct kvt_client *cl = connect_retry(), *second;
	cr_assert_eq(kvt_client_connect(sock, &second), -EUSERS);
	kvt_client_close(cl);
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid), 0);

	f = fopen(conf, "w");
	fprintf(f, "max_clients = 1\nnot_a_key = 3\n");
	fclose(f);
	cr_assert_eq(wait_exit(start(args, 0)), 2);
	unlink(conf);
}

Test(kvtierd, detaches_once_the_socket_is_ready)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		execl(KVTIERD_PATH, KVTIERD_PATH, "--socket", sock, (char *)NULL);
		_exit(127);
	}
	cr_assert_eq(wait_exit(pid), 0);
	/* The parent returned only after the daemon listened: no retry. */
	struct kvt_client *cl;
	cr_assert_eq(kvt_client_connect(sock, &cl), 0);
	kvt_client_close(cl);
	/* Find the detached daemon through the socket's peer credentials. */
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	struct ucred cred;
	socklen_t len = sizeof cred;
	cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
	close(fd);
	cr_assert_eq(kill(cred.pid, SIGTERM), 0);
	for (int i = 0; i < 3000 && !access(sock, F_OK); i++)
		usleep(1000);
	cr_assert_eq(access(sock, F_OK), -1);
}

/* Runs `kvtier ARGS... --socket sock`; stdout into out (cap bytes).
 * Returns the exit status. */
static int run_cli(char *out, size_t cap, const char *a1, const char *a2)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		execl(KVTIER_CLI_PATH, KVTIER_CLI_PATH, a1, "--socket", sock, a2,
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n + 1 < cap && (r = read(p[0], out + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(p[0]);
	return wait_exit(pid);
}

Test(kvtierd, cli_commands_talk_to_the_daemon)
{
	pid_t pid = start(NULL, 0);
	struct kvt_client *cl = connect_retry();
	struct kvt_cache_config cfg;
	struct kvt_client_cache *c;
	memset(&cfg, 0, sizeof cfg); /* raw codec; no store library linked here */
	cfg.shape = (struct kvt_shape){3, 2, 32, 16, KVT_DTYPE_F16};
	cfg.recent_tokens = 128;
	cr_assert_eq(kvt_client_cache_create(cl, "novel-42", &cfg, &c), 0);
	uint16_t k[2 * 20 * 32] = {0}, v[2 * 20 * 32] = {0};
	cr_assert_eq(kvt_client_cache_append(c, 0, 20, k, v), 0);
	kvt_client_cache_close(c);

	char out[4096];
	cr_assert_eq(run_cli(out, sizeof out, "ls", NULL), 0);
	cr_assert(strstr(out, "novel-42"), "ls printed: %s", out);
	cr_assert_eq(run_cli(out, sizeof out, "info", "novel-42"), 0);
	cr_assert(strstr(out, "3 layers, 2 kv heads, head dim 32"), "info: %s", out);
	cr_assert(strstr(out, "tokens        20"), "info: %s", out);
	cr_assert_eq(run_cli(out, sizeof out, "stats", NULL), 0);
	cr_assert(strstr(out, "caches      1"), "stats: %s", out);
	cr_assert_eq(run_cli(out, sizeof out, "drop", "novel-42"), 0);
	cr_assert_eq(run_cli(out, sizeof out, "info", "novel-42"), 1);
	cr_assert_eq(run_cli(out, sizeof out, "drop", "novel-42"), 1);
	cr_assert_eq(run_cli(out, sizeof out, "ls", "extra-operand"), 2);
	kvt_client_close(cl);
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid), 0);
	/* No daemon: a clear failure, not a hang. */
	cr_assert_eq(run_cli(out, sizeof out, "ls", NULL), 1);
}
