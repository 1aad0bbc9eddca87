/* cmd_codec.c - placeholder for `kvtier codec`. */
#include <stdio.h>

#include "commands.h"

int kvt_cmd_codec(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "kvtier codec: not implemented yet\n");
	return 1;
}
