/* list, spec, features: commands that describe rather than change. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "build_config.h"
#include "oci/spec_default.h"

int cmd_list(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *format = "table";
    bool quiet = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+f:qh", opts, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'q')
            quiet = true;
        else if (c == 'h') {
            printf("usage: cocoon list [--format table|json] [--quiet]\n");
            return 0;
        } else
            return err_make(err, 0, "list: unknown option `%s`", argv[optind - 1]);
    }
    if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
        return err_make(err, 0, "list: unknown format `%s` (table or json)", format);
    if (cli_want_args(argc, argv, 0, "list [--format table|json]", err) < 0)
        return -1;
    struct container_info *list;
    size_t n;
    if (container_list(rt, &list, &n, err) < 0)
        return -1;
    if (quiet) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", list[i].id);
    } else if (strcmp(format, "json") == 0) {
        struct json_object *arr = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
            struct json_object *o = json_object_new_object();
            json_object_object_add(o, "ociVersion", json_object_new_string(OCI_VERSION));
            json_object_object_add(o, "id", json_object_new_string(list[i].id));
            json_object_object_add(o, "pid", json_object_new_int(list[i].pid));
            json_object_object_add(o, "status", json_object_new_string(list[i].status));
            json_object_object_add(o, "bundle", json_object_new_string(list[i].bundle));
            json_object_object_add(o, "created",
                                   json_object_new_string(list[i].created ? list[i].created : ""));
            json_object_object_add(o, "owner", json_object_new_string(""));
            json_object_array_add(arr, o);
        }
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
    } else {
        printf("%-24s %-8s %-10s %-40s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
        for (size_t i = 0; i < n; i++)
            printf("%-24s %-8d %-10s %-40s %s\n", list[i].id, (int)list[i].pid, list[i].status,
                   list[i].bundle, list[i].created ? list[i].created : "");
    }
    container_list_free(list, n);
    return 0;
}

int cmd_spec(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {{"bundle", required_argument, NULL, 'b'},
                                         {"rootless", no_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *bundle = ".";
    bool rootless = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+b:h", opts, NULL)) != -1) {
        if (c == 'b')
            bundle = optarg;
        else if (c == 'r')
            rootless = true;
        else if (c == 'h') {
            printf("usage: cocoon spec [--bundle DIR] [--rootless]\n");
            return 0;
        } else
            return err_make(err, 0, "spec: unknown option `%s`", argv[optind - 1]);
    }
    if (cli_want_args(argc, argv, 0, "spec [--bundle DIR] [--rootless]", err) < 0)
        return -1;
    cleanup_free char *path = xasprintf("%s/config.json", bundle);
    cleanup_free char *doc = oci_spec_default(rootless, getuid(), getgid());
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == EEXIST)
            return err_make(err, 0, "spec: `%s` already exists", path);
        return err_make(err, errno, "spec: create `%s`", path);
    }
    if (write_all(fd, doc, strlen(doc)) < 0)
        return err_make(err, errno, "spec: write `%s`", path);
    return 0;
}

int cmd_features(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    if (cli_want_args(argc, argv, 0, "features", err) < 0)
        return -1;
    printf("{\n"
           "  \"ociVersionMin\": \"1.0.0\",\n"
           "  \"ociVersionMax\": \"%s\",\n"
           "  \"hooks\": [\"prestart\", \"createRuntime\", \"createContainer\", "
           "\"startContainer\", \"poststart\", \"poststop\"],\n"
           "  \"mountOptions\": [\"async\", \"atime\", \"bind\", \"defaults\", \"dev\", "
           "\"diratime\", \"dirsync\", \"exec\", \"lazytime\", \"loud\", \"mand\", \"noatime\", "
           "\"nodev\", \"nodiratime\", \"noexec\", \"nolazytime\", \"nomand\", \"norelatime\", "
           "\"nostrictatime\", \"nosuid\", \"nosymfollow\", \"private\", \"rbind\", \"relatime\", "
           "\"remount\", \"ro\", \"rprivate\", \"rshared\", \"rslave\", \"runbindable\", \"rw\", "
           "\"shared\", \"silent\", \"slave\", \"strictatime\", \"suid\", \"symfollow\", "
           "\"sync\", \"unbindable\"],\n"
           "  \"linux\": {\n"
           "    \"namespaces\": [\"cgroup\", \"ipc\", \"mount\", \"network\", \"pid\", \"time\", "
           "\"user\", \"uts\"],\n"
           "    \"capabilities\": [\"CAP_CHOWN\", \"CAP_DAC_OVERRIDE\", \"CAP_DAC_READ_SEARCH\", "
           "\"CAP_FOWNER\", \"CAP_FSETID\", \"CAP_KILL\", \"CAP_SETGID\", \"CAP_SETUID\", "
           "\"CAP_SETPCAP\", \"CAP_LINUX_IMMUTABLE\", \"CAP_NET_BIND_SERVICE\", "
           "\"CAP_NET_BROADCAST\", \"CAP_NET_ADMIN\", \"CAP_NET_RAW\", \"CAP_IPC_LOCK\", "
           "\"CAP_IPC_OWNER\", \"CAP_SYS_MODULE\", \"CAP_SYS_RAWIO\", \"CAP_SYS_CHROOT\", "
           "\"CAP_SYS_PTRACE\", \"CAP_SYS_PACCT\", \"CAP_SYS_ADMIN\", \"CAP_SYS_BOOT\", "
           "\"CAP_SYS_NICE\", \"CAP_SYS_RESOURCE\", \"CAP_SYS_TIME\", \"CAP_SYS_TTY_CONFIG\", "
           "\"CAP_MKNOD\", \"CAP_LEASE\", \"CAP_AUDIT_WRITE\", \"CAP_AUDIT_CONTROL\", "
           "\"CAP_SETFCAP\", \"CAP_MAC_OVERRIDE\", \"CAP_MAC_ADMIN\", \"CAP_SYSLOG\", "
           "\"CAP_WAKE_ALARM\", \"CAP_BLOCK_SUSPEND\", \"CAP_AUDIT_READ\", \"CAP_PERFMON\", "
           "\"CAP_BPF\", \"CAP_CHECKPOINT_RESTORE\"],\n"
           "    \"cgroup\": { \"v1\": false, \"v2\": false, \"systemd\": false, "
           "\"systemdUser\": false },\n"
           "    \"seccomp\": { \"enabled\": false },\n"
           "    \"apparmor\": { \"enabled\": false },\n"
           "    \"selinux\": { \"enabled\": false },\n"
           "    \"intelRdt\": { \"enabled\": false },\n"
           "    \"mountExtensions\": { \"idmap\": { \"enabled\": false } }\n"
           "  },\n"
           "  \"annotations\": {\n"
           "    \"org.opencontainers.runtime-spec.features\": \"cocoon %s\"\n"
           "  }\n"
           "}\n",
           OCI_VERSION, COCOON_VERSION);
    return 0;
}
