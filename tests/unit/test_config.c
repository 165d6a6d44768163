/* Unit tests of config.json parsing (src/oci/config.c). */
#include "helpers.h"

#include <json-c/json.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "oci/config.h"
#include "oci/spec_default.h"

/* A config using (nearly) every field cocoon understands. */
static const char full_config[] =
    "{\n"
    "  \"ociVersion\": \"1.1.0\",\n"
    "  \"process\": {\n"
    "    \"terminal\": true,\n"
    "    \"consoleSize\": { \"height\": 24, \"width\": 80 },\n"
    "    \"user\": { \"uid\": 1000, \"gid\": 1001, \"umask\": 18,\n"
    "              \"additionalGids\": [ 5, 6, 4294967295 ] },\n"
    "    \"args\": [ \"sh\", \"-c\", \"echo \\\"hi\\\"\" ],\n"
    "    \"env\": [ \"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\n"
    "             \"TERM=xterm\" ],\n"
    "    \"cwd\": \"/home/user\",\n"
    "    \"capabilities\": {\n"
    "      \"bounding\": [ \"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\" ],\n"
    "      \"effective\": [ \"CAP_KILL\" ],\n"
    "      \"inheritable\": [ ],\n"
    "      \"permitted\": [ \"CAP_AUDIT_WRITE\", \"CAP_KILL\" ],\n"
    "      \"ambient\": [ \"CAP_NET_BIND_SERVICE\" ]\n"
    "    },\n"
    "    \"rlimits\": [ { \"type\": \"RLIMIT_NOFILE\", \"hard\": 4096, \"soft\": 1024 },\n"
    "                 { \"type\": \"RLIMIT_CORE\", \"hard\": 18446744073709551615, \"soft\": 0 } ],\n"
    "    \"noNewPrivileges\": true,\n"
    "    \"oomScoreAdj\": -500,\n"
    "    \"apparmorProfile\": \"cocoon-default\",\n"
    "    \"selinuxLabel\": \"system_u:system_r:container_t:s0\"\n"
    "  },\n"
    "  \"root\": { \"path\": \"rootfs\", \"readonly\": true },\n"
    "  \"hostname\": \"cocoon\",\n"
    "  \"domainname\": \"example.org\",\n"
    "  \"mounts\": [\n"
    "    { \"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\" },\n"
    "    { \"destination\": \"/dev\", \"type\": \"tmpfs\", \"source\": \"tmpfs\",\n"
    "      \"options\": [ \"nosuid\", \"strictatime\", \"mode=755\", \"size=65536k\" ] },\n"
    "    { \"destination\": \"/sys\", \"type\": \"sysfs\", \"source\": \"sysfs\",\n"
    "      \"options\": [ \"nosuid\", \"noexec\", \"nodev\", \"ro\" ] },\n"
    "    { \"destination\": \"/data\", \"type\": \"none\", \"source\": \"/srv/data\",\n"
    "      \"options\": [ \"rbind\", \"rw\", \"rslave\", \"nosuid\" ] },\n"
    "    { \"destination\": \"/etc/resolv.conf\", \"type\": \"bind\",\n"
    "      \"source\": \"/etc/resolv.conf\", \"options\": [ \"ro\", \"private\" ] },\n"
    "    { \"destination\": \"relative/dir\", \"type\": \"tmpfs\", \"source\": \"tmpfs\",\n"
    "      \"options\": [ \"noexec\", \"exec\", \"dev\", \"nodev\", \"uid=1000\" ] },\n"
    "    { \"destination\": \"/mnt/bind\", \"source\": \"/srv/x\", \"options\": [ \"bind\" ] }\n"
    "  ],\n"
    "  \"hooks\": {\n"
    "    \"prestart\": [ { \"path\": \"/usr/bin/prestart-hook\",\n"
    "                    \"args\": [ \"prestart-hook\", \"--flag\" ],\n"
    "                    \"env\": [ \"A=1\" ], \"timeout\": 5 } ],\n"
    "    \"createRuntime\": [ { \"path\": \"/bin/true\" },\n"
    "                       { \"path\": \"/bin/echo\", \"args\": [ \"echo\", \"x\" ] } ],\n"
    "    \"poststop\": [ { \"path\": \"/bin/false\" } ]\n"
    "  },\n"
    "  \"annotations\": { \"org.example.key\": \"value\", \"com.example.empty\": \"\" },\n"
    "  \"linux\": {\n"
    "    \"namespaces\": [ { \"type\": \"pid\" },\n"
    "                    { \"type\": \"network\", \"path\": \"/var/run/netns/test\" },\n"
    "                    { \"type\": \"ipc\" }, { \"type\": \"uts\" }, { \"type\": \"mount\" },\n"
    "                    { \"type\": \"user\" }, { \"type\": \"cgroup\" },\n"
    "                    { \"type\": \"time\", \"path\": \"\" } ],\n"
    "    \"uidMappings\": [ { \"containerID\": 0, \"hostID\": 100000, \"size\": 65536 } ],\n"
    "    \"gidMappings\": [ { \"containerID\": 0, \"hostID\": 200000, \"size\": 1000 },\n"
    "                     { \"containerID\": 1000, \"hostID\": 1000, \"size\": 1 } ],\n"
    "    \"devices\": [ { \"path\": \"/dev/fuse\", \"type\": \"c\", \"major\": 10, \"minor\": 229,\n"
    "                   \"fileMode\": 438, \"uid\": 0, \"gid\": 5 },\n"
    "                 { \"path\": \"/dev/sda1\", \"type\": \"b\", \"major\": 8, \"minor\": 1 },\n"
    "                 { \"path\": \"/dev/myfifo\", \"type\": \"p\" } ],\n"
    "    \"cgroupsPath\": \"/cocoon/test\",\n"
    "    \"rootfsPropagation\": \"rslave\",\n"
    "    \"sysctl\": { \"net.ipv4.ip_forward\": \"1\", \"kernel.shm_rmid_forced\": \"1\" },\n"
    "    \"timeOffsets\": { \"monotonic\": { \"secs\": -3600, \"nanosecs\": 500 },\n"
    "                     \"boottime\": { \"secs\": 86400, \"nanosecs\": 999999999 } },\n"
    "    \"maskedPaths\": [ \"/proc/kcore\", \"/sys/firmware\" ],\n"
    "    \"readonlyPaths\": [ \"/proc/sys\", \"/proc/sysrq-trigger\" ],\n"
    "    \"mountLabel\": \"system_u:object_r:container_file_t:s0\",\n"
    "    \"resources\": { \"devices\": [ { \"allow\": false, \"access\": \"rwm\" } ] },\n"
    "    \"seccomp\": { \"defaultAction\": \"SCMP_ACT_ALLOW\" }\n"
    "  },\n"
    "  \"vendorExtension\": { \"ignored\": [ 1, 2, 3 ] }\n"
    "}\n";

