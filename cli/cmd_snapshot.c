/*
 * cmd_snapshot.c - `kvtier snapshot save|load|inspect`: one cache to one
 * file and back, through a running kvtierd (the default) or offline on a
 * data directory no daemon holds (--data-dir).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "commands.h"
#include "kvtier/client.h"
#include "kvtier/codec.h"
#include "kvtier/snapshot.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvtier snapshot save NAME FILE [OPTIONS]\n"
		"       kvtier snapshot load FILE [--as NAME] [OPTIONS]\n"
		"       kvtier snapshot inspect FILE [--sections]\n"
		"\n"
		"save writes the cache NAME to FILE (written to a temporary file and\n"
		"renamed, so FILE is never left half written); load restores FILE as\n"
		"a new cache (the name stored in it, or NAME with --as), verifying\n"
		"every checksum first-to-last and leaving the store as it was on any\n"
		"error; inspect verifies FILE and prints what it holds.\n"
		"\n"
		"save and load go through the running kvtierd unless --data-dir is\n"
		"given; the daemon then reads or writes FILE itself (FILE is made\n"
		"absolute here, so it must be on a file system the daemon sees).\n"
		"\n"
		"  --socket PATH    daemon socket (default $XDG_RUNTIME_DIR/kvtier.sock,\n"
		"                   else /tmp/kvtier-$UID.sock)\n"
		"  --data-dir DIR   work offline on the store in DIR (refused while a\n"
		"                   daemon or any other process has it open)\n"
		"  --host-bytes N   offline: host memory for the store (K/M/G; default\n"
		"                   1G); a larger load spills to DIR as it goes\n"
		"  --as NAME        load: the name of the new cache\n"
		"  --zstd LEVEL     save: compress sections with zstd (1..22; default\n"
		"                   0: stored as is, quantized blocks compress little)\n"
		"  --progress       report progress on stderr even when it is not a\n"
		"                   terminal (on a terminal it is shown anyway)\n"
		"  --quiet          neither progress nor the summary line\n"
		"  --sections       inspect: list every section\n"
		"  -h, --help       this text\n"
		"\n"
		"exit status: 0 done, 1 failed (the message says why), 2 usage error\n");
}

struct snap_args {
	const char *socket, *data_dir, *as, *operand[2];
	int n_operands, zstd, progress, quiet, sections;
	uint64_t host_bytes; /* offline: host tier budget, 0 = default */
};

/* Returns -1 to go on, else an exit status. */
static int parse(int argc, char **argv, struct snap_args *a)
{
	static const struct option lo[] = {
		{"socket", 1, 0, 's'}, {"data-dir", 1, 0, 'd'}, {"as", 1, 0, 'a'},
		{"zstd", 1, 0, 'z'}, {"progress", 0, 0, 'p'}, {"quiet", 0, 0, 'q'},
		{"sections", 0, 0, 'S'}, {"host-bytes", 1, 0, 'H'},
		{"help", 0, 0, 'h'}, {0, 0, 0, 0},
	};
	int c;
	char *end;
	memset(a, 0, sizeof *a);
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's': a->socket = optarg; break;
		case 'd': a->data_dir = optarg; break;
		case 'a': a->as = optarg; break;
		case 'p': a->progress = 1; break;
		case 'q': a->quiet = 1; break;
		case 'S': a->sections = 1; break;
		case 'H':
			if (kvt_cli_parse_size(optarg, &a->host_bytes) || !a->host_bytes) {
				fprintf(stderr, "kvtier snapshot: bad --host-bytes '%s'\n", optarg);
				return 2;
			}
			break;
		case 'z':
			a->zstd = (int)strtol(optarg, &end, 10);
			if (*end || a->zstd < 0 || a->zstd > 22) {
				fprintf(stderr, "kvtier snapshot: --zstd takes 0..22\n");
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		if (a->n_operands == 2) {
			fprintf(stderr, "kvtier snapshot: unexpected '%s'\n", argv[i]);
			return 2;
		}
		a->operand[a->n_operands++] = argv[i];
	}
	if (a->socket && a->data_dir) {
		fprintf(stderr, "kvtier snapshot: --socket and --data-dir exclude each other\n");
		return 2;
	}
	return -1;
}

