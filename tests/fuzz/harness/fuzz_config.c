/* libFuzzer harness: bytes as a config.json (and as an exec process.json).
 * Besides memory errors (ASan/UBSan) it checks what a successful parse
 * promises, and aborts when a promise is broken. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "oci/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

static void check_process(const struct oci_process *p)
{
    CHECK(p->args != NULL && p->args[0] != NULL && p->args[0][0] != '\0');
    CHECK(p->env != NULL);
    CHECK(p->cwd != NULL && p->cwd[0] == '/');
    for (size_t i = 0; i < p->n_rlimits; i++) {
        CHECK(p->rlimits[i].resource >= 0);
        CHECK(p->rlimits[i].soft <= p->rlimits[i].hard);
        for (size_t k = 0; k < i; k++)
            CHECK(p->rlimits[k].resource != p->rlimits[i].resource);
    }
    if (p->has_umask)
        CHECK(p->umask <= 0777);
    if (p->has_oom_score_adj)
        CHECK(p->oom_score_adj >= -1000 && p->oom_score_adj <= 1000);
    if (p->has_console_size)
        CHECK(p->console_height <= 65535 && p->console_width <= 65535);
}

static void check_config(struct oci_config *c)
{
    CHECK(c->root_path != NULL && c->root_path[0] != '\0');
    CHECK(c->json != NULL);
    if (c->hostname)
        CHECK(strlen(c->hostname) <= 64);
    if (c->process)
        check_process(c->process);
    for (size_t i = 0; i < c->n_mounts; i++) {
        struct oci_mount *m = &c->mounts[i];
        CHECK(m->destination != NULL && m->destination[0] == '/');
        CHECK(!m->bind || (m->source != NULL && m->source[0] != '\0'));
        CHECK(m->bind || (m->type != NULL && m->type[0] != '\0'));
        CHECK((m->flags & m->clear) == 0);
        /* Parsing the options again gives the same result. */
        unsigned long flags = m->flags, clear = m->clear, prop = m->propagation;
        bool bind = m->bind, rec = m->recursive;
        char *data = m->data ? xstrdup(m->data) : NULL;
        struct err *err = NULL;
        CHECK(oci_mount_parse_options(m, &err) == 0);
        CHECK(m->flags == flags && m->clear == clear && m->propagation == prop);
        CHECK(m->bind == bind && m->recursive == rec);
        CHECK((data == NULL) == (m->data == NULL));
        CHECK(data == NULL || strcmp(data, m->data) == 0);
        free(data);
    }
    const struct oci_linux *l = &c->linux_;
    CHECK(l->n_namespaces <= OCI_NS_COUNT);
    for (size_t i = 0; i < l->n_namespaces; i++) {
        CHECK((unsigned)l->namespaces[i].type < OCI_NS_COUNT);
        CHECK(l->namespaces[i].path == NULL || l->namespaces[i].path[0] != '\0');
        CHECK(oci_config_ns(c, l->namespaces[i].type) == &l->namespaces[i]);
        CHECK(oci_ns_clone_flag(l->namespaces[i].type) != 0);
    }
    for (size_t i = 0; i < l->n_devices; i++) {
        const struct oci_device *d = &l->devices[i];
        CHECK(d->path != NULL && d->path[0] == '/');
        CHECK(d->type == 'c' || d->type == 'b' || d->type == 'u' || d->type == 'p');
        CHECK(d->major >= 0 && d->major < (1 << 12));
        CHECK(d->minor >= 0 && d->minor < (1 << 20));
    }
    if (l->has_time_offsets)
        CHECK(l->monotonic_nsecs < 1000000000u && l->boottime_nsecs < 1000000000u);
    for (int k = 0; k < OCI_HOOK_KINDS; k++)
        for (size_t i = 0; i < c->hooks.n[k]; i++) {
            CHECK(c->hooks.list[k][i].path != NULL && c->hooks.list[k][i].path[0] == '/');
            CHECK(c->hooks.list[k][i].timeout >= 0);
        }
    for (size_t i = 0; i < c->n_annotations; i++)
        CHECK(oci_config_annotation(c, c->annotations[i].key) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oci_config *cfg = NULL;
    struct err *err = NULL;
    if (oci_config_parse((const char *)data, size, "config.json", &cfg, &err) == 0) {
        CHECK(cfg != NULL && err == NULL);
        check_config(cfg);
        oci_config_free(cfg);
    } else {
        CHECK(cfg == NULL);
        CHECK(err != NULL && err->msg != NULL);
        CHECK(strncmp(err->msg, "config.json: ", 13) == 0);
        err_free(&err);
    }

    struct oci_process *p = NULL;
    if (oci_process_parse((const char *)data, size, "process.json", &p, &err) == 0) {
        CHECK(p != NULL && err == NULL);
        check_process(p);
        oci_process_free(p);
    } else {
        CHECK(p == NULL);
        CHECK(err != NULL && err->msg != NULL);
        err_free(&err);
    }
    return 0;
}