static struct oci_config *parse_ok(const char *doc, size_t len)
{
    struct oci_config *c = NULL;
    struct err *err = NULL;
    if (oci_config_parse(doc, len, "config.json", &c, &err) < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err ? err->msg : "(no error)");
        err_free(&err);
        fail_msg("parse failed: %s", msg);
    }
    assert_null(err);
    assert_non_null(c);
    return c;
}

static void assert_strv(char **v, const char *const *want, size_t n)
{
    assert_non_null(v);
    assert_int_equal(strv_len(v), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(v[i], want[i]);
}

static void test_full_top_and_process(void **state)
{
    (void)state;
    struct oci_config *c = parse_ok(full_config, strlen(full_config));
    assert_string_equal(c->oci_version, "1.1.0");
    assert_string_equal(c->root_path, "rootfs");
    assert_true(c->root_readonly);
    assert_string_equal(c->hostname, "cocoon");
    assert_string_equal(c->domainname, "example.org");
    assert_non_null(c->json);

    const struct oci_process *p = c->process;
    assert_non_null(p);
    assert_true(p->terminal);
    assert_true(p->has_console_size);
    assert_int_equal(p->console_height, 24);
    assert_int_equal(p->console_width, 80);
    static const char *const args[] = {"sh", "-c", "echo \"hi\""};
    assert_strv(p->args, args, 3);
    static const char *const env[] = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"};
    assert_strv(p->env, env, 2);
    assert_string_equal(p->cwd, "/home/user");
    assert_int_equal(p->uid, 1000);
    assert_int_equal(p->gid, 1001);
    assert_true(p->has_umask);
    assert_int_equal(p->umask, 022);
    assert_int_equal(p->n_additional_gids, 3);
    assert_int_equal(p->additional_gids[0], 5);
    assert_int_equal(p->additional_gids[1], 6);
    assert_true(p->additional_gids[2] == UINT32_MAX);

    assert_int_equal(p->n_rlimits, 2);
    assert_int_equal(p->rlimits[0].resource, RLIMIT_NOFILE);
    assert_int_equal(p->rlimits[0].soft, 1024);
    assert_int_equal(p->rlimits[0].hard, 4096);
    assert_int_equal(p->rlimits[1].resource, RLIMIT_CORE);
    assert_int_equal(p->rlimits[1].soft, 0);
    assert_true(p->rlimits[1].hard == UINT64_MAX);

    assert_true(p->has_caps);
    static const char *const bounding[] = {"CAP_AUDIT_WRITE", "CAP_KILL",
                                           "CAP_NET_BIND_SERVICE"};
    static const char *const effective[] = {"CAP_KILL"};
    static const char *const permitted[] = {"CAP_AUDIT_WRITE", "CAP_KILL"};
    static const char *const ambient[] = {"CAP_NET_BIND_SERVICE"};
    assert_strv(p->caps.bounding, bounding, 3);
    assert_strv(p->caps.effective, effective, 1);
    assert_strv(p->caps.inheritable, NULL, 0);
    assert_strv(p->caps.permitted, permitted, 2);
    assert_strv(p->caps.ambient, ambient, 1);

    assert_true(p->no_new_privileges);
    assert_true(p->has_oom_score_adj);
    assert_int_equal(p->oom_score_adj, -500);
    assert_string_equal(p->apparmor_profile, "cocoon-default");
    assert_string_equal(p->selinux_label, "system_u:system_r:container_t:s0");
    oci_config_free(c);
}

static void test_full_mounts(void **state)
{
    (void)state;
    struct oci_config *c = parse_ok(full_config, strlen(full_config));
    assert_int_equal(c->n_mounts, 7);
    const struct oci_mount *m = c->mounts;

    assert_string_equal(m[0].destination, "/proc");
    assert_string_equal(m[0].type, "proc");
    assert_string_equal(m[0].source, "proc");
    assert_null(m[0].options);
    assert_int_equal(m[0].flags, 0);
    assert_null(m[0].data);
    assert_false(m[0].bind);

    assert_string_equal(m[1].destination, "/dev");
    static const char *const devopts[] = {"nosuid", "strictatime", "mode=755", "size=65536k"};
    assert_strv(m[1].options, devopts, 4);
    assert_int_equal(m[1].flags, MS_NOSUID | MS_STRICTATIME);
    assert_int_equal(m[1].clear, 0);
    assert_int_equal(m[1].propagation, 0);
    assert_string_equal(m[1].data, "mode=755,size=65536k");

    assert_int_equal(m[2].flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY);
    assert_null(m[2].data);

    /* rbind + rw + rslave */
    assert_string_equal(m[3].destination, "/data");
    assert_true(m[3].bind);
    assert_true(m[3].recursive);
    assert_int_equal(m[3].flags, MS_NOSUID);
    assert_int_equal(m[3].clear, MS_RDONLY);
    assert_int_equal(m[3].propagation, MS_SLAVE | MS_REC);
    assert_null(m[3].data);

    /* type "bind" alone makes a (non-recursive) bind mount */
    assert_true(m[4].bind);
    assert_false(m[4].recursive);
    assert_int_equal(m[4].flags, MS_RDONLY);
    assert_int_equal(m[4].propagation, MS_PRIVATE);

    /* A relative destination is made absolute; later options win. */
    assert_string_equal(m[5].destination, "/relative/dir");
    assert_int_equal(m[5].flags, MS_NODEV);
    assert_int_equal(m[5].clear, MS_NOEXEC);
    assert_string_equal(m[5].data, "uid=1000");

    /* No type, but "bind" in options. */
    assert_null(m[6].type);
    assert_true(m[6].bind);
    assert_false(m[6].recursive);
    oci_config_free(c);
}

static void test_full_linux(void **state)
{
    (void)state;
    struct oci_config *c = parse_ok(full_config, strlen(full_config));
    const struct oci_linux *l = &c->linux_;
    assert_int_equal(l->n_namespaces, 8);
    assert_int_equal(l->namespaces[0].type, OCI_NS_PID);
    assert_null(l->namespaces[0].path);
    const struct oci_namespace *net = oci_config_ns(c, OCI_NS_NET);
    assert_non_null(net);
    assert_string_equal(net->path, "/var/run/netns/test");
    const struct oci_namespace *tns = oci_config_ns(c, OCI_NS_TIME);
    assert_non_null(tns);
    assert_null(tns->path); /* "" means "create one" */
    for (int t = 0; t < OCI_NS_COUNT; t++)
        assert_non_null(oci_config_ns(c, (enum oci_ns_type)t));

    assert_int_equal(l->n_uid_mappings, 1);
    assert_int_equal(l->uid_mappings[0].container_id, 0);
    assert_int_equal(l->uid_mappings[0].host_id, 100000);
    assert_int_equal(l->uid_mappings[0].size, 65536);
    assert_int_equal(l->n_gid_mappings, 2);
    assert_int_equal(l->gid_mappings[1].container_id, 1000);
    assert_int_equal(l->gid_mappings[1].host_id, 1000);
    assert_int_equal(l->gid_mappings[1].size, 1);

    assert_int_equal(l->n_devices, 3);
    assert_string_equal(l->devices[0].path, "/dev/fuse");
    assert_int_equal(l->devices[0].type, 'c');
    assert_int_equal(l->devices[0].major, 10);
    assert_int_equal(l->devices[0].minor, 229);
    assert_true(l->devices[0].has_mode);
    assert_int_equal(l->devices[0].mode, 0666);
    assert_true(l->devices[0].has_uid);
    assert_int_equal(l->devices[0].uid, 0);
    assert_true(l->devices[0].has_gid);
    assert_int_equal(l->devices[0].gid, 5);
    assert_int_equal(l->devices[1].type, 'b');
    assert_false(l->devices[1].has_mode);
    assert_false(l->devices[1].has_uid);
    assert_false(l->devices[1].has_gid);
    assert_int_equal(l->devices[2].type, 'p');
    assert_int_equal(l->devices[2].major, 0);

    assert_string_equal(l->cgroups_path, "/cocoon/test");
    assert_int_equal(l->rootfs_propagation, MS_SLAVE | MS_REC);
    assert_int_equal(l->n_sysctl, 2);
    bool fwd = false, shm = false;
    for (size_t i = 0; i < l->n_sysctl; i++) {
        if (strcmp(l->sysctl[i].key, "net.ipv4.ip_forward") == 0)
            fwd = strcmp(l->sysctl[i].value, "1") == 0;
        if (strcmp(l->sysctl[i].key, "kernel.shm_rmid_forced") == 0)
            shm = strcmp(l->sysctl[i].value, "1") == 0;
    }
    assert_true(fwd && shm);

    assert_true(l->has_time_offsets);
    assert_int_equal(l->monotonic_secs, -3600);
    assert_int_equal(l->monotonic_nsecs, 500);
    assert_int_equal(l->boottime_secs, 86400);
    assert_int_equal(l->boottime_nsecs, 999999999);

    static const char *const masked[] = {"/proc/kcore", "/sys/firmware"};
    static const char *const ro[] = {"/proc/sys", "/proc/sysrq-trigger"};
    assert_strv(l->masked_paths, masked, 2);
    assert_strv(l->readonly_paths, ro, 2);
    assert_string_equal(l->mount_label, "system_u:object_r:container_file_t:s0");
    assert_non_null(l->resources);
    assert_int_equal(json_object_get_type(l->resources), json_type_object);
    assert_non_null(l->seccomp);
    struct json_object *da;
    assert_true(json_object_object_get_ex(l->seccomp, "defaultAction", &da));
    assert_string_equal(json_object_get_string(da), "SCMP_ACT_ALLOW");
    oci_config_free(c);
}

static void test_full_hooks_annotations(void **state)
{
    (void)state;
    struct oci_config *c = parse_ok(full_config, strlen(full_config));
    const struct oci_hooks *h = &c->hooks;
    assert_int_equal(h->n[OCI_HOOK_PRESTART], 1);
    const struct oci_hook *pre = &h->list[OCI_HOOK_PRESTART][0];
    assert_string_equal(pre->path, "/usr/bin/prestart-hook");
    static const char *const pargs[] = {"prestart-hook", "--flag"};
    static const char *const penv[] = {"A=1"};
    assert_strv(pre->args, pargs, 2);
    assert_strv(pre->env, penv, 1);
    assert_int_equal(pre->timeout, 5);
    assert_int_equal(h->n[OCI_HOOK_CREATE_RUNTIME], 2);
    assert_string_equal(h->list[OCI_HOOK_CREATE_RUNTIME][0].path, "/bin/true");
    assert_null(h->list[OCI_HOOK_CREATE_RUNTIME][0].args);
    assert_int_equal(h->list[OCI_HOOK_CREATE_RUNTIME][0].timeout, 0);
    assert_string_equal(h->list[OCI_HOOK_CREATE_RUNTIME][1].path, "/bin/echo");
    assert_int_equal(h->n[OCI_HOOK_CREATE_CONTAINER], 0);
    assert_int_equal(h->n[OCI_HOOK_START_CONTAINER], 0);
    assert_int_equal(h->n[OCI_HOOK_POSTSTART], 0);
    assert_int_equal(h->n[OCI_HOOK_POSTSTOP], 1);
    assert_string_equal(h->list[OCI_HOOK_POSTSTOP][0].path, "/bin/false");

    assert_int_equal(c->n_annotations, 2);
    assert_string_equal(oci_config_annotation(c, "org.example.key"), "value");
    assert_string_equal(oci_config_annotation(c, "com.example.empty"), "");
    assert_null(oci_config_annotation(c, "missing"));
    oci_config_free(c);
}

/* The smallest valid config, and defaults of what it leaves out. */
static void test_minimal_defaults(void **state)
{
    (void)state;
    static const char doc[] = "{\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"/bin/x\"]}}";
    struct oci_config *c = parse_ok(doc, strlen(doc));
    assert_null(c->oci_version);
    assert_false(c->root_readonly);
    assert_null(c->hostname);
    assert_int_equal(c->n_mounts, 0);
    assert_non_null(c->process);
    assert_non_null(c->process->env);
    assert_null(c->process->env[0]);
    assert_string_equal(c->process->cwd, "/");
    assert_int_equal(c->process->uid, 0);
    assert_false(c->process->has_umask);
    assert_false(c->process->has_caps);
    assert_false(c->process->has_oom_score_adj);
    assert_false(c->process->has_console_size);
    assert_int_equal(c->linux_.n_namespaces, 0);
    assert_null(oci_config_ns(c, OCI_NS_PID));
    assert_int_equal(c->linux_.rootfs_propagation, 0);
    assert_false(c->linux_.has_time_offsets);
    assert_null(c->linux_.resources);
    oci_config_free(c);

    /* No process at all (allowed for create; the runtime checks later),
     * null is "absent", and surrounding whitespace is fine. */
    static const char doc2[] =
        "\n\t {\"root\":{\"path\":\"/abs/rootfs\",\"readonly\":null},\"process\":null,"
        "\"hostname\":null,\"linux\":{\"namespaces\":null}} \r\n";
    c = parse_ok(doc2, strlen(doc2));
    assert_null(c->process);
    assert_null(c->hostname);
    assert_string_equal(c->root_path, "/abs/rootfs");
    oci_config_free(c);

    /* The document need not be NUL-terminated. */
    char *copy = xmalloc(sizeof(doc) - 1);
    memcpy(copy, doc, sizeof(doc) - 1);
    c = parse_ok(copy, sizeof(doc) - 1);
    free(copy);
    oci_config_free(c);
}

/* What `cocoon spec` writes must parse, rootless or not. */
static void test_default_spec(void **state)
{
    (void)state;
    for (int rootless = 0; rootless < 2; rootless++) {
        char *doc = oci_spec_default(rootless, 1000, 1000);
        assert_non_null(doc);
        struct oci_config *c = parse_ok(doc, strlen(doc));
        assert_non_null(c->process);
        assert_string_equal(c->process->args[0], "sh");
        assert_string_equal(c->root_path, "rootfs");
        assert_non_null(oci_config_ns(c, OCI_NS_MNT));
        if (rootless) {
            assert_non_null(oci_config_ns(c, OCI_NS_USER));
            assert_true(c->linux_.n_uid_mappings >= 1);
            assert_int_equal(c->linux_.uid_mappings[0].host_id, 1000);
        }
        for (size_t i = 0; i < c->n_mounts; i++)
            assert_true(c->mounts[i].destination[0] == '/');
        oci_config_free(c);
        free(doc);
    }
}

static void test_mount_parse_options(void **state)
{
    (void)state;
    struct err *err = NULL;
    char *opts[] = {"defaults", "ro", "nosuid", "rw", "remount", "size=1m", "rshared",
                    "private", "bind", "mode=0755", "noatime", "atime", "nosymfollow", NULL};
    struct oci_mount m = {.type = "tmpfs", .options = opts};
    assert_int_equal(oci_mount_parse_options(&m, &err), 0);
    assert_null(err);
    assert_int_equal(m.flags, MS_NOSUID | MS_REMOUNT | MS_NOSYMFOLLOW);
    assert_int_equal(m.clear, MS_RDONLY | MS_NOATIME);
    assert_int_equal(m.propagation, MS_PRIVATE); /* the last one wins */
    assert_true(m.bind);
    assert_false(m.recursive);
    assert_string_equal(m.data, "size=1m,mode=0755");

    /* Parsing again starts over (no accumulated data or flags). */
    char *opts2[] = {"rbind", "runbindable", "ro", NULL};
    m.options = opts2;
    m.type = NULL;
    assert_int_equal(oci_mount_parse_options(&m, &err), 0);
    assert_int_equal(m.flags, MS_RDONLY);
    assert_int_equal(m.clear, 0);
    assert_int_equal(m.propagation, MS_UNBINDABLE | MS_REC);
    assert_true(m.bind);
    assert_true(m.recursive);
    assert_null(m.data);

    /* No options at all. */
    m.options = NULL;
    m.type = "bind";
    assert_int_equal(oci_mount_parse_options(&m, &err), 0);
    assert_int_equal(m.flags, 0);
    assert_true(m.bind);
    assert_false(m.recursive);
    assert_null(m.data);

    static const struct {
        const char *opt;
        unsigned long flag;
        bool clear;
    } each[] = {
        {"ro", MS_RDONLY, false}, {"rw", MS_RDONLY, true}, {"nosuid", MS_NOSUID, false},
        {"suid", MS_NOSUID, true}, {"nodev", MS_NODEV, false}, {"dev", MS_NODEV, true},
        {"noexec", MS_NOEXEC, false}, {"exec", MS_NOEXEC, true},
        {"sync", MS_SYNCHRONOUS, false}, {"async", MS_SYNCHRONOUS, true},
        {"dirsync", MS_DIRSYNC, false}, {"mand", MS_MANDLOCK, false},
        {"nomand", MS_MANDLOCK, true}, {"noatime", MS_NOATIME, false},
        {"atime", MS_NOATIME, true}, {"nodiratime", MS_NODIRATIME, false},
        {"diratime", MS_NODIRATIME, true}, {"relatime", MS_RELATIME, false},
        {"norelatime", MS_RELATIME, true}, {"strictatime", MS_STRICTATIME, false},
        {"nostrictatime", MS_STRICTATIME, true}, {"lazytime", MS_LAZYTIME, false},
        {"nolazytime", MS_LAZYTIME, true}, {"silent", MS_SILENT, false},
        {"loud", MS_SILENT, true},
    };
    for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++) {
        char *one[] = {(char *)each[i].opt, NULL};
        struct oci_mount mm = {.type = "tmpfs", .options = one};
        assert_int_equal(oci_mount_parse_options(&mm, &err), 0);
        if (each[i].clear) {
            assert_int_equal(mm.flags, 0);
            assert_int_equal(mm.clear, each[i].flag);
        } else {
            assert_int_equal(mm.flags, each[i].flag);
            assert_int_equal(mm.clear, 0);
        }
        assert_null(mm.data);
    }
    static const struct {
        const char *opt;
        unsigned long prop;
    } props[] = {
        {"shared", MS_SHARED}, {"rshared", MS_SHARED | MS_REC}, {"slave", MS_SLAVE},
        {"rslave", MS_SLAVE | MS_REC}, {"private", MS_PRIVATE},
        {"rprivate", MS_PRIVATE | MS_REC}, {"unbindable", MS_UNBINDABLE},
        {"runbindable", MS_UNBINDABLE | MS_REC},
    };
    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
        char *one[] = {(char *)props[i].opt, NULL};
        struct oci_mount mm = {.type = "tmpfs", .options = one};
        assert_int_equal(oci_mount_parse_options(&mm, &err), 0);
        assert_int_equal(mm.propagation, props[i].prop);
        assert_int_equal(mm.flags, 0);
    }
    free(m.data);
}

