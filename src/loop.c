/*
 * loop.c - the event loop: one iteration is
 *   1. update the clock, run due timers;
 *   2. run deferred callbacks (write completions, drain) -- never inside an lw_* call;
 *   3. wait in the backend (no wait if step 2 or the endgame has work), which reports
 *      completions: reads, accepts and connects call the application directly;
 *   4. run deferred callbacks again, then the endgame: on_close for every connection
 *      whose close finished, and the free that follows it.
 * Freeing only in step 4, after the backend's batch is fully dispatched, is what makes
 * closing from inside any callback safe and stale events harmless: an event already
 * returned for a connection closed earlier in the same batch still points to live
 * memory whose `detached` flag says "ignore me" (nginx reaches the same end with its
 * instance bit; libuv with uv__platform_invalidate_fd).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lw__conn_run_pending(lw_conn *c);
void lw__conn_endgame(lw_conn *c);
void lw__listener_endgame(lw_listener *l);

static const lw__backend *backend_by_name(const char *name) {
  if (!name || !*name || strcmp(name, LW__BACKEND_DEFAULT->name) == 0)
    return LW__BACKEND_DEFAULT;
#ifdef LW_HAVE_URING
  if (strcmp(name, "uring") == 0 || strcmp(name, "io_uring") == 0)
    return &lw__backend_uring;
#endif
  return NULL;
}

static int loop_try(lw_loop **out, const lw__backend *be) {
  lw_loop *loop = calloc(1, sizeof(*loop));
  if (!loop)
    return LW_ENOMEM;
  loop->backend = be;
  lw__list_init(&loop->pending);
  lw__list_init(&loop->endgame);
  lw__list_init(&loop->endgame_listeners);
  lw__list_init(&loop->listeners);
  lw__list_init(&loop->wakeups);
  lw__list_init(&loop->signals);
  lw__list_init(&loop->watch_endgame);
  loop->sig_slot = -1;
  loop->rbuf_size = 64 * 1024;
  loop->rbuf = malloc(loop->rbuf_size);
  if (!loop->rbuf) {
    free(loop);
    return LW_ENOMEM;
  }
  loop->now = lw__now_ms();
  loop->reserve_fd = lw__sock_reserve_open();
  int r = be->init(loop);
  if (r < 0) {
    if (loop->reserve_fd >= 0)
      lw__sock_close(loop->reserve_fd);
    free(loop->rbuf);
    free(loop);
    return r;
  }
  *out = loop;
  return 0;
}

/* A backend that the kernel refuses (io_uring missing, disabled by the
 * kernel.io_uring_disabled sysctl, or blocked by a seccomp filter as in many container
 * runtimes) falls back to epoll, saying so once on stderr: the application keeps
 * working, and lw_loop_backend() tells which backend it got. A name the APPLICATION
 * passes that this build does not know is its error (LW_ENOSYS); one that comes from
 * the environment (LW_BACKEND=bogus) is the operator's, and must not make every
 * lw_loop_new of every program fail: warned once, and the default is used. */
int lw_loop_new(lw_loop **out, const char *backend) {
  static int warned, warned_env;
  if (!out)
    return LW_EINVAL;
  *out = NULL;
  int from_env = 0;
  if (!backend || !*backend) {
    backend = getenv("LW_BACKEND");
    from_env = backend && *backend;
  }
  const lw__backend *be = backend_by_name(backend);
  if (!be) {
    if (backend && (strcmp(backend, "uring") == 0 || strcmp(backend, "io_uring") == 0)) {
      if (!warned++)
        fprintf(stderr, "lastword: io_uring backend not built in (no liburing); using %s\n",
                LW__BACKEND_DEFAULT->name);
      be = LW__BACKEND_DEFAULT;
    } else if (from_env) {
      if (!warned_env++)
        fprintf(stderr, "lastword: LW_BACKEND=%s is not a backend of this build; using %s\n",
                backend, LW__BACKEND_DEFAULT->name);
      be = LW__BACKEND_DEFAULT;
    } else {
      return LW_ENOSYS;
    }
  }
  int r = loop_try(out, be);
  if (r < 0 && be != LW__BACKEND_DEFAULT) {
    if (!warned++)
      fprintf(stderr, "lastword: %s backend refused by this kernel (%s); using %s\n", be->name,
              lw_err_name(r), LW__BACKEND_DEFAULT->name);
    r = loop_try(out, LW__BACKEND_DEFAULT);
  }
  return r;
}

