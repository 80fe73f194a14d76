/*
 * commands.h - the subcommands of the semd binary. Each takes the arguments
 * after its name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 failure, 2 usage error. Only main() exits.
 */
#ifndef SEMD_COMMANDS_H
#define SEMD_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokens_report(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_train(int argc, char **argv);

int cmd_serve(int argc, char **argv);

/* Sets the thread policy of the math libraries for a process whose
 * requests run on pool threads (main.c); returns what was set, for the
 * log. */
const char *main_thread_policy(int pool_threads);

#endif