static void test_names_and_flags(void **state)
{
    (void)state;
    assert_string_equal(oci_ns_name(OCI_NS_PID), "pid");
    assert_string_equal(oci_ns_name(OCI_NS_NET), "network");
    assert_string_equal(oci_ns_name(OCI_NS_MNT), "mount");
    assert_string_equal(oci_ns_name(OCI_NS_TIME), "time");
    assert_string_equal(oci_ns_name(OCI_NS_COUNT), "?");
    assert_int_equal(oci_ns_clone_flag(OCI_NS_USER), CLONE_NEWUSER);
    assert_int_equal(oci_ns_clone_flag(OCI_NS_MNT), CLONE_NEWNS);
    assert_int_equal(oci_ns_clone_flag(OCI_NS_CGROUP), CLONE_NEWCGROUP);
    assert_int_equal(oci_ns_clone_flag(OCI_NS_COUNT), 0);
    assert_int_equal(oci_rlimit_from_name("RLIMIT_NOFILE"), RLIMIT_NOFILE);
    assert_int_equal(oci_rlimit_from_name("RLIMIT_STACK"), RLIMIT_STACK);
    assert_int_equal(oci_rlimit_from_name("RLIMIT_RTTIME"), RLIMIT_RTTIME);
    assert_true(oci_rlimit_from_name("NOFILE") < 0);
    assert_true(oci_rlimit_from_name("rlimit_nofile") < 0);
    assert_true(oci_rlimit_from_name("") < 0);
    oci_config_free(NULL);
}

