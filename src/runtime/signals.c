#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "runtime/container.h"

static const struct {
    const char *name;
    int sig;
} sigs[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"TRAP", SIGTRAP}, {"ABRT", SIGABRT}, {"IOT", SIGIOT}, {"BUS", SIGBUS},
    {"FPE", SIGFPE}, {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG},
    {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH}, {"IO", SIGIO}, {"POLL", SIGPOLL}, {"PWR", SIGPWR},
    {"SYS", SIGSYS},
};

int signal_parse(const char *s)
{
    uint64_t n;
    if (parse_u64(s, (uint64_t)SIGRTMAX, &n) == 0)
        return n >= 1 ? (int)n : -1;
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (strcasecmp(s, sigs[i].name) == 0)
            return sigs[i].sig;
    /* RTMIN+n / RTMAX-n */
    if (strncasecmp(s, "RTMIN", 5) == 0 || strncasecmp(s, "RTMAX", 5) == 0) {
        bool min = toupper((unsigned char)s[3]) == 'I';
        int base = min ? SIGRTMIN : SIGRTMAX;
        if (s[5] == '\0')
            return base;
        if ((min && s[5] != '+') || (!min && s[5] != '-'))
            return -1;
        if (parse_u64(s + 6, 64, &n) < 0)
            return -1;
        int sig = min ? base + (int)n : base - (int)n;
        return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : -1;
    }
    return -1;
}
