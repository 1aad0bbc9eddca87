/*
 * wire.h - frames over a connected Unix stream socket, with at most one
 * file descriptor per frame (SCM_RIGHTS). Shared by kvtierd and the client
 * library; blocking I/O, EINTR retried, SIGPIPE never raised.
 */
#ifndef KVTIER_DAEMON_WIRE_H
#define KVTIER_DAEMON_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/*
 * Sends len bytes (a whole encoded frame); fd >= 0 travels with the first
 * byte. Errors: KVT_ECLOSED (peer gone), -errno.
 */
int kvt_wire_send(int sock, const void *buf, size_t len, int fd);

/*
 * Receives one frame: header into *h, payload into buf (resized, owned by
 * the caller), the accompanying descriptor into *fd (-1 when none; the
 * caller closes it). Errors: KVT_ECLOSED (orderly close before the first
 * byte), KVT_EPROTO (close mid-frame, a descriptor without KVT_PF_FD or
 * the reverse, more than one descriptor), the header errors of
 * kvt_frame_header_decode (*h filled, payload left unread), -ETIMEDOUT
 * (the socket's SO_RCVTIMEO expired inside a frame; between frames it
 * just keeps waiting), -ENOMEM, -errno.
 * On any error no descriptor is left open.
 */
int kvt_wire_recv(int sock, uint32_t max_payload, struct kvt_frame_header *h,
		  struct kvt_wbuf *buf, int *fd);

/* Writes the default socket path ($XDG_RUNTIME_DIR/kvtier.sock, else
 * /tmp/kvtier-$UID.sock) into buf. Returns 0 or -ENAMETOOLONG. */
int kvt_default_socket_path(char *buf, size_t cap);

#endif