/* Size limit: checked before anything is parsed. */
static void test_too_large(void **state)
{
    (void)state;
    size_t len = OCI_CONFIG_MAX_SIZE + 1;
    char *doc = xmalloc(len);
    memset(doc, ' ', len);
    memcpy(doc, "{\"root\":{\"path\":\"r\"}}", 21);
    struct oci_config *c = NULL;
    struct err *err = NULL;
    assert_int_equal(oci_config_parse(doc, len, "config.json", &c, &err), -1);
    assert_null(c);
    assert_int_equal(err_code(err), EFBIG);
    assert_err_contains(err, "config.json: larger than");
    err_free(&err);
    free(doc);
}

/* Deep nesting is refused by the parser, not by a stack overflow. */
static void test_deep_nesting(void **state)
{
    (void)state;
    enum { DEPTH = 100000 };
    static const char head[] = "{\"root\":{\"path\":\"r\"},\"x\":";
    static char doc[sizeof(head) + 2 * DEPTH + 1];
    size_t n = sizeof(head) - 1;
    memcpy(doc, head, n);
    memset(doc + n, '[', DEPTH);
    n += DEPTH;
    memset(doc + n, ']', DEPTH);
    n += DEPTH;
    doc[n++] = '}';
    struct oci_config *c = NULL;
    struct err *err = NULL;
    assert_int_equal(oci_config_parse(doc, n, "config.json", &c, &err), -1);
    assert_err_contains(err, "config.json: malformed JSON at line 1");
    err_free(&err);
}

