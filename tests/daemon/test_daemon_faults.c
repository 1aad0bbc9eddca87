/*
 * test_daemon_faults.c - hostile and dying clients: every kind of bad frame
 * gets an error reply and a closed connection while another client keeps
 * working; a client killed mid-request leaks nothing in the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "bytes.h"
#include "daemon_test.h"
#include "protocol.h"
#include "wire.h"

static const struct kvt_shape shape = {2, 2, 64, 16, KVT_DTYPE_F16};
static struct test_daemon d;
static struct kvt_client *good; /* must keep working throughout */

static void start(void)
{
	struct kvt_server_config cfg;
	kvt_server_config_init(&cfg);
	cfg.max_frame = 64u << 10;
	cfg.max_inline = 16u << 10;
	cfg.frame_timeout_ms = 300;
	test_daemon_start(&d, &cfg, "faults");
	cr_assert_eq(kvt_client_connect(d.path, &good), 0);
	struct kvt_cache_config cc;
	kvt_cache_config_init(&cc);
	cc.shape = shape;
	struct kvt_client_cache *c;
	cr_assert_eq(kvt_client_cache_create(good, "doc", &cc, &c), 0);
	uint16_t k[2 * 40 * 64], v[2 * 40 * 64];
	test_fill(&shape, 0, 0, 40, k, v);
	cr_assert_eq(kvt_client_cache_append(c, 0, 40, k, v), 0);
	kvt_client_cache_close(c);
}

static void stop(void)
{
	kvt_client_close(good);
	test_daemon_stop(&d);
}

TestSuite(faults, .init = start, .fini = stop, .timeout = 30);

static int raw_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, d.path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	return fd;
}

static void header(uint8_t *buf, unsigned op, unsigned flags, uint32_t len)
{
	struct kvt_frame_header h = {KVT_PROTO_VERSION, (uint8_t)op,
				     (uint16_t)flags, 77, len};
	kvt_frame_header_encode(buf, &h);
}

/* After bytes were sent: the daemon answers with an error frame carrying
 * want (0: any code) and then closes the connection. */
static void expect_error_and_close(int fd, int want)
{
	struct kvt_wbuf in;
	struct kvt_frame_header h;
	int rfd;
	kvt_wbuf_init(&in);
	cr_assert_eq(kvt_wire_recv(fd, KVT_PROTO_MAX_PAYLOAD, &h, &in, &rfd), 0);
	cr_assert_eq(h.op, KVT_OP_ERROR);
	struct kvt_msg_error e;
	cr_assert_eq(kvt_dec_error(in.data, in.len, &e), 0);
	if (want)
		cr_assert_eq(e.code, want, "got %d (%s)", e.code, e.message);
	cr_assert_eq(kvt_wire_recv(fd, KVT_PROTO_MAX_PAYLOAD, &h, &in, &rfd),
		     KVT_ECLOSED);
	kvt_wbuf_free(&in);
	close(fd);
}

static void good_client_still_works(void)
{
	struct kvt_stats st;
	cr_assert_eq(kvt_client_stats(good, &st), 0);
	cr_assert_eq(st.n_caches, 1);
	struct kvt_client_cache *c;
	cr_assert_eq(kvt_client_cache_open(good, "doc", &c), 0);
	uint16_t k[2 * 40 * 64], v[2 * 40 * 64], wk[2 * 40 * 64], wv[2 * 40 * 64];
	cr_assert_eq(kvt_client_cache_read(c, 0, 0, 40, k, v), 0);
	test_fill(&shape, 0, 0, 40, wk, wv);
	cr_assert_eq(memcmp(k, wk, sizeof k), 0);
	cr_assert_eq(memcmp(v, wv, sizeof v), 0);
	kvt_client_cache_close(c);
}

static void send_bytes(int fd, const void *p, size_t n)
{
	cr_assert_eq(kvt_wire_send(fd, p, n, -1), 0);
}

Test(faults, bad_magic)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_STATS, 0, 0);
	b[0] ^= 0xff;
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EPROTO);
	good_client_still_works();
}

