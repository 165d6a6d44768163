#include "ns/caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "common/err.h"
#include "oci/config.h"

static int cap_lookup(const char *name, cap_value_t *out)
{
    return cap_from_name(name, out) == 0 ? 0 : -1;
}

static int check_list(char **list, const char *set, struct err **err)
{
    for (size_t i = 0; list && list[i]; i++) {
        cap_value_t v;
        if (cap_lookup(list[i], &v) < 0)
            return err_input(err, "config.json: `process.capabilities.%s[%zu]`: unknown capability "
                            "`%s`",
                            set, i, list[i]);
    }
    return 0;
}

int caps_validate(const struct oci_caps *caps, struct err **err)
{
    if (check_list(caps->bounding, "bounding", err) < 0 ||
        check_list(caps->effective, "effective", err) < 0 ||
        check_list(caps->inheritable, "inheritable", err) < 0 ||
        check_list(caps->permitted, "permitted", err) < 0 ||
        check_list(caps->ambient, "ambient", err) < 0)
        return -1;
    return 0;
}

static bool in_list(char **list, cap_value_t v)
{
    for (size_t i = 0; list && list[i]; i++) {
        cap_value_t c;
        if (cap_lookup(list[i], &c) == 0 && c == v)
            return true;
    }
    return false;
}

int caps_drop_bounding(const struct oci_caps *caps, struct err **err)
{
    cap_value_t last = (cap_value_t)cap_max_bits() - 1;
    for (cap_value_t v = 0; v <= last; v++) {
        if (in_list(caps->bounding, v))
            continue;
        if (prctl(PR_CAPBSET_DROP, v, 0, 0, 0) < 0 && errno != EINVAL)
            return err_make(err, errno, "drop capability %s from the bounding set",
                            cap_to_name(v));
    }
    return 0;
}

static int add_flags(cap_t c, cap_flag_t flag, char **list)
{
    for (size_t i = 0; list && list[i]; i++) {
        cap_value_t v;
        if (cap_lookup(list[i], &v) < 0 || cap_set_flag(c, flag, 1, &v, CAP_SET) < 0)
            return -1;
    }
    return 0;
}

int caps_apply(const struct oci_caps *caps, struct err **err)
{
    cap_t c = cap_init();
    if (c == NULL)
        return err_make(err, errno, "cap_init");
    if (add_flags(c, CAP_EFFECTIVE, caps->effective) < 0 ||
        add_flags(c, CAP_PERMITTED, caps->permitted) < 0 ||
        add_flags(c, CAP_INHERITABLE, caps->inheritable) < 0) {
        cap_free(c);
        return err_input(err, "process.capabilities");
    }
    int r = cap_set_proc(c);
    int e = errno;
    cap_free(c);
    if (r < 0)
        return err_make(err, e, "set process.capabilities");
    for (size_t i = 0; caps->ambient && caps->ambient[i]; i++) {
        cap_value_t v;
        if (cap_lookup(caps->ambient[i], &v) < 0)
            continue;
        /* The kernel allows an ambient capability only if it is permitted and
         * inheritable; like runc, one that is not is skipped (runc's default
         * spec lists ambient capabilities with no inheritable set). */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, v, 0, 0) < 0 && errno != EPERM)
            return err_make(err, errno, "raise ambient capability `%s`", caps->ambient[i]);
    }
    return 0;
}