/* Load from a bundle directory. */
static void test_load(void **state)
{
    (void)state;
    char *dir = make_tmpdir("config");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    struct oci_config *c = NULL;
    struct err *err = NULL;

    assert_int_equal(oci_config_load(dir, &c, &err), -1);
    assert_int_equal(err_code(err), ENOENT);
    assert_err_contains(err, "bundle `");
    assert_err_contains(err, "config.json");
    err_free(&err);

    put_file(dfd, "config.json", full_config);
    assert_int_equal(oci_config_load(dir, &c, &err), 0);
    assert_string_equal(c->hostname, "cocoon");
    oci_config_free(c);
    c = NULL;

    /* Errors name the file they come from. */
    put_file(dfd, "config.json", "{\"root\":{\"path\":5}}");
    assert_int_equal(oci_config_load(dir, &c, &err), -1);
    char *want = xasprintf("%s/config.json: `root.path` must be a string", dir);
    assert_err_contains(err, want);
    free(want);
    err_free(&err);
    close(dfd);
    rm_rf(dir);
    free(dir);
}

/* ---- oci_process_parse (`exec --process process.json`) ---- */

static void test_process_parse(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"terminal\":false,\"user\":{\"uid\":5,\"gid\":6,\"additionalGids\":[7]},"
        "\"args\":[\"/bin/ps\",\"aux\"],\"env\":[\"A=B\"],\"cwd\":\"/tmp\","
        "\"capabilities\":{\"bounding\":[\"CAP_KILL\"]},\"noNewPrivileges\":true,"
        "\"rlimits\":[{\"type\":\"RLIMIT_NPROC\",\"soft\":10,\"hard\":20}]}";
    struct oci_process *p = NULL;
    struct err *err = NULL;
    assert_int_equal(oci_process_parse(doc, strlen(doc), "process.json", &p, &err), 0);
    assert_null(err);
    assert_non_null(p);
    static const char *const args[] = {"/bin/ps", "aux"};
    assert_strv(p->args, args, 2);
    assert_string_equal(p->env[0], "A=B");
    assert_string_equal(p->cwd, "/tmp");
    assert_int_equal(p->uid, 5);
    assert_int_equal(p->gid, 6);
    assert_int_equal(p->n_additional_gids, 1);
    assert_int_equal(p->additional_gids[0], 7);
    assert_true(p->has_caps);
    assert_string_equal(p->caps.bounding[0], "CAP_KILL");
    assert_null(p->caps.effective);
    assert_true(p->no_new_privileges);
    assert_int_equal(p->n_rlimits, 1);
    assert_int_equal(p->rlimits[0].resource, RLIMIT_NPROC);
    oci_process_free(p);
    oci_process_free(NULL);

    /* Defaults as in config.json. */
    static const char min[] = "{\"args\":[\"sh\"]}";
    p = NULL;
    assert_int_equal(oci_process_parse(min, strlen(min), "process.json", &p, &err), 0);
    assert_string_equal(p->cwd, "/");
    assert_non_null(p->env);
    assert_null(p->env[0]);
    oci_process_free(p);
}

static void test_process_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *want;
    } bad[] = {
        {"{\"cwd\":\"/\"}", "process.json: `process.args` must name the program to run"},
        {"{\"args\":\"sh\"}", "process.json: `process.args` must be an array, not a string"},
        {"{\"args\":[\"sh\"],\"cwd\":\"rel\"}", "process.json: `process.cwd` must be an absolute path"},
        {"{\"args\":[\"sh\"],\"user\":{\"uid\":-1}}", "process.json: `process.user.uid` is out of range"},
        {"{\"args\":[\"sh\"],\"rlimits\":[{\"type\":\"RLIMIT_X\",\"soft\":1,\"hard\":1}]}",
         "unknown rlimit `RLIMIT_X`"},
        {"{\"args\":[\"sh\"]", "process.json: malformed JSON: unexpected end of input"},
        {"", "process.json: malformed JSON: unexpected end of input"},
        {"{\"args\":[\"sh\"]} x", "process.json: malformed JSON"},
        {"[\"sh\"]", "process.json: `process` must be an object, not an array"},
        {"\"sh\"", "must be an object, not a string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct oci_process *p = (struct oci_process *)0x1;
        struct err *err = NULL;
        if (oci_process_parse(bad[i].doc, strlen(bad[i].doc), "process.json", &p, &err) == 0) {
            oci_process_free(p);
            fail_msg("process `%s` was accepted", bad[i].doc);
        }
        assert_ptr_equal(p, (struct oci_process *)0x1);
        assert_err_contains(err, bad[i].want);
        assert_int_equal(err_code(err), EINVAL);
        err_free(&err);
    }
}

/* A file holding `null` gets "must be an object, not null", like any other
 * non-object document, not "malformed JSON: success" or "trailing data". */
static void test_null_document(void **state)
{
    (void)state;
    struct oci_process *p = NULL;
    struct oci_config *c = NULL;
    struct err *err = NULL;
    char msg[2][256] = {"", ""};
    assert_int_equal(oci_process_parse("null\n", 5, "process.json", &p, &err), -1);
    assert_null(p);
    assert_int_equal(err_code(err), EINVAL);
    if (strstr(err->msg, "must be an object, not null") == NULL)
        snprintf(msg[0], sizeof(msg[0]), "%s", err->msg);
    err_free(&err);
    assert_int_equal(oci_config_parse("null\n", 5, "config.json", &c, &err), -1);
    assert_null(c);
    assert_int_equal(err_code(err), EINVAL);
    if (strstr(err->msg, "`(document)` must be an object, not null") == NULL)
        snprintf(msg[1], sizeof(msg[1]), "%s", err->msg);
    err_free(&err);
    if (msg[0][0] || msg[1][0])
        fail_msg("misleading errors for a `null` document: `%s` / `%s`", msg[0], msg[1]);
}

/* ---- every class of error, each a test of its own ---- */

struct bad_case {
    const char *name;
    const char *doc;
    const char *want; /* substring of the message, after "config.json: " */
};

