/*
 * test_cli_snapshot.c - `kvtier snapshot` as a user runs it: offline on a
 * data directory, through a running kvtierd, refused offline while the
 * daemon holds the directory, and clear failures on damaged files.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli_run.h"
#include "daemon/kvtierd_proc.h"
#include "kvtier/client.h"
#include "kvtier/snapshot.h"
#include "store/store_util.h"

static char dir[512];

static void setup(void)
{
	const char *t = getenv("KVT_TEST_TMP");
	mkdir(t ? t : "/tmp", 0755);
	char cmd[600];
	snprintf(dir, sizeof dir, "%s/cli-snap-%d", t ? t : "/tmp", getpid());
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir); /* an earlier run's */
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(mkdir(dir, 0700), 0);
}

static char *p(const char *name)
{
	return cli_path(dir, name);
}

/* Runs kvtier with args; returns the exit status, stdout and stderr. */
static int run(char *out, char *err, size_t cap, const char *fmt, ...)
{
	char args[2048], cmd[3072];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", KVT_CLI, args, p("stdout"),
		 p("stderr"));
	int st = cli_system(cmd);
	cli_slurp(p("stdout"), out, cap);
	cli_slurp(p("stderr"), err, cap);
	return st;
}

static const struct kvt_shape shape = {2, 2, 64, 16, KVT_DTYPE_F16};

/* A KIVI cache "doc" (raw recent window, a partial tail) with a metadata
 * blob, in a data directory of its own. */
static void make_store(const char *data_dir)
{
	struct kvt_store_config sc;
	struct kvt_store *st;
	struct kvt_cache_config cfg;
	struct kvt_cache *c;
	kvt_store_config_init(&sc);
	sc.data_dir = data_dir;
	cr_assert_eq(kvt_store_open(&sc, &st), 0);
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	kvt_codec_params_init(&cfg.cold, KVT_CODEC_KIVI);
	cfg.recent_tokens = 64;
	cr_assert_eq(kvt_cache_create(st, "doc", &cfg, &c), 0);
	uint16_t *k = tv_alloc(&shape, 300), *v = tv_alloc(&shape, 300);
	for (uint32_t l = 0; l < 2; l++) {
		tv_fill(&shape, l, 0, 300, k, v);
		cr_assert_eq(kvt_cache_append(c, l, 300, k, v), 0);
	}
	cr_assert_eq(kvt_cache_meta_put(c, "index", "abc", 3), 0);
	free(k), free(v);
	kvt_cache_close(c);
	kvt_store_close(st);
}

/* Cache `name` of the store in data_dir reads the same as "doc" of the
 * store in ref_dir, block for block. */
static void assert_same_offline(const char *ref_dir, const char *data_dir,
				const char *name)
{
	struct kvt_store_config sc;
	struct kvt_store *a, *b;
	struct kvt_cache *ca, *cb;
	kvt_store_config_init(&sc);
	sc.data_dir = ref_dir;
	cr_assert_eq(kvt_store_open(&sc, &a), 0);
	sc.data_dir = data_dir;
	b = a; /* one process, one store per data directory */
	if (strcmp(ref_dir, data_dir))
		cr_assert_eq(kvt_store_open(&sc, &b), 0);
	cr_assert_eq(kvt_cache_open(a, "doc", &ca), 0);
	cr_assert_eq(kvt_cache_open(b, name, &cb), 0, "no cache %s", name);
	size_t bb = kvt_block_bytes(&shape);
	uint8_t *x = malloc(bb), *y = malloc(bb);
	for (uint32_t l = 0; l < 2; l++)
		for (uint64_t blk = 0; blk * 16 < 300; blk++) {
			uint32_t n1, n2;
			cr_assert_eq(kvt_cache_read_block(ca, l, blk, x, bb, &n1), 0);
			cr_assert_eq(kvt_cache_read_block(cb, l, blk, y, bb, &n2), 0);
			cr_assert_eq(n1, n2);
			cr_assert_eq(memcmp(x, y, bb), 0);
		}
	void *m;
	size_t len;
	cr_assert_eq(kvt_cache_meta_get(cb, "index", &m, &len), 0);
	cr_assert_eq(len, 3);
	free(m), free(x), free(y);
	kvt_cache_close(ca), kvt_cache_close(cb);
	kvt_store_close(a);
	if (b != a)
		kvt_store_close(b);
}

TestSuite(cli_snapshot, .init = setup, .timeout = 120);

Test(cli_snapshot, help_and_usage_errors)
{
	char out[8192], err[8192];
	cr_assert_eq(run(out, err, sizeof out, "snapshot --help"), 0);
	cr_assert(strstr(out, "snapshot save NAME FILE"), "%s", out);
	cr_assert_eq(run(out, err, sizeof out, "snapshot"), 2);
	cr_assert_eq(run(out, err, sizeof out, "snapshot frobnicate x"), 2);
	cr_assert_eq(run(out, err, sizeof out, "snapshot save onlyname"), 2);
	cr_assert_eq(run(out, err, sizeof out, "snapshot load a b c"), 2);
	cr_assert_eq(run(out, err, sizeof out, "snapshot save a b --zstd 99"), 2);
	cr_assert_eq(run(out, err, sizeof out, "snapshot save a b --socket s --data-dir d"), 2);
	cr_assert_eq(run(out, err, sizeof out, "--help"), 0);
	cr_assert(strstr(out, "snapshot"), "main usage lists snapshot");
}

