/* evloop.c -- libnats' event-loop callbacks on the NATS thread's loop,
 * and direct runs from another thread (see evloop.h).  The loop applies
 * the state libnats asked for ('want', a new socket, a detach) rather than
 * a queue of requests: only the last request for each event matters, and
 * nothing is allocated per request.
 */
#include "nats/evloop.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A poll handle and the socket number it polls: the adapter's own
 * duplicate of libnats' (see myc__nats_ev_attach), closed with it. */
typedef struct {
  uv_poll_t h;
  int fd;
} ev_poll;

static int on_loop(const myc__nats_ev *v) {
  uv_thread_t self = uv_thread_self();
  if (v->owner != NULL)
    return myc__owner_held(v->owner);
  return uv_thread_equal(&self, &v->loop_thread);
}

/* Once myc__nats_ev_close closed the wake-up, the last handle closed
 * says so: a poll handle closed earlier may still be on its way. */
static void closed_one(myc__nats_ev *v) {
  if (v->wake_gone && v->closing == 0 && v->closed != NULL)
    v->closed(v->after_read_ud);
}

static void free_poll(uv_handle_t *h) {
  myc__nats_ev *v = h->data;
  close(((ev_poll *)(void *)h)->fd);
  myc__free(v->a, h, sizeof(ev_poll));
  v->closing--;
  closed_one(v);
}

static void close_poll(myc__nats_ev *v) {
  if (v->poll != NULL) {
    v->closing++;
    uv_close((uv_handle_t *)v->poll, free_poll);
  }
  v->poll = NULL;
}

static void wake_closed(uv_handle_t *h) {
  myc__nats_ev *v = h->data;
  v->wake_gone = 1;
  closed_one(v);
}

/* Whether the server's first bytes since the attach are NATS protocol in
 * clear text (an operation: INFO, MSG, HMSG, PING, PONG, +OK, -ERR) or a
 * TLS record (content types 20 to 24; OpenSSL reads whole records, so
 * the next byte is a record's first).  Loop thread, before libnats reads
 * them. */
static void peek(myc__nats_ev *v) {
  int unknown = EV_UNKNOWN;
  unsigned char c;
  ssize_t n = recv(v->fd_loop, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0)
    return; /* nothing yet: the next readable event looks again */
  atomic_compare_exchange_strong(
      &v->mode, &unknown,
      n == 1 && ((c >= 'A' && c <= 'Z') || c == '+' || c == '-') ? EV_PLAIN
                                                                 : EV_TLS);
}

static void read_event(myc__nats_ev *v) {
  int mode = atomic_load(&v->mode);
  /* libnats stopped polling to redial: its reconnect thread may hold the
   * connection lock through a dial, which a read would wait for (on a
   * worker's loop, that worker). */
  if (mode == EV_DOWN)
    return;
  if (v->allowed && mode == EV_UNKNOWN)
    peek(v);
  natsConnection_ProcessReadEvent(v->nc_loop);
  if (v->after_read != NULL)
    v->after_read(v->after_read_ud);
}

static natsStatus apply(myc__nats_ev *v);

static void on_poll(uv_poll_t *h, int status, int events) {
  myc__nats_ev *v = h->data;
  if (status < 0) {
    /* libnats finds the error reading, and reconnects.  libuv stopped
     * the handle (POLLERR): a peer that sent data before its reset has
     * that read first, with no error, and nothing would read again, so
     * the connection would look up for good.  Polling starts again with
     * what libnats still wants (nothing once it redials). */
    v->has = 0;
    read_event(v);
    (void)apply(v);
    return;
  }
  if (events & UV_READABLE)
    read_event(v);
  if (events & UV_WRITABLE) {
    uv_mutex_lock(&v->io);
    myc__nats_ev_flush(v, v->nc_loop);
    uv_mutex_unlock(&v->io);
  }
}