#define ROOT "\"root\":{\"path\":\"rootfs\"}"
#define DOC(x) "{" ROOT "," x "}"
#define PROC(x) DOC("\"process\":{\"args\":[\"sh\"]," x "}")
#define LINUX(x) DOC("\"linux\":{" x "}")
#define RLIMIT(x) PROC("\"rlimits\":[" x "]")

static const struct bad_case bad_cases[] = {
    /* syntax */
    {"malformed_json_line", "{\n  \"root\": {\n    \"path\": \"rootfs\",\n  }\n}",
     "malformed JSON at line 4, column 3"},
    {"unterminated", "{\n\"root\": {\"path\": \"rootfs\"}\n", "line 3, column 1: unexpected end of input"},
    {"unterminated_string", "{\"root\": {\"path\": \"rootf", "unexpected end of input"},
    {"empty_document", "", "malformed JSON at line 1, column 1: unexpected end of input"},
    {"trailing_garbage", "{" ROOT "} x", "malformed JSON at line 1, column"},
    {"trailing_document", "{" ROOT "}\n{}", "malformed JSON at line 2"},
    {"not_json", "root: rootfs", "malformed JSON at line 1, column 1"},
    {"bare_word", "{" ROOT ",\"hostname\":cocoon}", "malformed JSON"},
    {"document_array", "[]", "`(document)` must be an object, not an array"},
    {"document_string", "\"config\"", "`(document)` must be an object, not a string"},
    /* root */
    {"root_missing", "{}", "`root` is required"},
    {"root_string", "{\"root\":\"rootfs\"}", "`root` must be an object, not a string"},
    {"root_path_missing", "{\"root\":{}}", "`root.path` is required"},
    {"root_path_empty", "{\"root\":{\"path\":\"\"}}", "`root.path` must not be empty"},
    {"root_path_number", "{\"root\":{\"path\":1}}", "`root.path` must be a string, not a number"},
    {"root_readonly_string", "{\"root\":{\"path\":\"r\",\"readonly\":\"yes\"}}",
     "`root.readonly` must be a boolean, not a string"},
    {"oci_version_number", DOC("\"ociVersion\":1.1"),
     "`ociVersion` must be a string, not a fractional number"},
    {"hostname_too_long",
     DOC("\"hostname\":\"0123456789012345678901234567890123456789012345678901234567890123x\""),
     "`hostname` is longer than 64 bytes"},
    {"domainname_object", DOC("\"domainname\":{}"), "`domainname` must be a string, not an object"},
    /* process */
    {"process_array", DOC("\"process\":[]"), "`process` must be an object, not an array"},
    {"args_string", DOC("\"process\":{\"args\":\"sh\"}"),
     "`process.args` must be an array, not a string"},
    {"args_missing", DOC("\"process\":{\"cwd\":\"/\"}"),
     "`process.args` must name the program to run"},
    {"args_empty", DOC("\"process\":{\"args\":[]}"), "`process.args` must name the program to run"},
    {"args_element_number", DOC("\"process\":{\"args\":[\"sh\",5]}"),
     "`process.args[1]` must be a string, not a number"},
    {"args0_empty", DOC("\"process\":{\"args\":[\"\"]}"), "`process.args[0]` must not be empty"},
    {"env_element_null", PROC("\"env\":[\"A=1\",null]"), "`process.env[1]` must be a string, not null"},
    {"cwd_relative", PROC("\"cwd\":\"home\""), "`process.cwd` must be an absolute path"},
    {"cwd_number", PROC("\"cwd\":0"), "`process.cwd` must be a string"},
    {"terminal_string", PROC("\"terminal\":\"true\""), "`process.terminal` must be a boolean"},
    {"nnp_number", PROC("\"noNewPrivileges\":1"), "`process.noNewPrivileges` must be a boolean"},
    {"user_array", PROC("\"user\":[]"), "`process.user` must be an object"},
    {"uid_negative", PROC("\"user\":{\"uid\":-1,\"gid\":0}"),
     "`process.user.uid` is out of range [0, 4294967295]"},
    {"uid_too_large", PROC("\"user\":{\"uid\":4294967296,\"gid\":0}"),
     "`process.user.uid` is out of range"},
    {"gid_fraction", PROC("\"user\":{\"uid\":0,\"gid\":1.5}"),
     "`process.user.gid` must be an integer, not a fractional number"},
    {"gid_string", PROC("\"user\":{\"uid\":0,\"gid\":\"0\"}"),
     "`process.user.gid` must be an integer, not a string"},
    {"umask_too_large", PROC("\"user\":{\"uid\":0,\"gid\":0,\"umask\":512}"),
     "`process.user.umask` is out of range [0, 511]"},
    {"additional_gid_negative", PROC("\"user\":{\"uid\":0,\"gid\":0,\"additionalGids\":[1,-2]}"),
     "`process.user.additionalGids[1]` must be a gid"},
    {"additional_gid_string", PROC("\"user\":{\"uid\":0,\"gid\":0,\"additionalGids\":[\"5\"]}"),
     "`process.user.additionalGids[0]` must be a gid (0..4294967295), not a string"},
    {"additional_gids_object", PROC("\"user\":{\"uid\":0,\"gid\":0,\"additionalGids\":{}}"),
     "`process.user.additionalGids` must be an array"},
    {"console_too_large", PROC("\"consoleSize\":{\"height\":70000,\"width\":80}"),
     "`process.consoleSize` is larger than 65535"},
    {"console_negative", PROC("\"consoleSize\":{\"height\":24,\"width\":-80}"),
     "`process.consoleSize.width` is out of range"},
    {"oom_score_adj_range", PROC("\"oomScoreAdj\":1001"),
     "`process.oomScoreAdj` is out of range [-1000, 1000]"},
    {"caps_array", PROC("\"capabilities\":[]"), "`process.capabilities` must be an object"},
    {"caps_element", PROC("\"capabilities\":{\"ambient\":[\"CAP_KILL\",true]}"),
     "`process.capabilities.ambient[1]` must be a string, not a boolean"},
    {"apparmor_number", PROC("\"apparmorProfile\":3"), "`process.apparmorProfile` must be a string"},
    /* rlimits */
    {"rlimits_object", PROC("\"rlimits\":{}"), "`process.rlimits` must be an array"},
    {"rlimit_not_object", RLIMIT("\"RLIMIT_NOFILE\""),
     "`process.rlimits[0]` must be an object, not a string"},
    {"rlimit_unknown", RLIMIT("{\"type\":\"RLIMIT_BOGUS\",\"soft\":1,\"hard\":1}"),
     "`process.rlimits[0].type`: unknown rlimit `RLIMIT_BOGUS`"},
    {"rlimit_type_missing", RLIMIT("{\"soft\":1,\"hard\":1}"), "`process.rlimits[0].type` is required"},
    {"rlimit_soft_above_hard", RLIMIT("{\"type\":\"RLIMIT_NOFILE\",\"soft\":2048,\"hard\":1024}"),
     "`process.rlimits[0]` has soft above hard"},
    {"rlimit_no_hard", RLIMIT("{\"type\":\"RLIMIT_NOFILE\",\"soft\":1}"),
     "`process.rlimits[0]` needs both soft and hard"},
    {"rlimit_negative", RLIMIT("{\"type\":\"RLIMIT_NOFILE\",\"soft\":-1,\"hard\":1}"),
     "`process.rlimits[0].soft` must not be negative"},
    {"rlimit_hard_string", RLIMIT("{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":\"1\"}"),
     "`process.rlimits[0].hard` must be an integer, not a string"},
    {"rlimit_duplicate",
     RLIMIT("{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":1},"
            "{\"type\":\"RLIMIT_NOFILE\",\"soft\":1,\"hard\":1},"
            "{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":1}"),
     "`process.rlimits[2]`: duplicate rlimit `RLIMIT_CORE`"},
    /* mounts */
    {"mounts_object", DOC("\"mounts\":{}"), "`mounts` must be an array, not an object"},
    {"mount_not_object", DOC("\"mounts\":[\"/proc\"]"), "`mounts[0]` must be an object, not a string"},
    {"mount_destination_missing",
     DOC("\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\"},{\"type\":\"tmpfs\"}]"),
     "`mounts[1].destination` is required"},
    {"mount_destination_empty", DOC("\"mounts\":[{\"destination\":\"\",\"type\":\"tmpfs\"}]"),
     "`mounts[0]` has an empty destination"},
    {"mount_destination_number", DOC("\"mounts\":[{\"destination\":7,\"type\":\"tmpfs\"}]"),
     "`mounts[0].destination` must be a string, not a number"},
    {"mount_source_bool", DOC("\"mounts\":[{\"destination\":\"/x\",\"type\":\"tmpfs\",\"source\":true}]"),
     "`mounts[0].source` must be a string, not a boolean"},
    {"mount_option_number",
     DOC("\"mounts\":[{\"destination\":\"/x\",\"type\":\"tmpfs\",\"options\":[\"ro\",0]}]"),
     "`mounts[0].options[1]` must be a string, not a number"},
    {"mount_options_string",
     DOC("\"mounts\":[{\"destination\":\"/x\",\"type\":\"tmpfs\",\"options\":\"ro\"}]"),
     "`mounts[0].options` must be an array"},
    {"mount_bind_no_source", DOC("\"mounts\":[{\"destination\":\"/x\",\"options\":[\"rbind\"]}]"),
     "`mounts[0]` is a bind mount without a source"},
    {"mount_bind_empty_source",
     DOC("\"mounts\":[{\"destination\":\"/x\",\"type\":\"bind\",\"source\":\"\"}]"),
     "`mounts[0]` is a bind mount without a source"},
    {"mount_no_type", DOC("\"mounts\":[{\"destination\":\"/x\",\"source\":\"none\"}]"),
     "`mounts[0]` needs a type (or a bind option)"},
    /* linux */
    {"linux_array", DOC("\"linux\":[]"), "`linux` must be an object, not an array"},
    {"namespaces_object", LINUX("\"namespaces\":{}"), "`linux.namespaces` must be an array"},
    {"namespace_not_object", LINUX("\"namespaces\":[\"pid\"]"),
     "`linux.namespaces[0]` must be an object, not a string"},
    {"namespace_unknown", LINUX("\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"bogus\"}]"),
     "`linux.namespaces[1].type`: unknown namespace type `bogus`"},
    {"namespace_type_case", LINUX("\"namespaces\":[{\"type\":\"PID\"}]"),
     "`linux.namespaces[0].type`: unknown namespace type `PID`"},
    {"namespace_type_missing", LINUX("\"namespaces\":[{\"path\":\"/proc/1/ns/pid\"}]"),
     "`linux.namespaces[0].type` is required"},
    {"namespace_duplicate",
     LINUX("\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"mount\"},{\"type\":\"pid\",\"path\":"
           "\"/proc/1/ns/pid\"}]"),
     "`linux.namespaces[2]`: duplicate namespace `pid`"},
    {"namespace_path_number", LINUX("\"namespaces\":[{\"type\":\"network\",\"path\":1}]"),
     "`linux.namespaces[0].path` must be a string"},
    {"uid_mapping_missing_size", LINUX("\"uidMappings\":[{\"containerID\":0,\"hostID\":1000}]"),
     "`linux.uidMappings[0]` needs containerID, hostID and size"},
    {"gid_mapping_negative",
     LINUX("\"gidMappings\":[{\"containerID\":0,\"hostID\":-1,\"size\":1}]"),
     "`linux.gidMappings[0].hostID` is out of range"},
    {"uid_mapping_not_object", LINUX("\"uidMappings\":[0]"),
     "`linux.uidMappings[0]` must be an object, not a number"},
    {"device_no_major_minor", LINUX("\"devices\":[{\"path\":\"/dev/null\",\"type\":\"c\"}]"),
     "`linux.devices[0]` needs major and minor"},
    {"device_no_minor", LINUX("\"devices\":[{\"path\":\"/dev/sda\",\"type\":\"b\",\"major\":8}]"),
     "`linux.devices[0]` needs major and minor"},
    {"device_relative",
     LINUX("\"devices\":[{\"path\":\"dev/null\",\"type\":\"c\",\"major\":1,\"minor\":3}]"),
     "`linux.devices[0]` path must be absolute"},
    {"device_type_unknown",
     LINUX("\"devices\":[{\"path\":\"/dev/x\",\"type\":\"x\",\"major\":1,\"minor\":3}]"),
     "`linux.devices[0].type`: unknown device type `x`"},
    {"device_type_long",
     LINUX("\"devices\":[{\"path\":\"/dev/x\",\"type\":\"cc\",\"major\":1,\"minor\":3}]"),
     "`linux.devices[0].type`: unknown device type `cc`"},
    {"device_path_missing", LINUX("\"devices\":[{\"type\":\"c\",\"major\":1,\"minor\":3}]"),
     "`linux.devices[0].path` is required"},
    {"device_mode_range",
     LINUX("\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\",\"major\":1,\"minor\":3,"
           "\"fileMode\":4096}]"),
     "`linux.devices[0].fileMode` is out of range [0, 4095]"},
    {"device_major_range",
     LINUX("\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\",\"major\":4096,\"minor\":3}]"),
     "`linux.devices[0].major` is out of range"},
    {"device_uid_negative",
     LINUX("\"devices\":[{\"path\":\"/dev/x\",\"type\":\"c\",\"major\":1,\"minor\":3,\"uid\":-1}]"),
     "`linux.devices[0].uid` is out of range"},
    {"rootfs_propagation_unknown", LINUX("\"rootfsPropagation\":\"bogus\""),
     "`linux.rootfsPropagation`: unknown propagation `bogus`"},
    {"sysctl_value_number", LINUX("\"sysctl\":{\"net.ipv4.ip_forward\":1}"),
     "`linux.sysctl.net.ipv4.ip_forward` must be a string, not a number"},
    {"sysctl_array", LINUX("\"sysctl\":[]"), "`linux.sysctl` must be an object"},
    {"masked_path_number", LINUX("\"maskedPaths\":[\"/proc/kcore\",1]"),
     "`linux.maskedPaths[1]` must be a string"},
    {"readonly_paths_string", LINUX("\"readonlyPaths\":\"/proc\""),
     "`linux.readonlyPaths` must be an array"},
    {"cgroups_path_number", LINUX("\"cgroupsPath\":1"), "`linux.cgroupsPath` must be a string"},
    {"time_offset_nanosecs",
     LINUX("\"timeOffsets\":{\"monotonic\":{\"secs\":1,\"nanosecs\":1000000000}}"),
     "`linux.timeOffsets.monotonic` nanosecs must be below 1000000000"},
    {"time_offset_secs_fraction", LINUX("\"timeOffsets\":{\"boottime\":{\"secs\":1.5}}"),
     "`linux.timeOffsets.boottime.secs` must be an integer, not a fractional number"},
    {"time_offset_secs_overflow",
     LINUX("\"timeOffsets\":{\"monotonic\":{\"secs\":9223372036854775808}}"),
     "`linux.timeOffsets.monotonic.secs` is out of range"},
    {"time_offsets_array", LINUX("\"timeOffsets\":[]"), "`linux.timeOffsets` must be an object"},
    {"resources_array", LINUX("\"resources\":[]"), "`linux.resources` must be an object, not an array"},
    {"seccomp_string", LINUX("\"seccomp\":\"unconfined\""), "`linux.seccomp` must be an object"},
    /* hooks */
    {"hooks_array", DOC("\"hooks\":[]"), "`hooks` must be an object, not an array"},
    {"hooks_kind_object", DOC("\"hooks\":{\"createRuntime\":{}}"),
     "`hooks.createRuntime` must be an array, not an object"},
    {"hook_not_object", DOC("\"hooks\":{\"prestart\":[\"/bin/true\"]}"),
     "`hooks.prestart[0]` must be an object, not a string"},
    {"hook_relative", DOC("\"hooks\":{\"prestart\":[{\"path\":\"/bin/true\"},{\"path\":\"true\"}]}"),
     "`hooks.prestart[1]` path must be absolute"},
    {"hook_path_missing", DOC("\"hooks\":{\"poststop\":[{\"args\":[\"x\"]}]}"),
     "`hooks.poststop[0].path` is required"},
    {"hook_timeout_zero", DOC("\"hooks\":{\"poststart\":[{\"path\":\"/x\",\"timeout\":0}]}"),
     "`hooks.poststart[0].timeout` is out of range [1, 2147483647]"},
    {"hook_args_element", DOC("\"hooks\":{\"startContainer\":[{\"path\":\"/x\",\"args\":[1]}]}"),
     "`hooks.startContainer[0].args[0]` must be a string, not a number"},
    /* annotations */
    {"annotations_array", DOC("\"annotations\":[]"), "`annotations` must be an object, not an array"},
    {"annotation_value_number", DOC("\"annotations\":{\"a\":\"x\",\"foo\":2}"),
     "`annotations.foo` must be a string, not a number"},
};