Test(faults, bad_version)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_STATS, 0, 0);
	b[4] = 200;
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EVERSION);
	good_client_still_works();
}

Test(faults, oversized_frame)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_OPEN, 0, 10u << 20); /* over the 64 KiB bound */
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_ETOOBIG);
	good_client_still_works();
}

Test(faults, unknown_and_reserved_opcodes)
{
	const unsigned ops[] = {0, 12, 40, 50, 126, 255};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		uint8_t b[KVT_PROTO_HEADER_BYTES];
		int fd = raw_connect();
		header(b, ops[i], 0, 0);
		send_bytes(fd, b, sizeof b);
		expect_error_and_close(fd, KVT_EPROTO);
	}
	good_client_still_works();
}

Test(faults, client_sends_a_reply_or_an_error)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_STATS, KVT_PF_REPLY, 0);
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EPROTO);
	fd = raw_connect();
	header(b, KVT_OP_ERROR, 0, 0);
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EPROTO);
	good_client_still_works();
}

Test(faults, unknown_flag_and_reserved_bytes)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_STATS, 0, 0);
	b[6] = 0x40;
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EPROTO);
	fd = raw_connect();
	header(b, KVT_OP_STATS, 0, 0);
	b[23] = 1;
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EPROTO);
	good_client_still_works();
}

Test(faults, fd_flag_without_descriptor_and_descriptor_without_flag)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_STATS, KVT_PF_FD, 0);
	send_bytes(fd, b, sizeof b);
	expect_error_and_close(fd, KVT_EPROTO);
	/* A descriptor on an op that takes none. */
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fd = raw_connect();
	header(b, KVT_OP_STATS, KVT_PF_FD, 0);
	cr_assert_eq(kvt_wire_send(fd, b, sizeof b, p[0]), 0);
	close(p[0]);
	close(p[1]);
	expect_error_and_close(fd, KVT_EPROTO);
	good_client_still_works();
}

Test(faults, malformed_payloads)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES + 8] = {0};
	/* stats takes no payload; open's name is empty; close's handle short */
	const struct {
		unsigned op;
		uint32_t len;
	} cases[] = {{KVT_OP_STATS, 4}, {KVT_OP_OPEN, 2}, {KVT_OP_CLOSE, 3},
		     {KVT_OP_APPEND, 8}, {KVT_OP_READ_BLOCK, 8}, {KVT_OP_HELLO, 1}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int fd = raw_connect();
		memset(b, 0, sizeof b);
		header(b, cases[i].op, 0, cases[i].len);
		send_bytes(fd, b, KVT_PROTO_HEADER_BYTES + cases[i].len);
		expect_error_and_close(fd, KVT_EPROTO);
	}
	good_client_still_works();
}

Test(faults, truncated_frame_then_close)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_OPEN, 0, 100);
	send_bytes(fd, b, sizeof b);
	send_bytes(fd, "\x03\x00" "doc", 5);
	shutdown(fd, SHUT_WR);
	expect_error_and_close(fd, KVT_EPROTO);
	good_client_still_works();
}

Test(faults, operation_errors_keep_the_connection)
{
	/* A well-formed request the store refuses is not a protocol error. */
	struct kvt_client_cache *c;
	cr_assert_eq(kvt_client_cache_open(good, "missing", &c), KVT_ENOTFOUND);
	cr_assert_eq(kvt_client_cache_drop(good, "missing"), KVT_ENOTFOUND);
	good_client_still_works();
}

