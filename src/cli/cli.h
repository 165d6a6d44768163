/* The `cocoon` command line: one function per command, each parsing its
 * options and calling one library function. */
#pragma once
#include "runtime/container.h"

struct err;

/* Signature of a command: argv[0] is the command name. Returns the exit
 * status, or <0 with *err set. */
typedef int (*cli_cmd_fn)(const struct runtime *rt, int argc, char **argv, struct err **err);

int cmd_create(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_start(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_state(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_kill(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_delete(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_run(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_list(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_spec(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_exec(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_pause(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_resume(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_ps(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_update(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_events(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_vm(const struct runtime *rt, int argc, char **argv, struct err **err);
/* `cocoon vm connect SOCKET PORT`: relay stdio to a guest's vsock port. */
int cmd_vm_connect(int argc, char **argv, struct err **err);
int cmd_fs(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_attach(const struct runtime *rt, int argc, char **argv, struct err **err);
int cmd_features(const struct runtime *rt, int argc, char **argv, struct err **err);

/* Parse the options shared by create and run; `run` adds --detach.
 * Returns the index of the container id in argv. */
int cli_parse_create(int argc, char **argv, bool is_run, struct create_opts *o, bool *detach,
                     struct err **err);

/* Check that exactly `n` positional arguments remain after optind. */
int cli_want_args(int argc, char **argv, int n, const char *usage, struct err **err);
