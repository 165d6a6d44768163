/* Path resolution inside an untrusted tree (a bundle's rootfs) that never
 * leaves it: every component is opened O_NOFOLLOW relative to its parent,
 * symlinks are expanded by hand with the tree's root as `/`, and a `..`
 * that would climb above the root is an error. */
#pragma once
#include <sys/types.h>

struct err;

enum path_create {
    PATH_NO_CREATE, /* everything must exist */
    PATH_MKDIR,     /* create missing directories, the last one too */
    PATH_MKFILE,    /* create missing directories and the last as an empty file */
};

/* Resolve `path` inside the tree at rootfd. Returns an O_PATH fd of the
 * result (the last symlink followed too), or <0 with *err naming the path.
 * `label` says what the path is for in messages ("mount destination"). */
int path_resolve_in_root(int rootfd, const char *path, enum path_create create,
                         const char *label, struct err **err);

/* Resolve the parent of `path` (creating directories) and return its O_PATH
 * fd; *leaf points into path at the last component (never empty, . or ..). */
int path_resolve_parent(int rootfd, const char *path, const char **leaf, const char *label,
                        struct err **err);