/* Applies what libnats asked for last (loop thread). */
static natsStatus apply(myc__nats_ev *v) {
  int attach, detach, down, want, fd, rc = 0;
  natsConnection *nc;
  uv_mutex_lock(&v->lock);
  attach = v->attach;
  detach = v->detach;
  down = atomic_load(&v->mode) == EV_DOWN;
  want = v->want;
  fd = v->fd;
  nc = v->nc;
  v->attach = v->detach = 0;
  if (attach)
    v->fd = -1; /* this one's now */
  uv_mutex_unlock(&v->lock);
  /* Detached, or libnats stopped polling to redial: it closes that
   * socket.  The handle goes (and its duplicate of the number with it)
   * rather than waiting stopped, so that the socket is released and
   * nothing the loop does later (a write asked for meanwhile) polls it;
   * the next attach polls the new socket. */
  if (detach || (down && !attach)) {
    close_poll(v);
    if (attach)
      close(fd);
    return NATS_OK;
  }
  if (attach) {
    ev_poll *p;
    /* A reconnect: the old socket is closed, its handle goes with it. */
    close_poll(v);
    p = myc__malloc(v->a, sizeof *p);
    if (p == NULL) {
      close(fd);
      return NATS_NO_MEMORY;
    }
    if (uv_poll_init_socket(v->loop, &p->h, fd) != 0) {
      myc__free(v->a, p, sizeof *p);
      close(fd);
      return NATS_ERR;
    }
    p->fd = fd;
    v->poll = &p->h;
    v->poll->data = v;
    v->has = 0;
    v->fd_loop = fd;
    v->nc_loop = nc;
  }
  if (v->poll == NULL || want == v->has)
    return NATS_OK;
  rc = want ? uv_poll_start(v->poll, want, on_poll) : uv_poll_stop(v->poll);
  v->has = want;
  return rc == 0 ? NATS_OK : NATS_ERR;
}

static void on_wake(uv_async_t *a) {
  myc__nats_ev *v = a->data;
  natsConnection *nc;
  /* A subscription made meanwhile may hold what the last read brought
   * (myc__nats_ev_kick). */
  if (v->after_read != NULL)
    v->after_read(v->after_read_ud);
  if (apply(v) == NATS_OK)
    return;
  uv_mutex_lock(&v->lock);
  nc = v->nc;
  uv_mutex_unlock(&v->lock);
  /* The socket cannot be polled: as libnats' adapter does, the
   * connection closes rather than hanging silently. */
  if (nc != NULL)
    natsConnection_Close(nc);
}

/* Applies now on the loop thread, or has the loop apply it. */
static natsStatus update(myc__nats_ev *v) {
  if (on_loop(v))
    return apply(v);
  return uv_async_send(&v->wake) == 0 ? NATS_OK : NATS_ERR;
}

int myc__nats_ev_init(myc__nats_ev *v, uv_loop_t *loop, const myc__alloc *a,
                      int allowed) {
  int rc;
  memset(v, 0, sizeof *v);
  v->a = a;
  v->loop = loop;
  v->fd = v->fd_loop = -1;
  v->allowed = allowed;
  atomic_init(&v->mode, EV_DOWN);
  if ((rc = uv_mutex_init(&v->io)) != 0)
    return rc;
  if ((rc = uv_mutex_init(&v->lock)) != 0) {
    uv_mutex_destroy(&v->io);
    return rc;
  }
  if ((rc = uv_async_init(loop, &v->wake, on_wake)) != 0) {
    uv_mutex_destroy(&v->lock);
    uv_mutex_destroy(&v->io);
    return rc;
  }
  v->wake.data = v;
  v->inited = 1;
  return 0;
}

void myc__nats_ev_loop_thread(myc__nats_ev *v) {
  v->loop_thread = uv_thread_self();
}

void myc__nats_ev_close(myc__nats_ev *v, void (*closed)(void *ud)) {
  v->closed = closed;
  close_poll(v);
  uv_mutex_lock(&v->lock);
  if (v->fd >= 0)
    close(v->fd); /* attached, never polled */
  v->fd = -1;
  uv_mutex_unlock(&v->lock);
  uv_close((uv_handle_t *)&v->wake, wake_closed);
}

void myc__nats_ev_free(myc__nats_ev *v) {
  if (!v->inited)
    return;
  uv_mutex_destroy(&v->lock);
  uv_mutex_destroy(&v->io);
  v->inited = 0;
}

