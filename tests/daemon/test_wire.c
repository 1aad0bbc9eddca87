/* test_wire.c - frames over a socketpair: descriptors travel with their
 * frame, and a peer that lies about them or stops mid-frame is caught. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"

static int sv[2];
static struct kvt_wbuf w, in;

static void setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	kvt_wbuf_init(&w);
	kvt_wbuf_init(&in);
}

static void teardown(void)
{
	close(sv[0]);
	close(sv[1]);
	kvt_wbuf_free(&w);
	kvt_wbuf_free(&in);
}

TestSuite(wire, .init = setup, .fini = teardown);

static void frame(unsigned op, unsigned flags, const char *payload)
{
	kvt_frame_begin(&w);
	size_t n = strlen(payload);
	memcpy(kvt_wbuf_grow(&w, n), payload, n);
	cr_assert_eq(kvt_frame_end(&w, op, flags, 9), 0);
}

/* Sends raw bytes with an optional list of descriptors. */
static void send_fds(const void *buf, size_t len, const int *fds, int n)
{
	struct iovec iov = {(void *)buf, len};
	char ctl[CMSG_SPACE(4 * sizeof(int))];
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (n) {
		msg.msg_control = ctl;
		msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	cr_assert_eq(sendmsg(sv[0], &msg, 0), (ssize_t)len);
}

static int fd_count(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

Test(wire, frame_with_descriptor)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	frame(KVT_OP_APPEND, KVT_PF_FD, "payload");
	cr_assert_eq(kvt_wire_send(sv[0], w.data, w.len, p[1]), 0);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), 0);
	cr_assert_eq(h.op, KVT_OP_APPEND);
	cr_assert_eq(in.len, 7);
	cr_assert_eq(memcmp(in.data, "payload", 7), 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "x", 1), 1); /* the same pipe */
	char c;
	cr_assert_eq(read(p[0], &c, 1), 1);
	close(fd);
	close(p[0]);
	close(p[1]);
}

Test(wire, empty_payload)
{
	frame(KVT_OP_STATS, 0, "");
	cr_assert_eq(kvt_wire_send(sv[0], w.data, w.len, -1), 0);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), 0);
	cr_assert_eq(h.len, 0);
	cr_assert_eq(fd, -1);
}

Test(wire, descriptor_without_flag_is_closed_and_rejected)
{
	int before = fd_count();
	int p[2];
	cr_assert_eq(pipe(p), 0);
	frame(KVT_OP_STATS, 0, "");
	send_fds(w.data, w.len, p, 1);
	close(p[0]);
	close(p[1]);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), KVT_EPROTO);
	cr_assert_eq(fd, -1);
	cr_assert_eq(fd_count(), before);
}

Test(wire, two_descriptors_are_rejected)
{
	int before = fd_count();
	int p[2];
	cr_assert_eq(pipe(p), 0);
	frame(KVT_OP_APPEND, KVT_PF_FD, "x");
	send_fds(w.data, w.len, p, 2);
	close(p[0]);
	close(p[1]);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), KVT_EPROTO);
	cr_assert_eq(fd_count(), before);
}

Test(wire, flag_without_descriptor_is_rejected)
{
	frame(KVT_OP_APPEND, KVT_PF_FD, "x");
	cr_assert_eq(kvt_wire_send(sv[0], w.data, w.len, -1), 0);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), KVT_EPROTO);
}

Test(wire, close_mid_frame_is_a_protocol_error)
{
	frame(KVT_OP_OPEN, 0, "abcdef");
	cr_assert_eq(kvt_wire_send(sv[0], w.data, w.len - 3, -1), 0);
	shutdown(sv[0], SHUT_WR);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), KVT_EPROTO);
}

Test(wire, close_between_frames_is_closed)
{
	shutdown(sv[0], SHUT_WR);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 1024, &h, &in, &fd), KVT_ECLOSED);
}

Test(wire, oversized_frame_is_refused_before_reading_it)
{
	frame(KVT_OP_OPEN, 0, "0123456789");
	cr_assert_eq(kvt_wire_send(sv[0], w.data, w.len, -1), 0);
	struct kvt_frame_header h;
	int fd;
	cr_assert_eq(kvt_wire_recv(sv[1], 9, &h, &in, &fd), KVT_ETOOBIG);
	cr_assert_eq(h.req_id, 9);
}

Test(wire, default_socket_path)
{
	char buf[108];
	setenv("XDG_RUNTIME_DIR", "/run/user/1234", 1);
	cr_assert_eq(kvt_default_socket_path(buf, sizeof buf), 0);
	cr_assert_str_eq(buf, "/run/user/1234/kvtier.sock");
	unsetenv("XDG_RUNTIME_DIR");
	cr_assert_eq(kvt_default_socket_path(buf, sizeof buf), 0);
	char want[64];
	snprintf(want, sizeof want, "/tmp/kvtier-%u.sock", (unsigned)getuid());
	cr_assert_str_eq(buf, want);
	cr_assert_eq(kvt_default_socket_path(buf, 5), -ENAMETOOLONG);
}
