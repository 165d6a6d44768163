#include "common/proc.h"

#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int proc_stat(pid_t pid, char *state, uint64_t *start_time)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n <= 0) {
        errno = n < 0 ? e : ESRCH;
        return -1;
    }
    buf[n] = '\0';
    /* comm may hold spaces and parens: fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ') {
        errno = EINVAL;
        return -1;
    }
    p += 2;
    if (state)
        *state = *p;
    /* p is at field 3 (state); start time is field 22. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL) {
            errno = EINVAL;
            return -1;
        }
        p++;
    }
    if (start_time)
        *start_time = strtoull(p, NULL, 10);
    return 0;
}

bool proc_alive(pid_t pid, uint64_t start_time)
{
    char st;
    uint64_t t;
    if (pid <= 0 || proc_stat(pid, &st, &t) < 0)
        return false;
    return st != 'Z' && st != 'X' && t == start_time;
}

int proc_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int proc_pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

bool proc_pidfd_wait(int pidfd, int timeout_ms)
{
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}

int proc_pidfd_open_checked(pid_t pid, uint64_t start_time)
{
    int fd = proc_pidfd_open(pid);
    if (fd < 0)
        return -1;
    uint64_t t;
    char st;
    if (proc_stat(pid, &st, &t) < 0 || t != start_time) {
        close(fd);
        errno = ESRCH;
        return -1;
    }
    return fd;
}

static const struct {
    const char *name;
    int flag;
} ns_files[] = {
    {"user", CLONE_NEWUSER}, {"mnt", CLONE_NEWNS}, {"pid", CLONE_NEWPID},
    {"net", CLONE_NEWNET},   {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
    {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
};

int proc_ns_differing(int dirfd, const char *ns_dir)
{
    int flags = 0;
    for (size_t i = 0; i < sizeof(ns_files) / sizeof(ns_files[0]); i++) {
        char theirs[128], ours[64];
        struct stat a, b;
        snprintf(theirs, sizeof(theirs), "%s/%s", ns_dir, ns_files[i].name);
        snprintf(ours, sizeof(ours), "/proc/self/ns/%s", ns_files[i].name);
        if (fstatat(dirfd, theirs, &a, 0) == 0 && stat(ours, &b) == 0 &&
            (a.st_ino != b.st_ino || a.st_dev != b.st_dev))
            flags |= ns_files[i].flag;
    }
    return flags;
}

void proc_kill_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}
