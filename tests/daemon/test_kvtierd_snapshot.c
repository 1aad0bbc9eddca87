/*
 * test_kvtierd_snapshot.c - snapshots through the real kvtierd
 * (KVTIERD_PATH, disk tier): the daemon writes and reads the files, paths
 * are made absolute by the client, progress arrives as interim frames,
 * errors come back with the store left as it was, a loaded cache
 * survives a restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "daemon_test.h"
#include "kvtier/snapshot.h"
#include "kvtierd_proc.h"

static const struct kvt_shape shape = {2, 2, 64, 16, KVT_DTYPE_F16};
#define TOKENS 1500u /* 93 full blocks and a partial one per layer */

static char sock[108], dir[160], files[200];

static void fill(struct kvt_client *cl, const char *name)
{
	struct kvt_cache_config cfg;
	struct kvt_client_cache *c;
	kvt_cache_config_init(&cfg);
	cfg.shape = shape;
	cr_assert_eq(kvt_client_cache_create(cl, name, &cfg, &c), 0);
	static uint16_t k[2 * TOKENS * 64], v[2 * TOKENS * 64];
	for (uint32_t l = 0; l < shape.n_layers; l++) {
		test_fill(&shape, l, 0, TOKENS, k, v);
		cr_assert_eq(kvt_client_cache_append(c, l, TOKENS, k, v), 0);
	}
	kvt_client_cache_close(c);
}

/* Every token of `name` is what fill() appended. */
static void check(struct kvt_client *cl, const char *name)
{
	struct kvt_client_cache *c;
	struct kvt_cache_info info;
	cr_assert_eq(kvt_client_cache_open(cl, name, &c), 0, "open %s", name);
	cr_assert_eq(kvt_client_cache_get_info(c, &info), 0);
	cr_assert_eq(info.n_tokens, TOKENS);
	static uint16_t k[2 * TOKENS * 64], v[2 * TOKENS * 64];
	static uint16_t wk[2 * TOKENS * 64], wv[2 * TOKENS * 64];
	for (uint32_t l = 0; l < shape.n_layers; l++) {
		cr_assert_eq(kvt_client_cache_read(c, l, 0, TOKENS, k, v), 0);
		test_fill(&shape, l, 0, TOKENS, wk, wv);
		cr_assert_eq(memcmp(k, wk, sizeof k), 0, "%s layer %u K", name, l);
		cr_assert_eq(memcmp(v, wv, sizeof v), 0, "%s layer %u V", name, l);
	}
	kvt_client_cache_close(c);
}

static size_t n_caches(struct kvt_client *cl)
{
	struct kvt_cache_info *list;
	size_t n;
	cr_assert_eq(kvt_client_list(cl, &list, &n), 0);
	free(list);
	return n;
}

struct seen {
	int calls;
	uint64_t last_done, last_total;
};

static int on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct seen *s = ctx;
	cr_assert_leq(done, total);
	cr_assert_geq(done, s->last_done);
	s->calls++;
	s->last_done = done;
	s->last_total = total;
	return 0;
}

static void setup(void)
{
	test_sock_path(sock, sizeof sock, "snap");
	snprintf(dir, sizeof dir, "%s.d", sock);
	snprintf(files, sizeof files, "%s.files", sock);
	char cmd[600];
	unlink(sock);
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, files); /* an earlier run's */
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(mkdir(dir, 0700), 0);
	cr_assert_eq(mkdir(files, 0700), 0);
}

Test(kvtierd_snapshot, save_load_through_the_daemon, .init = setup, .timeout = 120)
{
	char path[300], rel[300];
	pid_t pid = kvtierd_start(sock, dir);
	struct kvt_client *cl = kvtierd_connect(sock);
	fill(cl, "doc");
	snprintf(path, sizeof path, "%s/doc.kvs", files);

	struct seen seen = {0};
	struct kvt_snapshot_opts o = {.progress = on_progress, .progress_ctx = &seen};
	struct kvt_snapshot_info info;
	cr_assert_eq(kvt_client_snapshot_save(cl, "doc", path, &o, &info), 0);
	cr_assert_geq(seen.calls, 2, "progress frames: %d", seen.calls);
	cr_assert_eq(seen.last_done, seen.last_total);
	cr_assert_eq(info.n_tokens, TOKENS);
	cr_assert_eq(info.n_blocks, 2 * 94);
	struct kvt_snapshot_info local;
	cr_assert_eq(kvt_snapshot_inspect(path, NULL, &local), 0);
	cr_assert_eq(local.file_bytes, info.file_bytes);
	cr_assert_str_eq(local.name, "doc");

	seen = (struct seen){0};
	cr_assert_eq(kvt_client_snapshot_load(cl, path, "copy", &o, &info), 0);
	cr_assert_geq(seen.calls, 2);
	check(cl, "copy");

	/* A relative path means the client's working directory. */
	cr_assert_eq(chdir(files), 0);
	cr_assert_eq(kvt_client_snapshot_save(cl, "copy", "rel.kvs", NULL, NULL), 0);
	snprintf(rel, sizeof rel, "%s/rel.kvs", files);
	cr_assert_eq(access(rel, R_OK), 0);
	cr_assert_eq(kvt_client_snapshot_load(cl, "./rel.kvs", "copy2", NULL, NULL), 0);
	check(cl, "copy2");
	kvt_client_close(cl);
	kvtierd_stop(pid);

	pid = kvtierd_start(sock, dir); /* loaded caches are durable */
	cl = kvtierd_connect(sock);
	check(cl, "copy");
	check(cl, "copy2");
	kvt_client_close(cl);
	kvtierd_stop(pid);
}