/* ---------------------------------------------------------------- progress */

struct meter {
	const char *verb;
	int on, tty;
	int last; /* percent last shown */
	struct timespec t0;
};

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) * 1e-9;
}

static int show_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct meter *m = ctx;
	int pct = total ? (int)(done * 100 / total) : 100;
	char d[32], t[32];
	if (!m->on || pct == m->last || (!m->tty && pct / 10 == m->last / 10))
		return 0;
	m->last = pct;
	fprintf(stderr, "%s%s: %3d%% (%s of %s)%s", m->tty ? "\r" : "", m->verb, pct,
		kvt_cli_fmt_bytes(done, d, sizeof d),
		kvt_cli_fmt_bytes(total, t, sizeof t), m->tty ? "" : "\n");
	return 0;
}

static void meter_start(struct meter *m, const struct snap_args *a,
			const char *verb)
{
	m->verb = verb;
	m->tty = isatty(2);
	m->on = !a->quiet && (a->progress || m->tty);
	m->last = -1;
	clock_gettime(CLOCK_MONOTONIC, &m->t0);
}

static void meter_end(struct meter *m)
{
	if (m->on && m->tty && m->last >= 0)
		fputc('\n', stderr);
}

/* ---------------------------------------------------------------- stores */

static int fail(const char *what, int rc)
{
	const char *why = kvt_strerror(rc);
	if (rc == KVT_EFORMAT)
		why = "not a complete kvtier snapshot (truncated, trailing bytes "
		      "or malformed)";
	else if (rc == KVT_ECORRUPT)
		why = "checksum mismatch: the data is damaged";
	else if (rc == KVT_EVERSION)
		why = "unsupported snapshot format version";
	else if (rc == KVT_ENOSPACE)
		why = "the store has no room for it (nothing was loaded)";
	fprintf(stderr, "kvtier snapshot: %s: %s\n", what, why);
	return 1;
}

/* Opens the store of an existing data directory, saying why it cannot. */
static int open_offline(const char *dir, uint64_t host_bytes,
			struct kvt_store **st)
{
	struct stat sb;
	struct kvt_store_config cfg;
	if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "kvtier snapshot: %s: no such data directory\n", dir);
		return 1;
	}
	kvt_store_config_init(&cfg);
	cfg.data_dir = dir;
	if (host_bytes)
		cfg.host_bytes = host_bytes;
	int rc = kvt_store_open(&cfg, st);
	if (rc == KVT_EBUSY) {
		fprintf(stderr, "kvtier snapshot: %s is in use by another process "
			"(a running kvtierd?): stop it, or leave out --data-dir to go "
			"through the daemon\n", dir);
		return 1;
	}
	return rc ? fail(dir, rc) : 0;
}

static int connect_daemon(const char *sock, struct kvt_client **cl)
{
	int rc = kvt_client_connect(sock, cl);
	if (rc) {
		char def[108] = "";
		kvt_client_default_socket(def, sizeof def);
		fprintf(stderr, "kvtier snapshot: cannot reach kvtierd at %s: %s\n"
			"  (start kvtierd, or work offline with --data-dir DIR)\n",
			sock ? sock : def, kvt_strerror(rc));
	}
	return rc ? 1 : 0;
}

