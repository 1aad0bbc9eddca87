/*
 * test_daemon.c - the server end to end over a temporary socket (server in
 * a thread of this process, clients in this process or forked children):
 * sharing a cache between processes, limits, stale sockets.
 */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "daemon_test.h"

static const struct kvt_shape shape = {4, 2, 64, 16, KVT_DTYPE_F16};
#define DOC_TOKENS 100u

static struct test_daemon d;

/* fake_store.c */
int fake_store_move_block(struct kvt_store *s, const char *name,
			  uint32_t layer, uint64_t block);

static void start(void)
{
	struct kvt_server_config cfg;
	kvt_server_config_init(&cfg);
	cfg.max_inline = 16u << 10;   /* larger appends take the memfd path */
	cfg.max_inflight = 32u << 10; /* and are split into several requests */
	cfg.max_open_caches = 4;
	cfg.max_clients = 8;
	test_daemon_start(&d, &cfg, "daemon");
}

static void stop(void)
{
	test_daemon_stop(&d);
}

TestSuite(daemon, .init = start, .fini = stop, .timeout = 30);

static struct kvt_cache_config doc_config(void)
{
	struct kvt_cache_config c;
	kvt_cache_config_init(&c);
	c.shape = shape;
	return c;
}

/* Writes DOC_TOKENS tokens to every layer, in appends of various sizes. */
static int write_doc(const char *name)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	struct kvt_cache_config cfg = doc_config();
	if (kvt_client_connect(d.path, &cl) || kvt_client_cache_create(cl, name, &cfg, &c))
		return 1;
	uint16_t *k = malloc(DOC_TOKENS * 2 * 64 * 2), *v = malloc(DOC_TOKENS * 2 * 64 * 2);
	const uint32_t steps[] = {1, 7, 24, 68}; /* 68 tokens: memfd, 3 chunks */
	for (uint32_t l = 0; l < shape.n_layers; l++) {
		uint64_t at = 0;
		for (int i = 0; i < 4; i++) {
			test_fill(&shape, l, at, steps[i], k, v);
			if (kvt_client_cache_append(c, l, steps[i], k, v))
				return 2;
			at += steps[i];
		}
	}
	free(k);
	free(v);
	kvt_client_cache_close(c);
	kvt_client_close(cl);
	return 0;
}

static int check_block(struct kvt_client_cache *c, uint32_t l, uint64_t b)
{
	uint16_t blk[2 * 2 * 16 * 64];
	uint32_t n;
	if (kvt_client_cache_read_block(c, l, b, blk, sizeof blk, &n))
		return 1;
	uint32_t want = DOC_TOKENS - b * 16 < 16 ? DOC_TOKENS - b * 16 : 16;
	if (n != want)
		return 2;
	for (int kv = 0; kv < 2; kv++)
		for (uint32_t h = 0; h < 2; h++)
			for (uint32_t t = 0; t < n; t++)
				for (uint32_t e = 0; e < 64; e++) {
					size_t i = (((size_t)kv * 2 + h) * 16 + t) * 64 + e;
					if (blk[i] != test_value(l, h, b * 16 + t, e, kv))
						return 3;
				}
	return 0;
}

static int wait_for_doc(struct kvt_client *cl, const char *name,
			struct kvt_client_cache **c)
{
	for (int i = 0; i < 5000; i++, usleep(1000)) {
		struct kvt_cache_info *infos, info;
		size_t n;
		if (kvt_client_list(cl, &infos, &n))
			return -1;
		int listed = 0;
		for (size_t j = 0; j < n; j++)
			listed |= !strcmp(infos[j].name, name);
		free(infos);
		if (!listed || kvt_client_cache_open(cl, name, c))
			continue;
		int done = !kvt_client_cache_get_info(*c, &info) &&
			   info.n_tokens == DOC_TOKENS;
		if (done)
			return 0;
		kvt_client_cache_close(*c);
	}
	return -1;
}

