/* File descriptors over Unix sockets and terminal helpers. */
#pragma once
#include <stdbool.h>

struct err;

/* Send fd with a name as payload over a Unix socket (SCM_RIGHTS). */
int terminal_send_fd(int sock, int fd, const char *name, struct err **err);

/* Receive one fd sent by terminal_send_fd; returns the fd. */
int terminal_recv_fd(int sock, struct err **err);

/* Connect to the Unix socket at path; returns the fd. */
int unix_connect(const char *path, struct err **err);

/* Put the terminal on fd into raw mode, saving the old mode for restore. */
int terminal_make_raw(int fd, void **saved);

/* Restore a mode saved by terminal_make_raw and free it. */
void terminal_restore(int fd, void *saved);
