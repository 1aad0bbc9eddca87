/* commands.h - the subcommands of the kvtier CLI (one file each). */
#ifndef KVTIER_CLI_COMMANDS_H
#define KVTIER_CLI_COMMANDS_H

/* Each returns the process exit status (0 ok, 1 failure, 2 usage error).
 * argv[0] is the subcommand name. */
int kvt_cmd_codec(int argc, char **argv);

/* cmd_retrieve.c: offline block selection on a stored cache. */
int kvt_cmd_retrieve(int argc, char **argv);

/* cmd_daemon.c: clients of a running kvtierd. */
int kvt_cmd_ls(int argc, char **argv);
int kvt_cmd_stats(int argc, char **argv);
int kvt_cmd_drop(int argc, char **argv);
int kvt_cmd_info(int argc, char **argv);

/* cmd_snapshot.c: snapshot save|load|inspect, through kvtierd or offline. */
int kvt_cmd_snapshot(int argc, char **argv);

#endif
