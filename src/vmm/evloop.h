/* The VM's event thread: one epoll loop for all device work (ioeventfds,
 * host sockets and fds, timers, stop signals). Callbacks run on it, one at
 * a time. */
#pragma once
#include <stdint.h>

struct err;
struct evloop;

/* Called with the epoll events that fired on the fd. */
typedef void (*evloop_fn)(void *arg, uint32_t events);

/* A new, empty loop. */
int evloop_create(struct evloop **out, struct err **err);

/* Watch fd for `events` (EPOLLIN, ...); fn(arg, events) when they fire. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_fn fn, void *arg,
               struct err **err);

/* Change the events watched on fd. */
int evloop_mod(struct evloop *l, int fd, uint32_t events);

/* Stop watching fd (safe from inside a callback). */
void evloop_del(struct evloop *l, int fd);

/* Wait up to timeout_ms (-1: forever) and run the callbacks that fired. */
void evloop_run_once(struct evloop *l, int timeout_ms);

/* Free the loop (the fds stay open: their owners close them). */
void evloop_destroy(struct evloop *l);