#define N_BAD (sizeof(bad_cases) / sizeof(bad_cases[0]))

static void test_bad_config(void **state)
{
    const struct bad_case *bc = *state;
    struct oci_config *c = (struct oci_config *)0x1; /* must stay untouched */
    struct err *err = NULL;
    int fds = count_open_fds();
    int r = oci_config_parse(bc->doc, strlen(bc->doc), "config.json", &c, &err);
    if (r == 0) {
        oci_config_free(c);
        fail_msg("`%s` was accepted", bc->doc);
    }
    assert_int_equal(r, -1);
    assert_ptr_equal(c, (struct oci_config *)0x1);
    assert_err_contains(err, bc->want);
    if (strncmp(err->msg, "config.json: ", 13) != 0)
        fail_msg("error `%s` does not start with the document name", err->msg);
    /* A user error: EINVAL, and no ": Invalid argument" tacked on. */
    assert_int_equal(err_code(err), EINVAL);
    if (strstr(err->msg, strerror(EINVAL)) != NULL)
        fail_msg("error `%s` carries a strerror suffix", err->msg);
    assert_int_equal(count_open_fds(), fds);
    err_free(&err);
}

/* Trailing bytes after a NUL: the length given is what counts. */
static void test_trailing_after_nul(void **state)
{
    (void)state;
    static const char doc[] = "{" ROOT "}\0trailing";
    struct oci_config *c = NULL;
    struct err *err = NULL;
    assert_int_equal(oci_config_parse(doc, sizeof(doc) - 1, "config.json", &c, &err), -1);
    assert_err_contains(err, "config.json: malformed JSON at line 1");
    err_free(&err);
    /* Only whitespace after the document is fine. */
    static const char ok[] = "{" ROOT "}\n\n  \t";
    c = parse_ok(ok, sizeof(ok) - 1);
    oci_config_free(c);
}

