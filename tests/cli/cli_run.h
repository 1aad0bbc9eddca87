/* cli_run.h - running the kvtier command line from a test: paths in the
 * test's directory, a shell command's exit status, a file's text. */
#ifndef KVTIER_TESTS_CLI_RUN_H
#define KVTIER_TESTS_CLI_RUN_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* dir/name in one of 8 rotating buffers (so a call may use several). */
static inline char *cli_path(const char *dir, const char *name)
{
	static char buf[8][600];
	static int i;
	i = (i + 1) % 8;
	snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
	return buf[i];
}

/* Runs cmd through the shell: its exit status, -1 if it did not exit. */
static inline int cli_system(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The first cap - 1 bytes of file path into buf, NUL-terminated (empty
 * when the file cannot be read). */
static inline void cli_slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
	buf[n] = 0;
	if (f)
		fclose(f);
}

#endif
