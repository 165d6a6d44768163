/* process.terminal: a pty made inside the container's devpts; the master
 * goes to the --console-socket peer over SCM_RIGHTS (as runc and crun do). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/terminal.h"
#include "ns/ns.h"

int ns_terminal_setup(const struct oci_process *proc, int console_fd, struct err **err)
{
    if (console_fd < 0)
        return err_make(err, EINVAL, "process.terminal is set but there is no console socket");
    cleanup_close int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return err_make(err, errno, "open /dev/ptmx in the container");
    if (unlockpt(master) < 0)
        return err_make(err, errno, "unlockpt");
    char name[64];
    if (ptsname_r(master, name, sizeof(name)) != 0)
        return err_make(err, errno, "ptsname");
    cleanup_close int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        return err_make(err, errno, "open `%s`", name);
    if (proc->has_console_size) {
        struct winsize ws = {.ws_row = (unsigned short)proc->console_height,
                             .ws_col = (unsigned short)proc->console_width};
        ioctl(slave, TIOCSWINSZ, &ws);
    }
    /* /dev/console is the pty, as in runc. */
    int cfd = open("/dev/console", O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (cfd >= 0) {
        close(cfd);
        if (mount(name, "/dev/console", NULL, MS_BIND, NULL) < 0)
            return err_make(err, errno, "bind `%s` to /dev/console", name);
    }
    if (terminal_send_fd(console_fd, master, name, err) < 0)
        return err_wrap(err, "send the pty to the console socket");
    if (setsid() < 0)
        return err_make(err, errno, "setsid");
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        return err_make(err, errno, "make the pty the controlling terminal");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            return err_make(err, errno, "dup the pty to fd %d", fd);
    return 0;
}
