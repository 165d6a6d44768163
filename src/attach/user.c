/* Users and shells: --user names looked up in the container's /etc/passwd
 * and /etc/group, the default shell in the tools' /etc/passwd. Both trees
 * are read through the symlink-safe resolver (ns/path.c): a hostile
 * container cannot point /etc/passwd at a host file or a FIFO. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/path.h"

#define DB_MAX (4 * 1024 * 1024)

/* Read the regular file `path` of the tree at rootfd; NULL if it is not one. */
static char *read_in_tree(int rootfd, const char *path)
{
    cleanup_err struct err *e = NULL;
    cleanup_close int fd = path_resolve_in_root(rootfd, path, PATH_NO_CREATE, "file", &e);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return NULL;
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
    char *data = NULL;
    size_t len;
    if (read_file_at(AT_FDCWD, self, DB_MAX, &data, &len, &e) < 0)
        return NULL;
    return data;
}

/* Field `field` (0-based) of the first line of a colon-separated database
 * whose field `key_field` equals key; a new string or NULL. */
static char *db_lookup(const char *db, int key_field, const char *key, int field)
{
    for (const char *l = db; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        cleanup_free char *line = strndup(l, len);
        char *fields[8] = {0};
        int n = 0;
        for (char *s = line; n < 8;) {
            fields[n++] = s;
            char *c = strchr(s, ':');
            if (c == NULL)
                break;
            *c = '\0';
            s = c + 1;
        }
        if (key_field < n && field < n && strcmp(fields[key_field], key) == 0)
            return xstrdup(fields[field]);
    }
    return NULL;
}

static int parse_id(const char *s, uint32_t *out)
{
    uint64_t v;
    if (parse_u64(s, UINT32_MAX - 1, &v) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int attach_user_parse(int rootfd, const char *spec, uid_t *uid, gid_t *gid, struct err **err)
{
    cleanup_free char *u = xstrdup(spec);
    char *group = strchr(u, ':');
    if (group)
        *group++ = '\0';
    if (u[0] == '\0' || (group && group[0] == '\0'))
        return err_input(err, "--user `%s` must be NAME or UID, optionally :GROUP or :GID", spec);
    cleanup_free char *passwd = NULL;
    uint32_t v;
    bool have_gid = false;
    if (parse_id(u, &v) == 0) {
        *uid = v;
        passwd = read_in_tree(rootfd, "/etc/passwd");
        char key[16];
        snprintf(key, sizeof(key), "%u", v);
        cleanup_free char *g = passwd ? db_lookup(passwd, 2, key, 3) : NULL;
        if (g && parse_id(g, &v) == 0) {
            *gid = v;
            have_gid = true;
        }
    } else {
        passwd = read_in_tree(rootfd, "/etc/passwd");
        cleanup_free char *id = passwd ? db_lookup(passwd, 0, u, 2) : NULL;
        cleanup_free char *g = passwd ? db_lookup(passwd, 0, u, 3) : NULL;
        if (id == NULL || parse_id(id, &v) < 0)
            return err_input(err, "--user: no user `%s` in the container's /etc/passwd", u);
        *uid = v;
        if (g && parse_id(g, &v) == 0) {
            *gid = v;
            have_gid = true;
        }
    }
    if (group) {
        if (parse_id(group, &v) == 0) {
            *gid = v;
        } else {
            cleanup_free char *db = read_in_tree(rootfd, "/etc/group");
            cleanup_free char *id = db ? db_lookup(db, 0, group, 2) : NULL;
            if (id == NULL || parse_id(id, &v) < 0)
                return err_input(err, "--user: no group `%s` in the container's /etc/group",
                                 group);
            *gid = v;
        }
        have_gid = true;
    }
    if (!have_gid)
        *gid = *uid == 0 ? 0 : 65534;
    return 0;
}

/* True if path is a regular file in the tree at rootfd. */
static bool has_file(int rootfd, const char *path)
{
    cleanup_err struct err *e = NULL;
    cleanup_close int fd = path_resolve_in_root(rootfd, path, PATH_NO_CREATE, "shell", &e);
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

char *attach_user_shell(int rootfd, uid_t uid, const char *fallback)
{
    cleanup_free char *passwd = read_in_tree(rootfd, "/etc/passwd");
    char key[16];
    snprintf(key, sizeof(key), "%u", (unsigned)uid);
    cleanup_free char *shell = passwd ? db_lookup(passwd, 2, key, 6) : NULL;
    if (shell && shell[0] == '/' && has_file(rootfd, shell))
        return steal_pointer(&shell);
    if (fallback && fallback[0] == '/' && has_file(rootfd, fallback))
        return xstrdup(fallback);
    return xstrdup("/bin/sh");
}
