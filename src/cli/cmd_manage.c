/* pause, resume, ps, update, events */
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

static int one_id(int argc, char **argv, const char *usage, struct err **err)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: cocoon %s\n", usage);
            return -2;
        }
        return err_make(err, 0, "%s: unknown option `%s`", argv[0], argv[optind - 1]);
    }
    return cli_want_args(argc, argv, 1, usage, err);
}

int cmd_pause(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    int r = one_id(argc, argv, "pause ID", err);
    if (r < 0)
        return r == -2 ? 0 : -1;
    return container_pause(rt, argv[optind], true, err) < 0 ? -1 : 0;
}

int cmd_resume(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    int r = one_id(argc, argv, "resume ID", err);
    if (r < 0)
        return r == -2 ? 0 : -1;
    return container_pause(rt, argv[optind], false, err) < 0 ? -1 : 0;
}

int cmd_ps(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *format = "table";
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+f:h", opts, NULL)) != -1) {
        if (c == 'f')
            format = optarg;
        else if (c == 'h') {
            printf("usage: cocoon ps [--format table|json] ID\n");
            return 0;
        } else
            return err_make(err, 0, "ps: unknown option `%s`", argv[optind - 1]);
    }
    if (strcmp(format, "table") && strcmp(format, "json"))
        return err_make(err, 0, "ps: unknown format `%s` (table or json)", format);
    if (argc - optind < 1)
        return err_make(err, 0, "ps: missing container id (usage: cocoon ps [--format F] ID)");
    cleanup_free int *pids = NULL;
    size_t n;
    if (container_pids(rt, argv[optind], &pids, &n, err) < 0)
        return -1;
    if (strcmp(format, "json") == 0) {
        printf("[");
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? "," : "", pids[i]);
        printf("]\n");
        return 0;
    }
    printf("%-8s %s\n", "PID", "CMD");
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/cmdline", pids[i]);
        cleanup_free char *cmd = NULL;
        size_t len = 0;
        if (read_file_at(-100, path, 4096, &cmd, &len, NULL) < 0)
            continue;
        for (size_t k = 0; k + 1 < len; k++)
            if (cmd[k] == '\0')
                cmd[k] = ' ';
        printf("%-8d %s\n", pids[i], cmd);
    }
    return 0;
}

/* "64m", "1g", "1024" -> bytes */
static int parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s)
        return -1;
    long long mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1LL << 10; end++; break;
    case 'm': case 'M': mul = 1LL << 20; end++; break;
    case 'g': case 'G': mul = 1LL << 30; end++; break;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || (v > 0 && v > INT64_MAX / mul))
        return -1;
    *out = v * mul;
    return 0;
}

int cmd_update(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"resources", required_argument, NULL, 'r'}, {"memory", required_argument, NULL, 'm'},
        {"memory-reservation", required_argument, NULL, 'R'},
        {"memory-swap", required_argument, NULL, 'S'}, {"cpu-shares", required_argument, NULL, 's'},
        {"cpu-quota", required_argument, NULL, 'q'}, {"cpu-period", required_argument, NULL, 'p'},
        {"cpuset-cpus", required_argument, NULL, 'c'}, {"cpuset-mems", required_argument, NULL, 'M'},
        {"pids-limit", required_argument, NULL, 'P'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *usage = "update [--resources FILE|-] [--memory N] [--memory-reservation N] "
                        "[--memory-swap N] [--cpu-shares N] [--cpu-quota N] [--cpu-period N] "
                        "[--cpuset-cpus L] [--cpuset-mems L] [--pids-limit N] ID";
    struct json_object *res = json_object_new_object();
    const char *file = NULL;
    optind = 1;
    opterr = 0;
    int c, r = -1;
    while ((c = getopt_long(argc, argv, "+r:h", opts, NULL)) != -1) {
        const char *sect = NULL, *key = NULL;
        bool is_str = false;
        switch (c) {
        case 'r': file = optarg; continue;
        case 'm': sect = "memory"; key = "limit"; break;
        case 'R': sect = "memory"; key = "reservation"; break;
        case 'S': sect = "memory"; key = "swap"; break;
        case 's': sect = "cpu"; key = "shares"; break;
        case 'q': sect = "cpu"; key = "quota"; break;
        case 'p': sect = "cpu"; key = "period"; break;
        case 'c': sect = "cpu"; key = "cpus"; is_str = true; break;
        case 'M': sect = "cpu"; key = "mems"; is_str = true; break;
        case 'P': sect = "pids"; key = "limit"; break;
        case 'h': printf("usage: cocoon %s\n", usage); r = 0; goto out;
        default:
            err_make(err, 0, "update: unknown or incomplete option `%s`", argv[optind - 1]);
            goto out;
        }
        struct json_object *s;
        if (!json_object_object_get_ex(res, sect, &s)) {
            s = json_object_new_object();
            json_object_object_add(res, sect, s);
        }
        int64_t v;
        if (is_str) {
            json_object_object_add(s, key, json_object_new_string(optarg));
        } else if (parse_size(optarg, &v) < 0) {
            err_make(err, 0, "update: `%s` is not a number", optarg);
            goto out;
        } else {
            json_object_object_add(s, key, json_object_new_int64(v));
        }
    }
    if (cli_want_args(argc, argv, 1, usage, err) < 0)
        goto out;
    if (file) {
        cleanup_free char *data = NULL;
        if (read_file_at(-100, strcmp(file, "-") == 0 ? "/dev/stdin" : file, 1 << 20, &data,
                         NULL, err) < 0) {
            err_wrap(err, "update: --resources");
            goto out;
        }
        r = container_update(rt, argv[optind], data, err) < 0 ? -1 : 0;
        goto out;
    }
    r = container_update(rt, argv[optind], json_object_to_json_string(res), err) < 0 ? -1 : 0;
out:
    json_object_put(res);
    return r;
}

int cmd_events(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {{"stats", no_argument, NULL, 's'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    bool once = false;
    uint64_t interval = 5;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 's')
            once = true;
        else if (c == 'i') {
            size_t l = strlen(optarg);
            if (l && optarg[l - 1] == 's')
                optarg[l - 1] = '\0';
            if (parse_u64(optarg, 86400, &interval) < 0 || interval == 0)
                return err_make(err, 0, "events: bad --interval `%s` (seconds)", optarg);
        } else if (c == 'h') {
            printf("usage: cocoon events [--stats] [--interval SECONDS] ID\n");
            return 0;
        } else
            return err_make(err, 0, "events: unknown option `%s`", argv[optind - 1]);
    }
    if (cli_want_args(argc, argv, 1, "events [--stats] [--interval N] ID", err) < 0)
        return -1;
    for (;;) {
        cleanup_free char *js = NULL;
        if (container_stats(rt, argv[optind], &js, err) < 0)
            return once ? -1 : 0; /* streaming ends when the container goes */
        printf("%s\n", js);
        fflush(stdout);
        if (once)
            return 0;
        sleep((unsigned)interval);
    }
}
