/*
 * snapshot_internal.h - the snapshot file format, shared by the writer
 * (snapshot.c) and the reader (snapshot_load.c). docs/snapshot-format.md
 * describes every field.
 */
#ifndef KVTIER_SNAPSHOT_INTERNAL_H
#define KVTIER_SNAPSHOT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kvtier/snapshot.h"

#define SNAP_MAGIC "KVTSNAP"          /* 8 bytes with the NUL */
#define SNAP_HEADER_BYTES 128         /* version 1 */
#define SNAP_HEADER_MAX 4096          /* any version, so it can be verified */
#define SNAP_SECTION_HEADER 40
#define SNAP_SECTION_MAGIC 0x54434553u /* "SECT" */
#define SNAP_SECTION_TARGET (4u << 20)
#define SNAP_RECORD_BYTES 32
#define SNAP_WRITE_BEHIND (64u << 20) /* save: dirty/cached file data kept */
#define SNAP_BLOCKS_PREFIX 8           /* u32 record count, u32 zero */
/* META: u8 key length, key, u64 blob length, u64 offset of this piece */
#define SNAP_META_PREFIX_MAX (1 + KVT_META_KEY_MAX + 16)
#define SNAP_CODEC_NONE 0
#define SNAP_CODEC_ZSTD 1

/* What the header says about the rest of the file. */
struct snap_totals {
	uint64_t n_blocks, n_sections, payload_bytes, n_tokens, file_bytes;
};

/* Header of version 1 (SNAP_HEADER_BYTES). */
void kvt_snap_header_encode(const struct kvt_cache_config *cfg,
			    const struct snap_totals *t, uint8_t *out);

/* Verifies and decodes a header of len bytes (the size it declares).
 * KVT_ECORRUPT (checksum, configuration), KVT_EVERSION (info->version
 * set), KVT_EFORMAT. */
int kvt_snap_header_decode(const uint8_t *h, size_t len,
			   struct kvt_snapshot_info *info, struct snap_totals *t);

void kvt_snap_section_encode(uint8_t *out, uint32_t type, uint64_t raw,
			     uint64_t stored, uint64_t checksum, uint32_t codec);

/* Decodes a section header: KVT_ECORRUPT (its checksum), KVT_EFORMAT. */
int kvt_snap_section_decode(const uint8_t *h, struct kvt_snapshot_section *s,
			    uint64_t *checksum);

/* Largest section content a snapshot of this configuration can hold. */
uint64_t kvt_snap_section_max(const struct kvt_cache_config *cfg);

#endif
