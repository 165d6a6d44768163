/* linux.maskedPaths, linux.readonlyPaths and linux.sysctl: the last
 * touches of a container's file systems, shared by the namespace init
 * (paths in its new root) and cocoon-init (paths resolved in the guest's
 * container root). */
#pragma once

struct err;
struct oci_kv;

/* Mask the path open at fd (O_PATH, not followed): an empty read-only tmpfs
 * over a directory, /dev/null over anything else; a symlink is left alone.
 * `path` names it in messages. */
int ns_protect_mask(int fd, const char *path, struct err **err);

/* Bind the path open at fd onto itself read-only (nosuid, nodev, noexec;
 * the mounts below it too). */
int ns_protect_readonly(int fd, const char *path, struct err **err);

/* Write one linux.sysctl entry ("net.ipv4.ip_forward" = "1") to /proc/sys;
 * keys with '/', ".." or a leading '.' are refused. */
int ns_sysctl_write(const struct oci_kv *kv, struct err **err);
