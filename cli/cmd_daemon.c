/* cmd_daemon.c - `kvtier ls|stats|drop|info`: talk to a running kvtierd. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "kvtier/client.h"

struct daemon_args {
	const char *socket; /* NULL: the default path */
	const char *name;   /* the NAME operand, when the command takes one */
};

static void usage(FILE *f, const char *cmd, const char *operand,
		  const char *what)
{
	fprintf(f,
		"usage: kvtier %s [--socket PATH]%s%s\n\n%s\n\n"
		"  --socket PATH  daemon socket (default $XDG_RUNTIME_DIR/kvtier.sock,\n"
		"                 else /tmp/kvtier-$UID.sock)\n"
		"  -h, --help     this text\n",
		cmd, operand ? " " : "", operand ? operand : "", what);
}

/* Returns -1 to continue, else the exit status (help or usage error). */
static int parse(int argc, char **argv, const char *operand, const char *what,
		 struct daemon_args *a)
{
	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout, argv[0], operand, what);
			return 0;
		} else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			a->socket = argv[++i];
		} else if (!strncmp(argv[i], "--socket=", 9)) {
			a->socket = argv[i] + 9;
		} else if (operand && !a->name && argv[i][0] != '-') {
			a->name = argv[i];
		} else {
			fprintf(stderr, "kvtier %s: unexpected '%s'\n", argv[0], argv[i]);
			usage(stderr, argv[0], operand, what);
			return 2;
		}
	}
	if (operand && !a->name) {
		usage(stderr, argv[0], operand, what);
		return 2;
	}
	return -1;
}

static int connect_or_say(const char *cmd, const struct daemon_args *a,
			  struct kvt_client **cl)
{
	int rc = kvt_client_connect(a->socket, cl);
	if (rc) {
		char def[108] = "";
		kvt_client_default_socket(def, sizeof def);
		fprintf(stderr, "kvtier %s: cannot reach kvtierd at %s: %s\n", cmd,
			a->socket ? a->socket : def, kvt_strerror(rc));
	}
	return rc;
}

static int fail(const char *cmd, const char *what, int rc)
{
	fprintf(stderr, "kvtier %s: %s: %s\n", cmd, what, kvt_strerror(rc));
	return 1;
}

static void human(uint64_t bytes, char *buf, size_t cap)
{
	const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

int kvt_cmd_ls(int argc, char **argv)
{
	struct daemon_args a;
	int st = parse(argc, argv, NULL, "Lists the caches of the daemon.", &a);
	struct kvt_client *cl;
	if (st >= 0)
		return st;
	if (connect_or_say(argv[0], &a, &cl))
		return 1;
	struct kvt_cache_info *infos;
	size_t n;
	int rc = kvt_client_list(cl, &infos, &n);
	kvt_client_close(cl);
	if (rc)
		return fail(argv[0], "list", rc);
	printf("%-32s %10s %10s %12s %12s\n", "NAME", "TOKENS", "BLOCKS", "RAW", "STORED");
	for (size_t i = 0; i < n; i++) {
		char raw[32], stored[32];
		human(infos[i].raw_bytes, raw, sizeof raw);
		human(infos[i].stored_bytes, stored, sizeof stored);
		printf("%-32s %10llu %10llu %12s %12s\n", infos[i].name,
		       (unsigned long long)infos[i].n_tokens,
		       (unsigned long long)infos[i].n_blocks, raw, stored);
	}
	free(infos);
	return 0;
}

int kvt_cmd_stats(int argc, char **argv)
{
	struct daemon_args a;
	int st = parse(argc, argv, NULL, "Prints the daemon's store statistics.", &a);
	struct kvt_client *cl;
	if (st >= 0)
		return st;
	if (connect_or_say(argv[0], &a, &cl))
		return 1;
	struct kvt_stats s;
	int rc = kvt_client_stats(cl, &s);
	kvt_client_close(cl);
	if (rc)
		return fail(argv[0], "stats", rc);
	for (int t = 0; t < KVT_TIER_COUNT; t++) {
		char cap[32], used[32];
		if (!s.tier[t].present) {
			printf("tier %-5s absent\n", kvt_tier_name((enum kvt_tier_kind)t));
			continue;
		}
		human(s.tier[t].used_bytes, used, sizeof used);
		human(s.tier[t].capacity, cap, sizeof cap);
		printf("tier %-5s %10s used of %-10s %llu blocks\n",
		       kvt_tier_name((enum kvt_tier_kind)t), used,
		       s.tier[t].capacity ? cap : "unlimited",
		       (unsigned long long)s.tier[t].n_blocks);
	}
	printf("caches      %llu\nblocks      %llu\nraw bytes   %llu\n"
	       "stored      %llu\ncompression %.2fx\ndemotions   %llu\n"
	       "promotions  %llu\n",
	       (unsigned long long)s.n_caches, (unsigned long long)s.n_blocks,
	       (unsigned long long)s.raw_bytes, (unsigned long long)s.stored_bytes,
	       s.compression_ratio, (unsigned long long)s.demotions,
	       (unsigned long long)s.promotions);
	return 0;
}

int kvt_cmd_drop(int argc, char **argv)
{
	struct daemon_args a;
	int st = parse(argc, argv, "NAME", "Deletes the cache NAME and its blocks.", &a);
	struct kvt_client *cl;
	if (st >= 0)
		return st;
	if (connect_or_say(argv[0], &a, &cl))
		return 1;
	int rc = kvt_client_cache_drop(cl, a.name);
	kvt_client_close(cl);
	return rc ? fail(argv[0], a.name, rc) : 0;
}

static void print_info(const struct kvt_cache_info *i)
{
	const struct kvt_shape *s = &i->config.shape;
	const char *codecs[] = {"raw", "kivi", "zipcache"};
	printf("name          %s\nid            %llu\n", i->name,
	       (unsigned long long)i->id);
	printf("shape         %u layers, %u kv heads, head dim %u, %s\n",
	       s->n_layers, s->n_kv_heads, s->head_dim, kvt_dtype_name(s->dtype));
	printf("block         %u tokens, %zu bytes raw\n", s->block_tokens,
	       kvt_block_bytes(s));
	printf("cold codec    %s, %u bits", codecs[i->config.cold.id % 3],
	       i->config.cold.bits);
	if (i->config.cold.id == KVT_CODEC_ZIPCACHE)
		printf(" (salient %u bits, ratio %.2f)", i->config.cold.high_bits,
		       i->config.cold.salient_ratio);
	printf("\nrecent tokens %u\ntokens        %llu\nblocks        %llu\n",
	       i->config.recent_tokens, (unsigned long long)i->n_tokens,
	       (unsigned long long)i->n_blocks);
	printf("raw bytes     %llu\nstored bytes  %llu\n",
	       (unsigned long long)i->raw_bytes,
	       (unsigned long long)i->stored_bytes);
}

int kvt_cmd_info(int argc, char **argv)
{
	struct daemon_args a;
	int st = parse(argc, argv, "NAME", "Describes the cache NAME.", &a);
	struct kvt_client *cl;
	if (st >= 0)
		return st;
	if (connect_or_say(argv[0], &a, &cl))
		return 1;
	struct kvt_client_cache *c;
	struct kvt_cache_info info;
	int rc = kvt_client_cache_open(cl, a.name, &c);
	if (!rc) {
		rc = kvt_client_cache_get_info(c, &info);
		kvt_client_cache_close(c);
	}
	kvt_client_close(cl);
	if (rc)
		return fail(argv[0], a.name, rc);
	print_info(&info);
	return 0;
}
