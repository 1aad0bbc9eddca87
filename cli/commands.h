/* commands.h - the subcommands of the kvtier CLI (one file each). */
#ifndef KVTIER_CLI_COMMANDS_H
#define KVTIER_CLI_COMMANDS_H

/* Each returns the process exit status (0 ok, 1 failure, 2 usage error).
 * argv[0] is the subcommand name. */
int kvt_cmd_codec(int argc, char **argv);

#endif