static int read_doc(const char *name)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	if (kvt_client_connect(d.path, &cl) || wait_for_doc(cl, name, &c))
		return 10;
	/* The writer may still be appending to the upper layers. */
	for (uint32_t l = 0; l < shape.n_layers; l++) {
		for (int i = 0; i < 2000; i++, usleep(1000)) {
			uint16_t k1[2 * 64], v1[2 * 64];
			if (!kvt_client_cache_read(c, l, DOC_TOKENS - 1, 1, k1, v1))
				break;
		}
		for (uint64_t b = 0; b * 16 < DOC_TOKENS; b++)
			if (check_block(c, l, b))
				return 20 + check_block(c, l, b);
		uint16_t k[2 * 90 * 64], v[2 * 90 * 64], wk[2 * 90 * 64], wv[2 * 90 * 64];
		if (kvt_client_cache_read(c, l, 5, 90, k, v))
			return 30;
		test_fill(&shape, l, 5, 90, wk, wv);
		if (memcmp(k, wk, sizeof k) || memcmp(v, wv, sizeof v))
			return 31;
	}
	kvt_client_cache_close(c);
	kvt_client_close(cl);
	return 0;
}

static pid_t spawn(int (*fn)(const char *), const char *arg)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

static int exit_code(pid_t pid)
{
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

Test(daemon, one_process_writes_another_reads_by_name)
{
	pid_t reader = spawn(read_doc, "document-1");
	pid_t writer = spawn(write_doc, "document-1");
	cr_assert_eq(exit_code(writer), 0);
	cr_assert_eq(exit_code(reader), 0);
	test_wait_clients(d.srv, 0);
}

Test(daemon, same_process_round_trip_and_errors)
{
	cr_assert_eq(write_doc("doc"), 0);
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	struct kvt_cache_config cfg = doc_config();
	cr_assert_eq(kvt_client_cache_create(cl, "doc", &cfg, &c), KVT_EEXIST);
	cr_assert_eq(kvt_client_cache_open(cl, "nope", &c), KVT_ENOTFOUND);
	cr_assert_eq(kvt_client_cache_open(cl, "doc", &c), 0);
	cr_assert_eq(check_block(c, 3, 6), 0);
	uint16_t blk[2 * 2 * 16 * 64];
	cr_assert_eq(kvt_client_cache_read_block(c, 0, 7, blk, sizeof blk, NULL),
		     KVT_ENOTFOUND);
	cr_assert_eq(kvt_client_cache_read_block(c, 0, 0, blk, 100, NULL), -ENOBUFS);
	cr_assert_eq(kvt_client_cache_drop(cl, "doc"), KVT_EBUSY);
	kvt_client_cache_close(c);
	struct kvt_stats st;
	cr_assert_eq(kvt_client_stats(cl, &st), 0);
	cr_assert_eq(st.n_caches, 1);
	cr_assert_eq(kvt_client_cache_drop(cl, "doc"), 0);
	cr_assert_eq(kvt_client_cache_open(cl, "doc", &c), KVT_ENOTFOUND);
	kvt_client_close(cl);
}

Test(daemon, open_cache_limit_per_client)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c[5];
	struct kvt_cache_config cfg = doc_config();
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	cr_assert_eq(kvt_client_cache_create(cl, "x", &cfg, &c[0]), 0);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(kvt_client_cache_open(cl, "x", &c[i]), 0);
	cr_assert_eq(kvt_client_cache_open(cl, "x", &c[4]), -EMFILE);
	kvt_client_cache_close(c[2]);
	cr_assert_eq(kvt_client_cache_open(cl, "x", &c[2]), 0);
	/* Closing the connection releases every handle on the daemon. */
	kvt_client_close(cl);
	test_wait_clients(d.srv, 0);
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	cr_assert_eq(kvt_client_cache_drop(cl, "x"), 0);
	kvt_client_close(cl);
}

Test(daemon, client_limit)
{
	struct kvt_client *cl[9];
	for (int i = 0; i < 8; i++)
		cr_assert_eq(kvt_client_connect(d.path, &cl[i]), 0);
	cr_assert_eq(kvt_client_connect(d.path, &cl[8]), -EUSERS);
	kvt_client_close(cl[0]);
	test_wait_clients(d.srv, 7);
	cr_assert_eq(kvt_client_connect(d.path, &cl[0]), 0);
	for (int i = 0; i < 8; i++)
		kvt_client_close(cl[i]);
}

