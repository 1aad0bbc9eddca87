/*
 * qa_demo as a program: a short QA session against a real kvtierd (blocks
 * spill to its disk tier, retrieval runs in the daemon), and clear errors
 * for a missing model, an absent daemon and bad options.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_fixture.h"

TestSuite(llm_demo, .timeout = 600);

/* Runs a shell command, returns its exit status and its output (malloc'd). */
static int run(const char *cmd, char **out)
{
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap);
	while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
		n += got;
		if (n + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[n] = 0;
	int st = pclose(p);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static pid_t start_daemon(const char *dir, const char *sock)
{
	char data[4200];
	snprintf(data, sizeof(data), "%s/data", dir);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execl(KVTIERD_PATH, KVTIERD_PATH, "--foreground", "--socket", sock, "--data-dir",
		      data, "--host-bytes", "2M", "--log-level", "error", (char *)NULL);
		_exit(127);
	}
	struct stat st;
	for (int i = 0; i < 5000 && stat(sock, &st) != 0; i++)
		usleep(1000);
	cr_assert_eq(stat(sock, &st), 0, "kvtierd did not create %s", sock);
	return pid;
}

Test(llm_demo, answers_through_kvtierd)
{
	char model[4096], dir[] = "/tmp/kvt_demo_XXXXXX", sock[4200], cmd[9000], *out;
	fetch_model(model, sizeof(model));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/s", dir);
	pid_t d = start_daemon(dir, sock);
	snprintf(cmd, sizeof(cmd),
		 "%s --model %s --socket %s --tokens 1100 --questions 2 --max-new 6 2>&1",
		 QA_DEMO_PATH, model, sock);
	int rc = run(cmd, &out);
	kill(d, SIGTERM);
	int st;
	waitpid(d, &st, 0);
	cr_expect_eq(rc, 0, "qa_demo failed:\n%s", out);
	cr_expect(strstr(out, "store in kvtierd"), "%s", out);
	cr_expect(strstr(out, "retrieval clusterkv (in kvtierd)"), "%s", out);
	cr_expect(strstr(out, "\nQ2 ") && strstr(out, "\nA: "), "%s", out);
	cr_expect(strstr(out, " disk "), "no block spilled to disk:\n%s", out);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "kvtierd did not exit cleanly");
	free(out);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_expect_eq(system(cmd), 0);
}

Test(llm_demo, clear_errors)
{
	char *out;
	cr_expect_eq(run(QA_DEMO_PATH " --help", &out), 0);
	cr_expect(strstr(out, "usage: qa_demo"));
	free(out);
	cr_expect_eq(run(QA_DEMO_PATH " --bits 3 2>&1", &out), 2);
	cr_expect(strstr(out, "usage: qa_demo"));
	free(out);
	cr_expect_eq(run(QA_DEMO_PATH " --model /nonexistent.gguf 2>&1", &out), 1);
	cr_expect(strstr(out, "/nonexistent.gguf") && strstr(out, "fetch_model.sh"), "%s", out);
	free(out);
	char model[4096], cmd[8300];
	fetch_model(model, sizeof(model));
	snprintf(cmd, sizeof(cmd), "%s --model %s --socket /nonexistent/kvt.sock 2>&1",
		 QA_DEMO_PATH, model);
	cr_expect_eq(run(cmd, &out), 1);
	cr_expect(strstr(out, "cannot reach kvtierd at /nonexistent/kvt.sock"), "%s", out);
	free(out);
}
