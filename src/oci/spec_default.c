#include "oci/spec_default.h"

#include <json-c/json.h>
#include <string.h>

#include "common/util.h"
#include "build_config.h"

static const char default_spec[] =
    "{\n"
    "  \"ociVersion\": \"" OCI_VERSION "\",\n"
    "  \"process\": {\n"
    "    \"terminal\": true,\n"
    "    \"user\": { \"uid\": 0, \"gid\": 0 },\n"
    "    \"args\": [ \"sh\" ],\n"
    "    \"env\": [ \"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\n"
    "             \"TERM=xterm\" ],\n"
    "    \"cwd\": \"/\",\n"
    "    \"capabilities\": {\n"
    "      \"bounding\": [ \"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\" ],\n"
    "      \"effective\": [ \"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\" ],\n"
    "      \"permitted\": [ \"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\" ],\n"
    "      \"ambient\": [ \"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\" ]\n"
    "    },\n"
    "    \"rlimits\": [ { \"type\": \"RLIMIT_NOFILE\", \"hard\": 1024, \"soft\": 1024 } ],\n"
    "    \"noNewPrivileges\": true\n"
    "  },\n"
    "  \"root\": { \"path\": \"rootfs\", \"readonly\": true },\n"
    "  \"hostname\": \"cocoon\",\n"
    "  \"mounts\": [\n"
    "    { \"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\" },\n"
    "    { \"destination\": \"/dev\", \"type\": \"tmpfs\", \"source\": \"tmpfs\",\n"
    "      \"options\": [ \"nosuid\", \"strictatime\", \"mode=755\", \"size=65536k\" ] },\n"
    "    { \"destination\": \"/dev/pts\", \"type\": \"devpts\", \"source\": \"devpts\",\n"
    "      \"options\": [ \"nosuid\", \"noexec\", \"newinstance\", \"ptmxmode=0666\", "
    "\"mode=0620\", \"gid=5\" ] },\n"
    "    { \"destination\": \"/dev/shm\", \"type\": \"tmpfs\", \"source\": \"shm\",\n"
    "      \"options\": [ \"nosuid\", \"noexec\", \"nodev\", \"mode=1777\", \"size=65536k\" ] },\n"
    "    { \"destination\": \"/dev/mqueue\", \"type\": \"mqueue\", \"source\": \"mqueue\",\n"
    "      \"options\": [ \"nosuid\", \"noexec\", \"nodev\" ] },\n"
    "    { \"destination\": \"/sys\", \"type\": \"sysfs\", \"source\": \"sysfs\",\n"
    "      \"options\": [ \"nosuid\", \"noexec\", \"nodev\", \"ro\" ] },\n"
    "    { \"destination\": \"/sys/fs/cgroup\", \"type\": \"cgroup\", \"source\": \"cgroup\",\n"
    "      \"options\": [ \"nosuid\", \"noexec\", \"nodev\", \"relatime\", \"ro\" ] }\n"
    "  ],\n"
    "  \"linux\": {\n"
    "    \"resources\": { \"devices\": [ { \"allow\": false, \"access\": \"rwm\" } ] },\n"
    "    \"namespaces\": [ { \"type\": \"pid\" }, { \"type\": \"network\" }, { \"type\": \"ipc\" "
    "},\n"
    "                    { \"type\": \"uts\" }, { \"type\": \"mount\" }, { \"type\": \"cgroup\" "
    "} ],\n"
    "    \"maskedPaths\": [ \"/proc/acpi\", \"/proc/asound\", \"/proc/kcore\", \"/proc/keys\",\n"
    "      \"/proc/latency_stats\", \"/proc/timer_list\", \"/proc/timer_stats\",\n"
    "      \"/proc/sched_debug\", \"/sys/firmware\", \"/proc/scsi\" ],\n"
    "    \"readonlyPaths\": [ \"/proc/bus\", \"/proc/fs\", \"/proc/irq\", \"/proc/sys\",\n"
    "      \"/proc/sysrq-trigger\" ],\n"
    /* cocoon's default profile: everything is allowed except what a
     * container never needs and what has been the way out of containers
     * (module loading, kexec, mounts, namespaces, keyrings, bpf, ptrace...).
     * A short deny list keeps the filter small and quick to build. */
    "    \"seccomp\": {\n"
    "      \"defaultAction\": \"SCMP_ACT_ALLOW\",\n"
    "      \"architectures\": [ \"SCMP_ARCH_X86_64\", \"SCMP_ARCH_X86\", \"SCMP_ARCH_X32\" ],\n"
    "      \"syscalls\": [ {\n"
    "        \"names\": [ \"acct\", \"add_key\", \"bpf\", \"clock_adjtime\", \"clock_settime\",\n"
    "          \"create_module\", \"delete_module\", \"finit_module\", \"fsconfig\", \"fsmount\",\n"
    "          \"fsopen\", \"fspick\", \"get_kernel_syms\", \"init_module\", \"iopl\", \"ioperm\",\n"
    "          \"kcmp\", \"kexec_file_load\", \"kexec_load\", \"keyctl\", \"lookup_dcookie\",\n"
    "          \"mount\", \"mount_setattr\", \"move_mount\", \"name_to_handle_at\", \"nfsservctl\",\n"
    "          \"open_by_handle_at\", \"open_tree\", \"perf_event_open\", \"pivot_root\",\n"
    "          \"process_vm_readv\", \"process_vm_writev\", \"ptrace\", \"query_module\",\n"
    "          \"quotactl\", \"quotactl_fd\", \"reboot\", \"request_key\", \"setns\",\n"
    "          \"settimeofday\", \"stime\", \"swapoff\", \"swapon\", \"syslog\", \"umount\",\n"
    "          \"umount2\", \"unshare\", \"uselib\", \"userfaultfd\", \"ustat\", \"vhangup\",\n"
    "          \"vm86\", \"vm86old\", \"_sysctl\", \"sysfs\", \"adjtimex\" ],\n"
    "        \"action\": \"SCMP_ACT_ERRNO\",\n"
    "        \"errnoRet\": 1\n"
    "      } ]\n"
    "    }\n"
    "  }\n"
    "}\n";