static void summary(const struct snap_args *a, const char *verb,
		    const struct kvt_snapshot_info *i, const char *file,
		    const struct meter *m)
{
	char b[32];
	double s = seconds_since(&m->t0);
	if (a->quiet)
		return;
	printf("%s %s: %llu tokens, %llu blocks, %s in %s (%.2f s, %.2f GB/s)\n",
	       verb, i->name, (unsigned long long)i->n_tokens,
	       (unsigned long long)i->n_blocks,
	       kvt_cli_fmt_bytes(i->file_bytes, b, sizeof b), file, s,
	       s > 0 ? (double)i->file_bytes / s / 1e9 : 0.0);
}

/* ---------------------------------------------------------------- save, load */

static int cmd_save(const struct snap_args *a)
{
	const char *name = a->operand[0], *file = a->operand[1];
	struct kvt_snapshot_info info;
	struct meter m;
	int rc;
	if (a->n_operands != 2 || a->as) {
		usage(stderr);
		return 2;
	}
	meter_start(&m, a, "saving");
	struct kvt_snapshot_opts o = {.zstd_level = a->zstd,
				      .progress = show_progress, .progress_ctx = &m};
	if (a->data_dir) {
		struct kvt_store *st;
		if ((rc = open_offline(a->data_dir, a->host_bytes, &st)))
			return rc;
		rc = kvt_snapshot_save(st, name, file, &o, &info);
		kvt_store_close(st);
	} else {
		struct kvt_client *cl;
		if ((rc = connect_daemon(a->socket, &cl)))
			return rc;
		rc = kvt_client_snapshot_save(cl, name, file, &o, &info);
		kvt_client_close(cl);
	}
	meter_end(&m);
	if (rc == KVT_ENOTFOUND) {
		fprintf(stderr, "kvtier snapshot: no cache named '%s'\n", name);
		return 1;
	}
	if (rc) {
		char what[600];
		snprintf(what, sizeof what, "save %s to %s", name, file);
		return fail(what, rc);
	}
	summary(a, "saved", &info, file, &m);
	return 0;
}

static int cmd_load(const struct snap_args *a)
{
	const char *file = a->operand[0];
	struct kvt_snapshot_info info = {0};
	struct meter m;
	int rc;
	if (a->n_operands != 1 || a->zstd) {
		usage(stderr);
		return 2;
	}
	meter_start(&m, a, "loading");
	struct kvt_snapshot_opts o = {.progress = show_progress, .progress_ctx = &m};
	if (a->data_dir) {
		struct kvt_store *st;
		if ((rc = open_offline(a->data_dir, a->host_bytes, &st)))
			return rc;
		rc = kvt_snapshot_load(st, file, a->as, &o, &info);
		kvt_store_close(st);
	} else {
		struct kvt_client *cl;
		if ((rc = connect_daemon(a->socket, &cl)))
			return rc;
		rc = kvt_client_snapshot_load(cl, file, a->as, &o, &info);
		kvt_client_close(cl);
	}
	meter_end(&m);
	if (rc == KVT_EVERSION && info.version)
		fprintf(stderr, "kvtier snapshot: %s is format version %u; this "
			"kvtier reads version %d\n", file, info.version,
			KVT_SNAPSHOT_VERSION);
	if (rc == KVT_EEXIST)
		fprintf(stderr, "kvtier snapshot: a cache of that name exists: drop "
			"it or load with --as NAME\n");
	if (rc)
		return fail(file, rc);
	if (a->as)
		strcpy(info.name, a->as);
	summary(a, "loaded", &info, file, &m);
	return 0;
}

/* ---------------------------------------------------------------- inspect */

struct section_list {
	int print;
	uint64_t count[5];
};

static int list_section(void *ctx, const struct kvt_snapshot_section *s)
{
	struct section_list *l = ctx;
	l->count[s->type < 5 ? s->type : 0]++;
	if (l->print)
		printf("  %-7s offset %12llu  stored %10llu  raw %10llu  %-4s  %6llu blocks\n",
		       kvt_snapshot_section_name(s->type),
		       (unsigned long long)s->offset,
		       (unsigned long long)s->stored_bytes,
		       (unsigned long long)s->raw_bytes, s->codec ? "zstd" : "none",
		       (unsigned long long)s->n_blocks);
	return 0;
}