Test(kvtierd_snapshot, errors_leave_the_store_as_it_was, .init = setup,
     .timeout = 120)
{
	char path[300], bad[300], missing[300];
	pid_t pid = kvtierd_start(sock, dir);
	struct kvt_client *cl = kvtierd_connect(sock);
	fill(cl, "doc");
	snprintf(path, sizeof path, "%s/doc.kvs", files);
	snprintf(bad, sizeof bad, "%s/bad.kvs", files);
	snprintf(missing, sizeof missing, "%s/no/such/dir/x.kvs", files);
	cr_assert_eq(kvt_client_snapshot_save(cl, "doc", path, NULL, NULL), 0);
	size_t before = n_caches(cl);

	cr_assert_eq(kvt_client_snapshot_load(cl, path, NULL, NULL, NULL), KVT_EEXIST);
	cr_assert_eq(kvt_client_snapshot_save(cl, "nope", path, NULL, NULL), KVT_ENOTFOUND);
	cr_assert_eq(kvt_client_snapshot_save(cl, "doc", missing, NULL, NULL), -ENOENT);
	cr_assert_eq(kvt_client_snapshot_load(cl, missing, "x", NULL, NULL), -ENOENT);
	cr_assert_eq(kvt_client_snapshot_load(cl, path, ".x", NULL, NULL), -EINVAL);

	/* A damaged copy: one byte flipped in the middle of the blocks. */
	int in = open(path, O_RDONLY), out = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	static uint8_t buf[1 << 20];
	ssize_t n = read(in, buf, sizeof buf);
	cr_assert_gt(n, 10000);
	buf[n / 2] ^= 0x10;
	cr_assert_eq(write(out, buf, (size_t)n), n);
	while ((n = read(in, buf, sizeof buf)) > 0)
		cr_assert_eq(write(out, buf, (size_t)n), n);
	close(in), close(out);
	cr_assert_eq(kvt_client_snapshot_load(cl, bad, "victim", NULL, NULL), KVT_ECORRUPT);
	cr_assert_eq(truncate(bad, 5000), 0);
	cr_assert_eq(kvt_client_snapshot_load(cl, bad, "victim", NULL, NULL), KVT_EFORMAT);
	cr_assert_eq(n_caches(cl), before);
	struct kvt_stats s;
	cr_assert_eq(kvt_client_stats(cl, &s), 0);
	cr_assert_eq(s.n_caches, before, "a hidden cache stayed");
	check(cl, "doc");
	kvt_client_close(cl);
	kvtierd_stop(pid);
}

/* Child: as uid 65534, asks for a save and a load; 0 when both are
 * refused with -EPERM. */
static int snapshot_as_nobody(const char *path)
{
	struct kvt_client *cl = NULL;
	if (setgid(65534) || setuid(65534))
		return 99;
	for (int i = 0; i < 5000 && kvt_client_connect(path, &cl); i++)
		usleep(1000);
	if (!cl)
		return 98;
	int a = kvt_client_snapshot_save(cl, "doc", "/tmp/kvt-nobody.kvs", NULL, NULL);
	int b = kvt_client_snapshot_load(cl, "/etc/hostname", "x", NULL, NULL);
	kvt_client_close(cl);
	return a == -EPERM && b == -EPERM ? 0 : 1;
}

Test(kvtierd_snapshot, other_uids_may_not_make_the_daemon_touch_files,
     .init = setup, .timeout = 60)
{
	if (getuid() != 0)
		cr_skip_test("needs root to connect as another uid");
	snprintf(sock, sizeof sock, "/tmp/kvt-snap-peer-%d.sock", (int)getpid());
	unlink(sock);
	static const char *const nobody[] = {"--allow-uid", "65534", NULL};
	pid_t pid = kvtierd_spawn(sock, dir, nobody);
	struct kvt_client *cl = kvtierd_connect(sock);
	fill(cl, "doc");
	cr_assert_eq(chmod(sock, 0666), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0)
		_exit(snapshot_as_nobody(sock));
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	cr_assert_eq(access("/tmp/kvt-nobody.kvs", F_OK), -1);
	kvt_client_close(cl);
	kvtierd_stop(pid);
	unlink(sock);
}