/* The error of an earlier call does not leak into a later good one. */
static void test_error_then_success(void **state)
{
    (void)state;
    struct oci_config *c = NULL;
    struct err *err = NULL;
    static const char bad[] = LINUX("\"uidMappings\":[{\"containerID\":0}]");
    assert_int_equal(oci_config_parse(bad, strlen(bad), "a.json", &c, &err), -1);
    assert_err_contains(err, "a.json: `linux.uidMappings[0]` needs containerID, hostID and size");
    err_free(&err);
    static const char good[] =
        LINUX("\"uidMappings\":[{\"containerID\":0,\"hostID\":5,\"size\":1}]");
    assert_int_equal(oci_config_parse(good, strlen(good), "a.json", &c, &err), 0);
    assert_null(err);
    assert_int_equal(c->linux_.n_uid_mappings, 1);
    oci_config_free(c);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_full_top_and_process),
        cmocka_unit_test(test_full_mounts),
        cmocka_unit_test(test_full_linux),
        cmocka_unit_test(test_full_hooks_annotations),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_default_spec),
        cmocka_unit_test(test_mount_parse_options),
        cmocka_unit_test(test_names_and_flags),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_trailing_after_nul),
        cmocka_unit_test(test_error_then_success),
        cmocka_unit_test(test_process_parse),
        cmocka_unit_test(test_process_parse_errors),
        cmocka_unit_test(test_null_document),
    };
    enum { N_FIXED = sizeof(fixed) / sizeof(fixed[0]) };
    static struct CMUnitTest tests[N_FIXED + N_BAD];
    static char names[N_BAD][80];
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < N_BAD; i++) {
        snprintf(names[i], sizeof(names[i]), "bad_%s", bad_cases[i].name);
        tests[N_FIXED + i] = (struct CMUnitTest){
            .name = names[i],
            .test_func = test_bad_config,
            .initial_state = (void *)&bad_cases[i],
        };
    }
    return _cmocka_run_group_tests("config", tests, N_FIXED + N_BAD, NULL, NULL);
}
