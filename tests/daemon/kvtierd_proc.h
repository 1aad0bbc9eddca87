/* kvtierd_proc.h - the real kvtierd as a child process for tests: start it
 * on a socket and data dir (stderr to /dev/null),
 * connect once it is up, stop it with SIGTERM expecting a clean exit. */
#ifndef KVTIER_TESTS_KVTIERD_PROC_H
#define KVTIER_TESTS_KVTIERD_PROC_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvtier/client.h"

/* Starts kvtierd on sock and data dir dir with the options in extra
 * (NULL-terminated, up to 8). */
static inline pid_t kvtierd_spawn(const char *sock, const char *dir,
				  const char *const *extra)
{
	const char *argv[16] = {KVTIERD_PATH, "--foreground", "--socket", sock,
				"--data-dir", dir};
	int n = 6;
	for (int i = 0; extra && extra[i] && n < 15; i++)
		argv[n++] = extra[i];
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		execv(KVTIERD_PATH, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* With a 64 MiB host budget. */
static inline pid_t kvtierd_start(const char *sock, const char *dir)
{
	static const char *const host[] = {"--host-bytes", "64M", NULL};
	return kvtierd_spawn(sock, dir, host);
}

static inline struct kvt_client *kvtierd_connect(const char *sock)
{
	struct kvt_client *cl = NULL;
	for (int i = 0; i < 5000; i++, usleep(1000))
		if (!kvt_client_connect(sock, &cl))
			return cl;
	cr_assert_fail("kvtierd did not come up");
	return NULL;
}

static inline void kvtierd_stop(pid_t pid)
{
	int st;
	cr_assert_eq(kill(pid, SIGTERM), 0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

#endif
