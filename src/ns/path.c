#include "ns/path.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

#define MAX_SYMLINKS 40
#define MAX_DEPTH 512

struct walk {
    int fds[MAX_DEPTH]; /* fds[0] is the root; fds[depth] is the current dir */
    int depth;
};

static void walk_close(struct walk *w)
{
    for (int i = 1; i <= w->depth; i++)
        close(w->fds[i]);
    w->depth = 0;
}

static int walk_cur(struct walk *w)
{
    return w->fds[w->depth];
}

/* Create the missing component `name` in the current directory. */
static int create_component(int dirfd, const char *name, bool as_file)
{
    if (as_file) {
        int fd = openat(dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
            return errno == EEXIST ? 0 : -1;
        close(fd);
        return 0;
    }
    if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

int path_resolve_in_root(int rootfd, const char *path, enum path_create create,
                         const char *label, struct err **err)
{
    /* `rest` holds the part of the path still to walk; symlink targets are
     * spliced in front of it. */
    size_t cap = strlen(path) + 1;
    if (cap > PATH_MAX)
        return err_make(err, ENAMETOOLONG, "%s `%s`", label, path);
    cleanup_free char *rest = xstrdup(path);
    struct walk w = {.depth = 0};
    w.fds[0] = rootfd;
    int links = 0;
    /* While walking the target of an absolute symlink (up to abs_end in
     * `rest`), a missing component is an error rather than created. */
    const char *abs_end = NULL;
    const char *abs_link = NULL;
    cleanup_free char *abs_link_buf = NULL;
    char *p = rest;

    for (;;) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        char *slash = strchr(p, '/');
        bool last;
        if (slash) {
            *slash = '\0';
            char *q = slash + 1;
            while (*q == '/')
                q++;
            last = *q == '\0';
        } else {
            last = true;
        }
        char *name = p;
        p = slash ? slash + 1 : p + strlen(p);

        if (strcmp(name, ".") == 0)
            continue;
        if (strcmp(name, "..") == 0) {
            if (w.depth == 0) {
                walk_close(&w);
                return err_make(err, EXDEV, "%s `%s` escapes the rootfs through `..`", label,
                                path);
            }
            close(w.fds[w.depth--]);
            continue;
        }
        struct stat st;
        if (fstatat(walk_cur(&w), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT || create == PATH_NO_CREATE) {
                int e = errno;
                walk_close(&w);
                return err_make(err, e, "%s `%s`", label, path);
            }
            if (abs_end && name < abs_end) {
                /* An absolute symlink means "inside the container", but one
                 * whose target is missing there most likely meant the host. */
                walk_close(&w);
                return err_make(err, EXDEV,
                                "%s `%s` escapes the rootfs through symlink `%s` (its target "
                                "does not exist inside the rootfs)",
                                label, path, abs_link);
            }
            if (create_component(walk_cur(&w), name, last && create == PATH_MKFILE) < 0 ||
                fstatat(walk_cur(&w), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                int e = errno;
                walk_close(&w);
                return err_make(err, e, "%s `%s`: create `%s`", label, path, name);
            }
        }
        if (S_ISLNK(st.st_mode)) {
            if (++links > MAX_SYMLINKS) {
                walk_close(&w);
                return err_make(err, ELOOP, "%s `%s`", label, path);
            }
            char target[PATH_MAX];
            ssize_t n = readlinkat(walk_cur(&w), name, target, sizeof(target) - 1);
            if (n < 0) {
                int e = errno;
                walk_close(&w);
                return err_make(err, e, "%s `%s`: readlink `%s`", label, path, name);
            }
            target[n] = '\0';
            if (n == 0) {
                walk_close(&w);
                return err_make(err, ENOENT, "%s `%s`: empty symlink `%s`", label, path, name);
            }
            if (target[0] == '/') {
                /* Re-root at the rootfs, as the container will see it. */
                for (int i = 1; i <= w.depth; i++)
                    close(w.fds[i]);
                w.depth = 0;
                free(abs_link_buf);
                abs_link_buf = xasprintf("%s -> %s", name, target);
                abs_link = abs_link_buf;
            }
            size_t rl = strlen(p), tl = (size_t)n;
            size_t abs_left = abs_end && p < abs_end ? (size_t)(abs_end - p) : 0;
            if (tl + rl + 2 > PATH_MAX) {
                walk_close(&w);
                return err_make(err, ENAMETOOLONG, "%s `%s`", label, path);
            }
            char *nr = xmalloc(tl + rl + 2);
            memcpy(nr, target, tl);
            nr[tl] = '/';
            memcpy(nr + tl + 1, p, rl + 1);
            free(rest);
            rest = nr;
            p = rest;
            if (target[0] == '/')
                abs_end = rest + tl;
            else if (abs_left)
                abs_end = rest + tl + 1 + (abs_left < rl ? abs_left : rl);
            else
                abs_end = NULL;
            continue;
        }
        if (!last && !S_ISDIR(st.st_mode)) {
            walk_close(&w);
            return err_make(err, ENOTDIR, "%s `%s`: `%s` is not a directory", label, path, name);
        }
        if (w.depth + 1 >= MAX_DEPTH) {
            walk_close(&w);
            return err_make(err, ENAMETOOLONG, "%s `%s`", label, path);
        }
        int fd = openat(walk_cur(&w), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            walk_close(&w);
            return err_make(err, e, "%s `%s`: open `%s`", label, path, name);
        }
        w.fds[++w.depth] = fd;
    }
    int result;
    if (w.depth == 0) {
        result = openat(rootfd, ".", O_PATH | O_CLOEXEC);
        if (result < 0)
            return err_make(err, errno, "%s `%s`", label, path);
    } else {
        result = w.fds[w.depth];
        w.depth--;
    }
    walk_close(&w);
    return result;
}

int path_resolve_parent(int rootfd, const char *path, const char **leaf, const char *label,
                        struct err **err)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    const char *slash = memrchr(path, '/', n);
    const char *name = slash ? slash + 1 : path;
    size_t nl = (size_t)(path + n - name);
    if (nl == 0 || (nl == 1 && name[0] == '.') || (nl == 2 && name[0] == '.' && name[1] == '.') ||
        name[nl] != '\0')
        return err_make(err, EINVAL, "%s `%s`: not a file name", label, path);
    cleanup_free char *dir = slash ? strndup(path, (size_t)(slash - path)) : xstrdup(".");
    if (dir == NULL)
        abort();
    *leaf = name;
    int fd = path_resolve_in_root(rootfd, dir[0] ? dir : "/", PATH_MKDIR, label, err);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode))) {
        close(fd);
        return err_make(err, ENOTDIR, "%s `%s`: `%s` is not a directory", label, path, dir);
    }
    return fd;
}
