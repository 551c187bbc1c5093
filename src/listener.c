/* listener.c - listening sockets; accepted connections inherit the listener's options. */
#include "internal.h"

#include <stdlib.h>

lw_conn *lw__conn_accepted(lw_loop *loop, int fd, lw__opts *opts, int *err);
void lw__conn_accept_cb_done(lw_conn *c);

/* Shared by new and adopt: wraps a listening fd. On error the caller still owns fd. */
static int listener_wrap(lw_loop *loop, int fd, int port, const lw_conn_options *opts,
                         lw_accept_cb cb, lw_listener **out) {
  lw_listener *l = calloc(1, sizeof(*l));
  if (!l)
    return LW_ENOMEM;
  l->loop = loop;
  l->io.fd = fd;
  l->io.kind = LW__IO_LISTENER;
  l->port = port;
  l->cb = cb;
  l->opts = lw__opts_new(opts);
  if (!l->opts) {
    free(l);
    return LW_ENOMEM;
  }
  lw__list_init(&l->endgame_node);
  lw__list_init(&l->node);
  int r = loop->backend->listener_open(l);
  if (r < 0) {
    lw__opts_unref(l->opts);
    free(l);
    return r;
  }
  loop->nlisteners++;
  lw__list_push(&loop->listeners, &l->node);
  *out = l;
  return 0;
}

int lw_listener_new(lw_loop *loop, const char *host, int port, int backlog,
                    const lw_conn_options *opts, lw_accept_cb cb, lw_listener **out) {
  if (!loop || !host || !cb || !out)
    return LW_EINVAL;
  int fd = -1, real_port = 0;
  int r = lw__sock_listen(host, port, backlog, &fd, &real_port);
  if (r < 0)
    return r;
  r = listener_wrap(loop, fd, real_port, opts, cb, out);
  if (r < 0)
    lw__sock_close(fd);
  return r;
}

int lw_listener_adopt(lw_loop *loop, int fd, const lw_conn_options *opts, lw_accept_cb cb,
                      lw_listener **out) {
  if (!loop || fd < 0 || !cb || !out)
    return LW_EINVAL;
  int port = 0;
  int r = lw__sock_check_listening(fd, &port);
  if (r < 0)
    return r;
  return listener_wrap(loop, fd, port, opts, cb, out);
}

int lw_listener_port(const lw_listener *l) { return l->port; }
int lw_listener_fd(const lw_listener *l) { return l->closing ? -1 : l->io.fd; }
int lw_listener_paused(const lw_listener *l) { return l->paused; }

int lw_listener_queued(const lw_listener *l) {
  if (!l || l->closing)
    return LW_EINVAL;
  return lw__sock_accept_queue(l->io.fd);
}

static int listener_set_paused(lw_listener *l, int paused) {
  if (!l || l->closing)
    return LW_EINVAL;
  if (l->paused == paused)
    return 0;
  l->paused = paused;
  l->loop->backend->listener_pause(l, paused);
  return 0;
}

int lw_listener_pause(lw_listener *l) { return listener_set_paused(l, 1); }
int lw_listener_resume(lw_listener *l) { return listener_set_paused(l, 0); }
void lw_listener_set_data(lw_listener *l, void *data) { l->data = data; }
void *lw_listener_get_data(const lw_listener *l) { return l->data; }

void lw_listener_close(lw_listener *l) {
  if (!l || l->closing)
    return;
  l->closing = 1;
  lw__list_remove(&l->node);
  l->loop->backend->listener_close(l);
  if (l->loop->backend->close_fd)
    l->loop->backend->close_fd(l->loop, &l->io); /* io_uring: after its queued SQEs */
  else
    lw__sock_close(l->io.fd);
  l->io.fd = -1;
  lw__list_push(&l->loop->endgame_listeners, &l->endgame_node);
}

void lw__listener_endgame(lw_listener *l) {
  l->loop->nlisteners--;
  lw__opts_unref(l->opts); /* its connections keep their references */
  free(l);
}

void lw__listener_accept_done(lw_listener *l, int fd, int status) {
  if (l->closing) {
    if (fd >= 0)
      lw__sock_close(fd);
    return;
  }
  if (fd < 0) {
    l->cb(l, NULL, status);
    return;
  }
  int err = 0;
  lw_conn *c = lw__conn_accepted(l->loop, fd, l->opts, &err);
  if (!c) {
    lw__sock_close(fd);
    l->cb(l, NULL, err);
    return;
  }
  lw_loop *loop = l->loop;
  l->cb(l, c, 0);
  lw__conn_accept_cb_done(c);
  /* Accepted while a drain runs (io_uring / IOCP: already accepted when the drain
   * paused the listener; or the application resumed it): the drain covers it. */
  if (loop->drain)
    lw__drain_accepted(loop, c);
}