Test(daemon, appends_are_checked_against_the_shape)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	struct kvt_cache_config cfg = doc_config();
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	cr_assert_eq(kvt_client_cache_create(cl, "s", &cfg, &c), 0);
	uint16_t k[2 * 64], v[2 * 64];
	test_fill(&shape, 0, 0, 1, k, v);
	cr_assert_eq(kvt_client_cache_append(c, 9, 1, k, v), -EINVAL); /* layer */
	cr_assert_eq(kvt_client_cache_append(c, 0, 1, k, v), 0);
	struct kvt_cache_info info;
	cr_assert_eq(kvt_client_cache_get_info(c, &info), 0);
	cr_assert_eq(info.n_tokens, 1);
	kvt_client_cache_close(c);
	kvt_client_close(cl);
}

static int sock_at(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

Test(daemon, stale_socket_is_replaced_live_one_is_an_error)
{
	struct kvt_server_config cfg;
	struct kvt_server *srv;
	char path[108];
	kvt_server_config_init(&cfg);
	test_sock_path(path, sizeof path, "stale");
	unlink(path);
	cfg.socket_path = path;
	close(sock_at(path)); /* a socket file with nobody behind it */
	cr_assert_eq(kvt_server_create(d.store, &cfg, &srv), 0);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	struct kvt_server *second;
	cr_assert_eq(kvt_server_create(d.store, &cfg, &second), -EADDRINUSE);
	kvt_server_destroy(srv);
	cr_assert_eq(access(path, F_OK), -1);

	FILE *f = fopen(path, "w"); /* not a socket: never removed */
	fclose(f);
	cr_assert_eq(kvt_server_create(d.store, &cfg, &srv), -EEXIST);
	unlink(path);
}

Test(daemon, moved_blocks_are_never_read_from_their_old_place)
{
	cr_assert_eq(write_doc("moving"), 0);
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	cr_assert_eq(kvt_client_connect(d.path, &cl), 0);
	cr_assert_eq(kvt_client_cache_open(cl, "moving", &c), 0);
	for (uint64_t b = 0; b < 6; b++)
		cr_assert_eq(check_block(c, 1, b), 0); /* locations remembered */
	for (uint64_t b = 0; b < 6; b += 2)
		cr_assert_eq(fake_store_move_block(d.store, "moving", 1, b), 0);
	for (int pass = 0; pass < 2; pass++)
		for (uint64_t b = 0; b < 6; b++)
			cr_assert_eq(check_block(c, 1, b), 0, "block %llu",
				     (unsigned long long)b);
	kvt_client_cache_close(c);
	kvt_client_close(cl);
}

/* Child: becomes uid/gid 65534 and reports the connect result. */
static int connect_as_nobody(const char *path)
{
	if (setgid(65534) || setuid(65534))
		return 99;
	struct kvt_client *cl;
	int rc = kvt_client_connect(path, &cl);
	kvt_client_close(rc ? NULL : cl);
	return rc == -EACCES ? 1 : rc == 0 ? 0 : 2;
}

Test(daemon, peers_of_another_uid_are_refused_unless_allowed)
{
	if (getuid() != 0)
		cr_skip_test("needs root to connect as another uid");
	struct kvt_server_config cfg;
	struct kvt_server *srv;
	pthread_t th;
	char path[108];
	snprintf(path, sizeof path, "/tmp/kvt-peercred-%d.sock", (int)getpid());
	unlink(path);
	for (int allow = 0; allow < 2; allow++) {
		struct test_daemon pd = {.store = d.store};
		kvt_server_config_init(&cfg);
		cfg.socket_path = path;
		if (allow)
			cfg.allow_uids[cfg.n_allow_uids++] = 65534;
		cr_assert_eq(kvt_server_create(d.store, &cfg, &srv), 0);
		pd.srv = srv;
		/* Open the file mode so only SO_PEERCRED stands in the way. */
		cr_assert_eq(chmod(path, 0666), 0);
		cr_assert_eq(pthread_create(&th, NULL, test_daemon_main, &pd), 0);
		cr_assert_eq(exit_code(spawn(connect_as_nobody, path)), allow ? 0 : 1);
		kvt_server_stop(srv);
		pthread_join(th, NULL);
		kvt_server_destroy(srv);
	}
}
