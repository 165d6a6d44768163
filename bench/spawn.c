/* spawn: run one command and report what it cost, for bench/run.py.
 *
 *   spawn [-l LOGFILE] [-n NSFILE] [-x] -- PROGRAM [ARGS...]
 *
 * Prints one line on stdout:
 *   wall_ns=N utime_us=N stime_us=N maxrss_kb=N status=N [hwm_kb=N]
 *
 * wall_ns   CLOCK_MONOTONIC from just before fork() to just after wait4()
 *           returned: fork + exec of PROGRAM + everything it does + reaping.
 * utime_us, stime_us, maxrss_kb
 *           the rusage wait4() returns for PROGRAM: its own CPU time plus
 *           that of every descendant that was waited for (by PROGRAM or by
 *           a waited-for descendant); maxrss is the largest peak RSS of any
 *           single one of those processes (a max, not a sum).
 * status    exit code, or 128+signal.
 * hwm_kb    (-x only) VmHWM of PROGRAM's own address space, read from
 *           /proc/PID/status while PROGRAM is stopped at exit by ptrace
 *           (PTRACE_O_TRACEEXIT). Only PROGRAM itself is traced, not its
 *           children; tracing slows it down, so -x runs are not timed runs.
 *
 * Why a C helper: ru_maxrss also counts the address space a process had
 * before it exec'd (the kernel folds the old mm's peak into it at exec).
 * Forked from Python, that is a copy of the whole interpreter (10+ MiB) and
 * would swamp a runtime's real peak. Forked from this small static program,
 * the pre-exec floor is ~100 KiB (bench/run.py measures it: the "floor" row).
 *
 * -n NSFILE: join that mount namespace (setns) before timing starts, so
 * PROGRAM runs there; the cwd becomes that namespace's /.
 *
 * PROGRAM's stdout and stderr go to LOGFILE (opened before timing starts),
 * its stdin is whatever spawn got.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long read_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void usage(void)
{
    fprintf(stderr, "usage: spawn [-l LOGFILE] [-n NSFILE] [-x] -- PROGRAM [ARGS...]\n");
    exit(125);
}

int main(int argc, char **argv)
{
    const char *logfile = NULL, *nsfile = NULL;
    int trace = 0, opt;
    while ((opt = getopt(argc, argv, "+l:n:x")) != -1) {
        switch (opt) {
        case 'l': logfile = optarg; break;
        case 'n': nsfile = optarg; break;
        case 'x': trace = 1; break;
        default: usage();
        }
    }
    if (optind >= argc)
        usage();
    char **cmd = argv + optind;

    int logfd = -1;
    if (logfile) {
        logfd = open(logfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (logfd < 0) {
            fprintf(stderr, "spawn: %s: %s\n", logfile, strerror(errno));
            return 125;
        }
    }
    if (nsfile) {
        int nsfd = open(nsfile, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0 || setns(nsfd, CLONE_NEWNS) < 0) {
            fprintf(stderr, "spawn: join mount namespace %s: %s\n", nsfile, strerror(errno));
            return 125;
        }
        close(nsfd);
    }
    /* The runtime must not inherit our result pipe as its stdout. */
    int outfd = dup(STDOUT_FILENO);
    if (outfd < 0 || fcntl(outfd, F_SETFD, FD_CLOEXEC) < 0) {
        perror("spawn: dup");
        return 125;
    }
    FILE *out = fdopen(outfd, "w");
    if (!out) {
        perror("spawn: fdopen");
        return 125;
    }
    if (logfd >= 0) {
        if (dup2(logfd, STDOUT_FILENO) < 0 || dup2(logfd, STDERR_FILENO) < 0) {
            perror("spawn: dup2");
            return 125;
        }
    }

    long long t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("spawn: fork");
        return 125;
    }
    if (pid == 0) {
        if (trace && ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
            _exit(126);
        execvp(cmd[0], cmd);
        _exit(127);
    }

    int status = 0;
    long hwm = -1;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        pid_t r = wait4(pid, &status, 0, &ru);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("spawn: wait4");
            return 125;
        }
        if (!WIFSTOPPED(status))
            break;
        /* Only with -x: PROGRAM is a tracee. */
        int sig = WSTOPSIG(status), event = status >> 16, inject = 0;
        if (sig == SIGTRAP && event == 0 && hwm < 0 && !(status & 0x80)) {
            /* the stop after the first exec: arm the exit event */
            ptrace(PTRACE_SETOPTIONS, pid, NULL,
                   (void *)(long)(PTRACE_O_TRACEEXIT | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL));
        } else if (sig == SIGTRAP && event == PTRACE_EVENT_EXIT) {
            hwm = read_hwm_kb(pid);
        } else if (sig == SIGTRAP && event != 0) {
            /* other ptrace events (exec): nothing to deliver */
        } else {
            inject = sig;   /* a real signal: pass it on */
        }
        ptrace(PTRACE_CONT, pid, NULL, (void *)(long)inject);
    }
    long long t1 = now_ns();

    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    long long ut = (long long)ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec;
    long long st = (long long)ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
    fprintf(out, "wall_ns=%lld utime_us=%lld stime_us=%lld maxrss_kb=%ld status=%d",
            t1 - t0, ut, st, ru.ru_maxrss, code);
    if (trace)
        fprintf(out, " hwm_kb=%ld", hwm);
    fprintf(out, "\n");
    fclose(out);
    return 0;
}
