/* The event loop: epoll with a callback per fd. Entries removed while a
 * batch is being dispatched are freed only after the batch. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "vmm/evloop.h"

struct ev_entry {
    int fd;
    evloop_fn fn;
    void *arg;
    bool dead;
    struct ev_entry *next;
};

struct evloop {
    int ep;
    struct ev_entry *entries; /* live and dead, dead ones reaped after a batch */
};

int evloop_create(struct evloop **out, struct err **err)
{
    struct evloop *l = xcalloc(1, sizeof(*l));
    l->ep = epoll_create1(EPOLL_CLOEXEC);
    if (l->ep < 0) {
        free(l);
        return err_make(err, errno, "epoll_create1");
    }
    *out = l;
    return 0;
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *arg,
               struct err **err)
{
    struct ev_entry *e = xcalloc(1, sizeof(*e));
    *e = (struct ev_entry){.fd = fd, .fn = fn, .arg = arg, .next = l->entries};
    struct epoll_event ev = {.events = events, .data.ptr = e};
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int saved = errno;
        free(e);
        return err_make(err, saved, "epoll_ctl ADD fd %d", fd);
    }
    l->entries = e;
    return 0;
}

static struct ev_entry *find(struct evloop *l, int fd)
{
    for (struct ev_entry *e = l->entries; e; e = e->next)
        if (e->fd == fd && !e->dead)
            return e;
    return NULL;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
    struct ev_entry *e = find(l, fd);
    if (e == NULL)
        return -1;
    struct epoll_event ev = {.events = events, .data.ptr = e};
    return epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev);
}

void evloop_del(struct evloop *l, int fd)
{
    struct ev_entry *e = find(l, fd);
    if (e == NULL)
        return;
    epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
    e->dead = true;
}

static void reap(struct evloop *l)
{
    struct ev_entry **pp = &l->entries;
    while (*pp) {
        struct ev_entry *e = *pp;
        if (e->dead) {
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
}

void evloop_run_once(struct evloop *l, int timeout_ms)
{
    struct epoll_event evs[32];
    int n = epoll_wait(l->ep, evs, 32, timeout_ms);
    for (int i = 0; i < n; i++) {
        struct ev_entry *e = evs[i].data.ptr;
        if (!e->dead)
            e->fn(e->arg, evs[i].events);
    }
    reap(l);
}

void evloop_destroy(struct evloop *l)
{
    if (l == NULL)
        return;
    for (struct ev_entry *e = l->entries; e; e = e->next)
        e->dead = true;
    reap(l);
    close(l->ep);
    free(l);
}
