/* An OCI `process` (as `exec` builds it from flags or --process) written
 * back as JSON, for the agent's EXEC request. */
#include <json-c/json.h>
#include <stdlib.h>

#include "common/util.h"
#include "oci/config.h"
#include "vm/vm_internal.h"

static struct json_object *str_array(char **v)
{
    struct json_object *a = json_object_new_array();
    for (; v && *v; v++)
        json_object_array_add(a, json_object_new_string(*v));
    return a;
}

char *vmc_process_json(const struct oci_process *p, const char *attach_tools)
{
    struct json_object *o = json_object_new_object(), *u = json_object_new_object();
    json_object_object_add(o, "terminal", json_object_new_boolean(p->terminal));
    if (p->has_console_size) {
        struct json_object *cs = json_object_new_object();
        json_object_object_add(cs, "height", json_object_new_int64(p->console_height));
        json_object_object_add(cs, "width", json_object_new_int64(p->console_width));
        json_object_object_add(o, "consoleSize", cs);
    }
    json_object_object_add(u, "uid", json_object_new_int64(p->uid));
    json_object_object_add(u, "gid", json_object_new_int64(p->gid));
    if (p->has_umask)
        json_object_object_add(u, "umask", json_object_new_int64(p->umask));
    if (p->n_additional_gids) {
        struct json_object *g = json_object_new_array();
        for (size_t i = 0; i < p->n_additional_gids; i++)
            json_object_array_add(g, json_object_new_int64(p->additional_gids[i]));
        json_object_object_add(u, "additionalGids", g);
    }
    json_object_object_add(o, "user", u);
    json_object_object_add(o, "args", str_array(p->args));
    json_object_object_add(o, "env", str_array(p->env));
    json_object_object_add(o, "cwd", json_object_new_string(p->cwd ? p->cwd : "/"));
    if (p->has_caps) {
        struct json_object *c = json_object_new_object();
        json_object_object_add(c, "bounding", str_array(p->caps.bounding));
        json_object_object_add(c, "effective", str_array(p->caps.effective));
        json_object_object_add(c, "inheritable", str_array(p->caps.inheritable));
        json_object_object_add(c, "permitted", str_array(p->caps.permitted));
        json_object_object_add(c, "ambient", str_array(p->caps.ambient));
        json_object_object_add(o, "capabilities", c);
    }
    if (p->n_rlimits) {
        struct json_object *a = json_object_new_array();
        for (size_t i = 0; i < p->n_rlimits; i++) {
            const char *name = oci_rlimit_name(p->rlimits[i].resource);
            if (name == NULL)
                continue;
            struct json_object *r = json_object_new_object();
            json_object_object_add(r, "type", json_object_new_string(name));
            json_object_object_add(r, "soft", json_object_new_uint64(p->rlimits[i].soft));
            json_object_object_add(r, "hard", json_object_new_uint64(p->rlimits[i].hard));
            json_object_array_add(a, r);
        }
        json_object_object_add(o, "rlimits", a);
    }
    json_object_object_add(o, "noNewPrivileges", json_object_new_boolean(p->no_new_privileges));
    struct json_object *req = json_object_new_object();
    json_object_object_add(req, "process", o);
    if (attach_tools) {
        struct json_object *at = json_object_new_object();
        json_object_object_add(at, "tools", json_object_new_string(attach_tools));
        json_object_object_add(req, "attach", at);
    }
    char *s = xstrdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
    json_object_put(req);
    return s;
}