Test(cli_snapshot, offline_save_inspect_load)
{
	char out[8192], err[8192];
	make_store(p("a"));
	mkdir(p("b"), 0700);
	cr_assert_eq(run(out, err, sizeof out, "snapshot save doc %s --data-dir %s",
			 p("doc.kvs"), p("a")), 0, "%s", err);
	cr_assert(strstr(out, "saved doc: 300 tokens"), "%s", out);
	cr_assert_eq(run(out, err, sizeof out, "snapshot inspect %s --sections",
			 p("doc.kvs")), 0, "%s", err);
	cr_assert(strstr(out, "name          doc"), "%s", out);
	cr_assert(strstr(out, "cold codec    kivi, 2 bits"), "%s", out);
	cr_assert(strstr(out, "blocks        38"), "%s", out);
	cr_assert(strstr(out, "metadata      1 blobs"), "%s", out);
	cr_assert(strstr(out, "checksums     ok"), "%s", out);
	cr_assert(strstr(out, "  blocks  offset"), "%s", out);
	cr_assert_eq(run(out, err, sizeof out, "snapshot load %s --as copy --data-dir %s --progress --host-bytes 64K",
			 p("doc.kvs"), p("b")), 0, "%s", err);
	cr_assert(strstr(out, "loaded copy"), "%s", out);
	cr_assert(strstr(err, "100%"), "no progress: %s", err);
	assert_same_offline(p("a"), p("b"), "copy");

	cr_assert_eq(run(out, err, sizeof out, "snapshot load %s --as copy --data-dir %s",
			 p("doc.kvs"), p("b")), 1);
	cr_assert(strstr(err, "exists"), "%s", err);
	cr_assert_eq(run(out, err, sizeof out, "snapshot save doc %s --data-dir %s",
			 p("x.kvs"), p("nodir")), 1);
	cr_assert(strstr(err, "no such data directory"), "%s", err);
	cr_assert_eq(run(out, err, sizeof out, "snapshot save nope %s --data-dir %s",
			 p("x.kvs"), p("a")), 1);
	cr_assert_eq(access(p("x.kvs"), F_OK), -1);
}

Test(cli_snapshot, damaged_files_are_refused_clearly)
{
	char out[8192], err[8192];
	make_store(p("a"));
	cr_assert_eq(run(out, err, sizeof out, "snapshot save doc %s --data-dir %s --quiet",
			 p("doc.kvs"), p("a")), 0, "%s", err);
	cr_assert_eq(out[0], 0, "--quiet printed: %s", out);
	struct stat sb;
	cr_assert_eq(stat(p("doc.kvs"), &sb), 0);
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "cp %s %s && printf '\\377' | dd of=%s bs=1 seek=%lld "
		 "conv=notrunc 2>/dev/null", p("doc.kvs"), p("bad.kvs"), p("bad.kvs"),
		 (long long)sb.st_size / 2);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(run(out, err, sizeof out, "snapshot inspect %s", p("bad.kvs")), 1);
	cr_assert(strstr(err, "checksum mismatch"), "%s", err);
	cr_assert_eq(truncate(p("bad.kvs"), sb.st_size - 1), 0);
	cr_assert_eq(run(out, err, sizeof out, "snapshot load %s --as x --data-dir %s",
			 p("bad.kvs"), p("a")), 1);
	cr_assert(strstr(err, "not a complete kvtier snapshot"), "%s", err);
	cr_assert_eq(run(out, err, sizeof out, "snapshot inspect %s", p("none.kvs")), 1);
	cr_assert(strstr(err, "No such file"), "%s", err);
}

static pid_t start_daemon(const char *sock, const char *data_dir)
{
	pid_t pid = kvtierd_spawn(sock, data_dir, NULL);
	kvt_client_close(kvtierd_connect(sock));
	return pid;
}

Test(cli_snapshot, through_the_daemon_and_refused_offline_meanwhile)
{
	char out[8192], err[8192], sock[600];
	make_store(p("a"));
	snprintf(sock, sizeof sock, "%s/d.sock", dir);
	cr_assert_lt(strlen(sock), 108, "socket path too long: %s", sock);
	pid_t pid = start_daemon(sock, p("a"));

	cr_assert_eq(run(out, err, sizeof out, "snapshot save doc %s --data-dir %s",
			 p("off.kvs"), p("a")), 1);
	cr_assert(strstr(err, "in use by another process"), "%s", err);
	cr_assert_eq(access(p("off.kvs"), F_OK), -1);

	cr_assert_eq(run(out, err, sizeof out, "snapshot save doc %s --socket %s",
			 p("d.kvs"), sock), 0, "%s", err);
	cr_assert(strstr(out, "saved doc"), "%s", out);
	cr_assert_eq(run(out, err, sizeof out, "snapshot load %s --as viad --socket %s --progress",
			 p("d.kvs"), sock), 0, "%s", err);
	cr_assert(strstr(err, "loading: 100%"), "%s", err);
	cr_assert_eq(run(out, err, sizeof out, "snapshot load %s --socket %s",
			 p("d.kvs"), sock), 1);
	cr_assert(strstr(err, "exists"), "%s", err);
	cr_assert_eq(run(out, err, sizeof out, "ls --socket %s", sock), 0);
	cr_assert(strstr(out, "viad"), "%s", out);
	int st;
	kill(pid, SIGTERM);
	waitpid(pid, &st, 0);
	assert_same_offline(p("a"), p("a"), "viad");

	cr_assert_eq(run(out, err, sizeof out, "snapshot save doc %s --socket %s",
			 p("e.kvs"), sock), 1);
	cr_assert(strstr(err, "cannot reach kvtierd"), "%s", err);
}