static void print_snapshot(const char *file, const struct kvt_snapshot_info *i,
			   const struct section_list *l)
{
	const struct kvt_shape *s = &i->config.shape;
	const struct kvt_codec_params *c = &i->config.cold;
	const char *codec = kvt_codec_name(c->id);
	char b[32];
	printf("file          %s (%llu bytes)\n", file,
	       (unsigned long long)i->file_bytes);
	printf("format        kvtier snapshot, version %u\n", i->version);
	printf("name          %s\n", i->name);
	printf("shape         %u layers, %u kv heads, head dim %u, %s\n",
	       s->n_layers, s->n_kv_heads, s->head_dim, kvt_dtype_name(s->dtype));
	printf("block         %u tokens, %zu bytes raw\n", s->block_tokens,
	       kvt_block_bytes(s));
	printf("cold codec    %s", codec ? codec : "?");
	if (c->id == KVT_CODEC_KIVI)
		printf(", %u bits, group %u", c->bits, c->group);
	if (c->id == KVT_CODEC_ZIPCACHE)
		printf(", %u/%u bits, salient ratio %.2f", c->bits, c->high_bits,
		       c->salient_ratio);
	printf("\nrecent tokens %u\n", i->config.recent_tokens);
	printf("tokens        %llu (layer 0)\nblocks        %llu\n",
	       (unsigned long long)i->n_tokens, (unsigned long long)i->n_blocks);
	printf("payload       %s stored block bytes\n",
	       kvt_cli_fmt_bytes(i->payload_bytes, b, sizeof b));
	printf("metadata      %llu blobs, %s\n", (unsigned long long)i->n_meta,
	       kvt_cli_fmt_bytes(i->meta_bytes, b, sizeof b));
	printf("sections      %llu (%llu name, %llu blocks, %llu meta, %llu end)\n",
	       (unsigned long long)i->n_sections,
	       (unsigned long long)l->count[KVT_SNAP_NAME],
	       (unsigned long long)l->count[KVT_SNAP_BLOCKS],
	       (unsigned long long)l->count[KVT_SNAP_META],
	       (unsigned long long)l->count[KVT_SNAP_END]);
	printf("checksums     ok (header, every section and every block)\n");
}

static int cmd_inspect(const struct snap_args *a)
{
	const char *file = a->operand[0];
	struct kvt_snapshot_info info = {0};
	struct section_list l = {.print = a->sections};
	struct meter m;
	if (a->n_operands != 1 || a->as || a->zstd || a->data_dir || a->socket) {
		usage(stderr);
		return 2;
	}
	meter_start(&m, a, "verifying");
	struct kvt_snapshot_opts o = {.progress = show_progress, .progress_ctx = &m,
				      .section = list_section, .section_ctx = &l};
	if (a->sections)
		printf("sections of %s:\n", file);
	int rc = kvt_snapshot_inspect(file, &o, &info);
	meter_end(&m);
	if (rc == KVT_EVERSION)
		fprintf(stderr, "kvtier snapshot: %s is format version %u; this "
			"kvtier reads version %d\n", file, info.version,
			KVT_SNAPSHOT_VERSION);
	if (rc)
		return fail(file, rc);
	print_snapshot(file, &info, &l);
	return 0;
}

int kvt_cmd_snapshot(int argc, char **argv)
{
	struct snap_args a;
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	int st = parse(argc - 1, argv + 1, &a);
	if (st >= 0)
		return st;
	if (!strcmp(sub, "save"))
		return cmd_save(&a);
	if (!strcmp(sub, "load"))
		return cmd_load(&a);
	if (!strcmp(sub, "inspect"))
		return cmd_inspect(&a);
	fprintf(stderr, "kvtier snapshot: unknown subcommand '%s'\n\n", sub);
	usage(stderr);
	return 2;
}
