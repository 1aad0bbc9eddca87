/*
 * disk_io.h - segment files and io_uring for the disk tier (internal).
 *
 * Segments are append-only files seg-NNNNNNNN.dat in the tier directory,
 * opened with O_DIRECT (buffered I/O where the file system refuses it, e.g.
 * tmpfs). Every extent starts on a 4 KiB boundary and spans whole 4 KiB
 * pages, so one aligned bounce buffer serves both modes.
 */
#ifndef KVTIER_TIERS_DISK_IO_H
#define KVTIER_TIERS_DISK_IO_H

#include <liburing.h>
#include <stddef.h>
#include <stdint.h>

#define KVT_DISK_PAGE 4096u
#define KVT_DISK_QD 64u

struct kvt_seg {
	uint32_t id;
	int fd;
	uint64_t end;  /* bytes written (write position) */
	uint64_t live; /* bytes of extents the index still points to */
};

struct kvt_disk_io {
	struct io_uring ring;
	int direct; /* 1 when O_DIRECT is in use */
	int dirfd;
	struct kvt_seg *segs; /* sorted by id */
	size_t n_segs;
};

static inline uint64_t kvt_disk_round(uint64_t n)
{
	return (n + KVT_DISK_PAGE - 1) / KVT_DISK_PAGE * KVT_DISK_PAGE;
}

/* Opens the ring and every existing segment of dir. -errno. */
int kvt_disk_io_open(struct kvt_disk_io *io, const char *dir);
void kvt_disk_io_close(struct kvt_disk_io *io);

/* The segment with this id, or NULL. */
struct kvt_seg *kvt_disk_seg(struct kvt_disk_io *io, uint32_t id);

/* Creates segment id (empty). -errno. */
int kvt_disk_seg_create(struct kvt_disk_io *io, uint32_t id, struct kvt_seg **out);

/* Deletes a segment file. */
void kvt_disk_seg_remove(struct kvt_disk_io *io, uint32_t id);

/* Writes len bytes (a multiple of the page, buf page-aligned) at off. */
int kvt_disk_write(struct kvt_disk_io *io, struct kvt_seg *s, const void *buf,
		   size_t len, uint64_t off);

/* fdatasync of the segments in ids (n of them) through the ring. */
int kvt_disk_sync(struct kvt_disk_io *io, const uint32_t *ids, size_t n);

struct kvt_disk_read {
	struct kvt_seg *seg;
	uint64_t off;
	size_t len; /* page multiple */
	void *buf;  /* page-aligned */
	int result; /* 0 or -errno / KVT_ECORRUPT (short read) */
};

/* Reads n extents, KVT_DISK_QD submissions at a time. Returns 0; each
 * item's result says how it went. */
int kvt_disk_read_many(struct kvt_disk_io *io, struct kvt_disk_read *r, size_t n);

#endif