natsStatus myc__nats_ev_attach(void **ud, void *loop, natsConnection *nc,
                               natsSock fd) {
  myc__nats_ev *v = loop;
  /* The loop polls a duplicate of the socket number, taken now while
   * libnats holds it: libnats closes its own number when it stops
   * polling (a close, a redial) while the loop may still have a change
   * of the poll pending (libuv aborts when epoll refuses one), and a new
   * socket could take that number at once.  The duplicate keeps the
   * socket until the loop closes its handle. */
  int dfd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
  *ud = v;
  if (dfd < 0)
    return NATS_SYS_ERROR;
  uv_mutex_lock(&v->lock); /* apply() reads the mode with 'attach' */
  atomic_store(&v->mode, EV_UNKNOWN);
  v->nc = nc;
  if (v->attach && v->fd >= 0)
    close(v->fd); /* attached before, never polled */
  v->fd = dfd;
  v->attach = 1;
  v->want = UV_READABLE;
  uv_mutex_unlock(&v->lock);
  return update(v);
}

/* Sets event 'ev' of 'want' on or off; returns whether that changed it. */
static int set_want(myc__nats_ev *v, int ev, bool add) {
  int old = v->want;
  v->want = add ? v->want | ev : v->want & ~ev;
  return v->want != old;
}

natsStatus myc__nats_ev_read(void *ud, bool add) {
  myc__nats_ev *v = ud;
  int changed;
  /* Off: libnats stops polling to reconnect (or to close). */
  if (!add)
    atomic_store(&v->mode, EV_DOWN);
  uv_mutex_lock(&v->lock);
  changed = set_want(v, UV_READABLE, add);
  uv_mutex_unlock(&v->lock);
  return changed ? update(v) : NATS_OK;
}

natsStatus myc__nats_ev_write(void *ud, bool add) {
  myc__nats_ev *v = ud;
  uv_thread_t self = uv_thread_self();
  int changed;
  uv_mutex_lock(&v->lock);
  if (!add)
    v->asked = 0;
  if (add && v->direct && uv_thread_equal(&self, &v->direct_thread)) {
    /* The run's end writes it. */
    v->asked = 1;
    uv_mutex_unlock(&v->lock);
    return NATS_OK;
  }
  changed = set_want(v, UV_WRITABLE, add);
  uv_mutex_unlock(&v->lock);
  return changed ? update(v) : NATS_OK;
}

natsStatus myc__nats_ev_detach(void *ud) {
  myc__nats_ev *v = ud;
  atomic_store(&v->mode, EV_DOWN);
  uv_mutex_lock(&v->lock);
  v->detach = 1;
  v->want = 0;
  uv_mutex_unlock(&v->lock);
  return update(v);
}

void myc__nats_ev_kick(myc__nats_ev *v) {
  uv_async_send(&v->wake);
}

int myc__nats_ev_direct_ok(myc__nats_ev *v) {
  return v->allowed && atomic_load(&v->mode) == EV_PLAIN;
}

void myc__nats_ev_direct_begin(myc__nats_ev *v) {
  uv_mutex_lock(&v->lock);
  v->direct = 1;
  v->direct_thread = uv_thread_self();
  v->asked = 0;
  uv_mutex_unlock(&v->lock);
}

int myc__nats_ev_direct_end(myc__nats_ev *v, natsConnection *nc) {
  int asked, changed = 0;
  uv_mutex_lock(&v->lock);
  v->direct = 0;
  asked = v->asked;
  uv_mutex_unlock(&v->lock);
  if (!asked)
    return 0;
  /* All written: libnats takes its request back (asked cleared). */
  myc__nats_ev_flush(v, nc);
  uv_mutex_lock(&v->lock);
  if (v->asked) {
    /* The socket took part of it: the loop writes the rest when it is
     * writable, as if libnats had asked it in the first place. */
    v->asked = 0;
    changed = set_want(v, UV_WRITABLE, 1);
  }
  uv_mutex_unlock(&v->lock);
  if (changed)
    update(v);
  return 1;
}

void myc__nats_ev_flush(myc__nats_ev *v, natsConnection *nc) {
  (void)v;
  /* libnats takes an empty write for a closed connection. */
  if (nc != NULL && natsConnection_Buffered(nc) > 0)
    natsConnection_ProcessWriteEvent(nc);
}