static struct json_object *mapping(uid_t host)
{
    struct json_object *arr = json_object_new_array();
    struct json_object *m = json_object_new_object();
    json_object_object_add(m, "containerID", json_object_new_int(0));
    json_object_object_add(m, "hostID", json_object_new_int64(host));
    json_object_object_add(m, "size", json_object_new_int(1));
    json_object_array_add(arr, m);
    return arr;
}

char *oci_spec_default(bool rootless, uid_t uid, gid_t gid)
{
    if (!rootless)
        return xstrdup(default_spec);
    struct json_object *root = json_tokener_parse(default_spec);
    struct json_object *lx, *ns, *mounts;
    json_object_object_get_ex(root, "linux", &lx);
    json_object_object_del(lx, "resources");
    json_object_object_get_ex(lx, "namespaces", &ns);
    /* network stays shared (no way to wire it up unprivileged); user added */
    for (size_t i = json_object_array_length(ns); i-- > 0;) {
        struct json_object *t;
        json_object_object_get_ex(json_object_array_get_idx(ns, i), "type", &t);
        if (strcmp(json_object_get_string(t), "network") == 0)
            json_object_array_del_idx(ns, i, 1);
    }
    struct json_object *u = json_object_new_object();
    json_object_object_add(u, "type", json_object_new_string("user"));
    json_object_array_add(ns, u);
    json_object_object_add(lx, "uidMappings", mapping(uid));
    json_object_object_add(lx, "gidMappings", mapping(gid));
    /* devpts gid=5 and a fresh sysfs need privilege: drop / bind instead */
    json_object_object_get_ex(root, "mounts", &mounts);
    for (size_t i = 0; i < json_object_array_length(mounts); i++) {
        struct json_object *m = json_object_array_get_idx(mounts, i), *d, *opts;
        json_object_object_get_ex(m, "destination", &d);
        const char *dest = json_object_get_string(d);
        if (strcmp(dest, "/dev/pts") == 0 && json_object_object_get_ex(m, "options", &opts))
            json_object_array_del_idx(opts, json_object_array_length(opts) - 1, 1);
        if (strcmp(dest, "/sys") == 0) {
            json_object_object_add(m, "type", json_object_new_string("none"));
            json_object_object_add(m, "source", json_object_new_string("/sys"));
            struct json_object *o = json_object_new_array();
            const char *bind_opts[] = {"rbind", "nosuid", "noexec", "nodev", "ro"};
            for (size_t k = 0; k < 5; k++)
                json_object_array_add(o, json_object_new_string(bind_opts[k]));
            json_object_object_add(m, "options", o);
        }
    }
    char *r = xstrdup(json_object_to_json_string_ext(
        root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(root);
    return r;
}