Test(faults, unsealed_append_memfd_is_refused)
{
	int fd = raw_connect();
	struct kvt_wbuf w;
	kvt_wbuf_init(&w);
	struct kvt_msg_name name = {"doc"};
	kvt_frame_begin(&w);
	kvt_enc_name(&w, &name);
	kvt_frame_end(&w, KVT_OP_OPEN, 0, 1);
	send_bytes(fd, w.data, w.len);
	struct kvt_wbuf in;
	kvt_wbuf_init(&in);
	struct kvt_frame_header h;
	int rfd;
	cr_assert_eq(kvt_wire_recv(fd, KVT_PROTO_MAX_PAYLOAD, &h, &in, &rfd), 0);
	struct kvt_msg_cache_rep rep;
	cr_assert_eq(kvt_dec_cache_rep(in.data, in.len, &rep), 0);

	int mfd = memfd_create("unsealed", MFD_CLOEXEC);
	size_t len = kvt_block_bytes(&shape);
	cr_assert_eq(ftruncate(mfd, (off_t)len), 0);
	struct kvt_msg_append_req req = {rep.handle, 0, 16, KVT_APPEND_FD, 0, len, NULL};
	kvt_frame_begin(&w);
	kvt_enc_append_req(&w, &req);
	kvt_frame_end(&w, KVT_OP_APPEND, KVT_PF_FD, 2);
	cr_assert_eq(kvt_wire_send(fd, w.data, w.len, mfd), 0);
	close(mfd);
	cr_assert_eq(kvt_wire_recv(fd, KVT_PROTO_MAX_PAYLOAD, &h, &in, &rfd), 0);
	struct kvt_msg_error e;
	cr_assert_eq(h.op, KVT_OP_ERROR);
	cr_assert_eq(kvt_dec_error(in.data, in.len, &e), 0);
	cr_assert_eq(e.code, -EPERM);
	/* Not a protocol error: the connection still answers. */
	kvt_frame_begin(&w);
	kvt_frame_end(&w, KVT_OP_STATS, 0, 3);
	send_bytes(fd, w.data, w.len);
	cr_assert_eq(kvt_wire_recv(fd, KVT_PROTO_MAX_PAYLOAD, &h, &in, &rfd), 0);
	cr_assert_eq(h.op, KVT_OP_STATS);
	close(fd);
	kvt_wbuf_free(&w);
	kvt_wbuf_free(&in);
	good_client_still_works();
}

/* Child: opens the cache, maps shared memory through a read, then sends
 * half a frame and is killed. */
static void doomed_client(const char *path)
{
	struct kvt_client *cl;
	struct kvt_client_cache *c;
	uint16_t blk[2 * 2 * 16 * 64];
	if (kvt_client_connect(path, &cl) || kvt_client_cache_open(cl, "doc", &c) ||
	    kvt_client_cache_read_block(c, 0, 1, blk, sizeof blk, NULL))
		_exit(1);
	uint16_t k[2 * 8 * 64], v[2 * 8 * 64];
	if (kvt_client_cache_read(c, 0, 3, 8, k, v))
		_exit(2);
	int fd = raw_connect();
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	header(b, KVT_OP_OPEN, 0, 100);
	send_bytes(fd, b, sizeof b);
	send_bytes(fd, "\x03\x00", 2);
	raise(SIGKILL);
}

Test(faults, client_killed_mid_request_leaks_nothing)
{
	/* Warm up what the daemon allocates once (nothing should stay). */
	good_client_still_works();
	int fds = test_fd_count();
	for (int i = 0; i < 5; i++) {
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0)
			doomed_client(d.path);
		int st;
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
			  "child status %d", st);
	}
	test_wait_clients(d.srv, 1); /* only `good` */
	cr_assert_eq(test_fd_count(), fds);
	/* No cache handle leaked: the cache can be dropped. */
	cr_assert_eq(kvt_client_cache_drop(good, "doc"), 0);
}

Test(faults, a_peer_stuck_mid_frame_is_timed_out_an_idle_one_is_not)
{
	uint8_t b[KVT_PROTO_HEADER_BYTES];
	int fd = raw_connect();
	header(b, KVT_OP_STATS, 0, 0);
	send_bytes(fd, b, 10); /* and then nothing, connection kept open */
	expect_error_and_close(fd, -ETIMEDOUT);
	usleep(600 * 1000); /* `good` idles for twice the frame timeout */
	good_client_still_works();
}