int lw_loop_close(lw_loop *loop) {
  if (!loop)
    return LW_EINVAL;
  if (loop->nconns || loop->nlisteners || loop->ntimers || !lw__list_empty(&loop->endgame) ||
      !lw__list_empty(&loop->endgame_listeners) || loop->nhandles)
    return LW_EBUSY;
  /* Every signal watcher is freed: the loop has left the signal registry (signal.c). */
  assert(loop->sig_slot < 0 && loop->nsig_started == 0);
  loop->backend->destroy(loop);
  free(loop->conns);
  if (loop->reserve_fd >= 0)
    lw__sock_close(loop->reserve_fd);
  lw__heap_free(&loop->timers);
  free(loop->rbuf);
  free(loop);
  return 0;
}

void lw_loop_stop(lw_loop *loop) { loop->stop = 1; }
uint64_t lw_loop_now(const lw_loop *loop) { return loop->now; }
const char *lw_loop_backend(const lw_loop *loop) { return loop->backend->name; }
void lw_loop_set_data(lw_loop *loop, void *data) { loop->data = data; }
void *lw_loop_get_data(const lw_loop *loop) { return loop->data; }

int lw_loop_set_socket_reuse(lw_loop *loop, unsigned max_sockets) {
  if (!loop)
    return LW_EINVAL;
  if (!loop->backend->set_socket_reuse)
    return LW_ENOSYS;
  return loop->backend->set_socket_reuse(loop, max_sockets);
}

void lw__loop_pending_add(lw_conn *c) {
  /* A conn in the endgame has its node there; the endgame runs its callbacks. */
  if (c->in_pending || c->in_endgame)
    return;
  c->in_pending = 1;
  lw__list_push(&c->loop->pending, &c->node);
}

static int run_pending(lw_loop *loop) {
  /* Callbacks may queue more pending work; take the list as it is now and leave the
   * rest for the next round so a callback that writes in a loop cannot starve I/O. */
  int ran = !lw__list_empty(&loop->pending);
  lw__list batch;
  lw__list_move_all(&batch, &loop->pending);
  while (!lw__list_empty(&batch)) {
    lw__list *n = batch.next;
    lw__list_remove(n);
    lw_conn *c = LW__CONTAINER_OF(n, lw_conn, node);
    c->in_pending = 0;
    lw__conn_run_pending(c);
  }
  return ran;
}

static int run_endgame(lw_loop *loop) {
  int ran = !lw__list_empty(&loop->endgame) || !lw__list_empty(&loop->endgame_listeners);
  lw__watch_endgame(loop); /* freed fd watchers: no callback, only their memory */
  while (!lw__list_empty(&loop->endgame)) {
    lw__list *n = loop->endgame.next;
    lw__list_remove(n);
    lw__conn_endgame(LW__CONTAINER_OF(n, lw_conn, node));
  }
  while (!lw__list_empty(&loop->endgame_listeners)) {
    lw__list *n = loop->endgame_listeners.next;
    lw__list_remove(n);
    lw__listener_endgame(LW__CONTAINER_OF(n, lw_listener, endgame_node));
  }
  return ran;
}

/* What keeps lw_loop_run(LW_RUN_DEFAULT) going: connections, listeners, armed timers
 * and active handles that are not unref'd, freed watches whose poll the kernel still
 * holds (io_uring: the cancelled poll's completion must be reaped), deferred work. */
static int loop_alive(const lw_loop *loop) {
  return loop->nconns || loop->nlisteners || loop->ntimers_armed > loop->ntimers_unref_armed ||
         loop->nactive || loop->nwatch_busy || !lw__list_empty(&loop->pending) ||
         !lw__list_empty(&loop->endgame) || !lw__list_empty(&loop->endgame_listeners);
}

int lw_loop_run(lw_loop *loop, lw_run_mode mode) {
  assert(loop);
  loop->stop = 0;
  int r = 0;
  for (;;) {
    loop->now = lw__now_ms();
    int ran = lw__timers_run(loop) > 0;
    ran |= run_pending(loop);
    ran |= run_endgame(loop);
    if (loop->stop || !loop_alive(loop))
      break;

    /* LW_RUN_ONCE that already ran callbacks (due timers, deferred callbacks) only
     * collects what is ready and returns: it waits only when it had nothing to run,
     * so the caller sees the effect of a due timer at once. */
    int timeout = -1;
    if (mode == LW_RUN_NOWAIT || (mode == LW_RUN_ONCE && ran) ||
        !lw__list_empty(&loop->pending) || !lw__list_empty(&loop->endgame) ||
        !lw__list_empty(&loop->endgame_listeners))
      timeout = 0;
    else
      timeout = lw__timers_next_ms(loop);
    r = loop->backend->poll(loop, timeout);
    if (r < 0)
      break;
    loop->now = lw__now_ms();
    lw__timers_run(loop);
    run_pending(loop);
    run_endgame(loop);
    if (mode != LW_RUN_DEFAULT || loop->stop)
      break;
  }
  return r < 0 ? r : 0;
}
