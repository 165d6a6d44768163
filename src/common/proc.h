/* /proc/<pid> helpers: start time (for pid reuse detection) and liveness. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Read the state letter and start time (field 22, clock ticks since boot)
 * of pid. Returns 0, or -1 with errno (ENOENT/ESRCH if the pid is gone). */
int proc_stat(pid_t pid, char *state, uint64_t *start_time);

/* True if pid is alive, not a zombie, and started at start_time. */
bool proc_alive(pid_t pid, uint64_t start_time);

/* SIGKILL our child pid and reap it. */
void proc_kill_reap(pid_t pid);

/* pidfd_open(2); -1 with errno on failure. */
int proc_pidfd_open(pid_t pid);

/* pidfd_send_signal(2). */
int proc_pidfd_signal(int pidfd, int sig);

/* Wait up to timeout_ms for the process behind pidfd to exit; true if it did. */
bool proc_pidfd_wait(int pidfd, int timeout_ms);

/* Open a pidfd for pid and verify it is still the process that started at
 * start_time (closes the pid reuse race). -1/ESRCH if not. */
int proc_pidfd_open_checked(pid_t pid, uint64_t start_time);

/* The CLONE_NEW* flags of the namespaces in directory ns_dir (relative to
 * dirfd: "/proc/PID/ns" with AT_FDCWD, or "ns" with a /proc/PID fd) that
 * differ from the caller's: the ones to setns() into. */
int proc_ns_differing(int dirfd, const char *ns_dir);
