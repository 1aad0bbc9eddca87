/* wire.c - sending and receiving frames with SCM_RIGHTS (see wire.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"

static int send_some(int sock, const uint8_t *p, size_t len, int fd)
{
	struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	if (fd >= 0) {
		memset(&ctl, 0, sizeof ctl);
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof ctl.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof fd);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EPIPE || errno == ECONNRESET ? KVT_ECLOSED : -errno;
	return (int)n;
}

int kvt_wire_send(int sock, const void *buf, size_t len, int fd)
{
	const uint8_t *p = buf;
	while (len) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : len;
		int n = send_some(sock, p, chunk, fd);
		if (n < 0)
			return n;
		fd = -1; /* the descriptor went with the first chunk */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Takes the descriptors of a control message into *fd; more than one (or a
 * second one for the same frame) closes them all and fails. */
static int take_fds(struct msghdr *msg, int *fd)
{
	int bad = (msg->msg_flags & MSG_CTRUNC) != 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int got;
			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
			if (*fd < 0 && !bad) {
				*fd = got;
			} else {
				close(got);
				bad = 1;
			}
		}
	}
	return bad ? KVT_EPROTO : 0;
}

/* Reads exactly len bytes; *got counts bytes read so far of the frame. */
static int recv_all(int sock, uint8_t *p, size_t len, int *fd, size_t *got)
{
	while (len) {
		struct iovec iov = {.iov_base = p, .iov_len = len};
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(4 * sizeof(int))];
		} ctl;
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = ctl.buf,
			.msg_controllen = sizeof ctl.buf,
		};
		ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		/* A receive timeout (SO_RCVTIMEO) only counts inside a frame:
		 * an idle peer may wait for as long as it likes. */
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return *got ? -ETIMEDOUT : -EAGAIN;
		if (n < 0)
			return errno == ECONNRESET ? (*got ? KVT_EPROTO : KVT_ECLOSED)
						   : -errno;
		int rc = take_fds(&msg, fd);
		if (rc)
			return rc;
		if (n == 0)
			return *got ? KVT_EPROTO : KVT_ECLOSED;
		p += n;
		len -= (size_t)n;
		*got += (size_t)n;
	}
	return 0;
}

static int recv_frame(int sock, uint32_t max_payload,
		      struct kvt_frame_header *h, struct kvt_wbuf *buf, int *fd)
{
	uint8_t hdr[KVT_PROTO_HEADER_BYTES];
	size_t got = 0;
	int rc = recv_all(sock, hdr, sizeof hdr, fd, &got);
	if (rc)
		return rc;
	rc = kvt_frame_header_decode(hdr, sizeof hdr, max_payload, h);
	if (rc)
		return rc;
	buf->len = 0;
	buf->err = 0;
	uint8_t *p = kvt_wbuf_grow(buf, h->len);
	if (!p)
		return buf->err;
	rc = recv_all(sock, p, h->len, fd, &got);
	if (rc)
		return rc;
	if ((*fd >= 0) != ((h->flags & KVT_PF_FD) != 0))
		return KVT_EPROTO;
	return 0;
}

int kvt_wire_recv(int sock, uint32_t max_payload, struct kvt_frame_header *h,
		  struct kvt_wbuf *buf, int *fd)
{
	*fd = -1;
	int rc;
	do
		rc = recv_frame(sock, max_payload, h, buf, fd);
	while (rc == -EAGAIN && *fd < 0);
	if (rc && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

int kvt_default_socket_path(char *buf, size_t cap)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");
	int n;
	if (dir && dir[0])
		n = snprintf(buf, cap, "%s/kvtier.sock", dir);
	else
		n = snprintf(buf, cap, "/tmp/kvtier-%u.sock", (unsigned)getuid());
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
