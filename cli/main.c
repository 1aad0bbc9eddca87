/* main.c - `kvtier`: the command-line tool. Dispatches to one file a command. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "kvtier/kvtier.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"codec", kvt_cmd_codec, "encode, decode and inspect quantized tensors"},
	{"retrieve", kvt_cmd_retrieve, "select the blocks a query attends to (offline)"},
	{"ls", kvt_cmd_ls, "list the caches of a running kvtierd"},
	{"stats", kvt_cmd_stats, "print the store statistics of kvtierd"},
	{"info", kvt_cmd_info, "describe one cache held by kvtierd"},
	{"drop", kvt_cmd_drop, "delete a cache held by kvtierd"},
	{"snapshot", kvt_cmd_snapshot, "save a cache to a file, load it, inspect it"},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: kvtier COMMAND [ARGS...]\n\n"
		   "kvtier %d.%d.%d - tiered KV-cache store\n\ncommands:\n",
		KVT_VERSION_MAJOR, KVT_VERSION_MINOR, KVT_VERSION_PATCH);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\nRun 'kvtier COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("kvtier %d.%d.%d\n", KVT_VERSION_MAJOR,
		       KVT_VERSION_MINOR, KVT_VERSION_PATCH);
		return 0;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "kvtier: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
