/*
 * Cross-core messages. Each loop's inbox is a lock-free LIFO stack that any
 * thread pushes onto with a compare-and-swap and only the owner empties, with
 * one atomic exchange; the owner reverses what it took so messages run in the
 * order they were pushed. A sender rings the doorbell only when it found the
 * inbox empty: the owner always empties the whole inbox, so every message
 * pushed after that finds it empty again and rings.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop_impl.h"

typedef struct heap_msg {
    coil_msg m;
    coil_msg_fn fn;
    void *arg;
} heap_msg;

static void heap_msg_run(coil_loop *target, void *arg)
{
    heap_msg *h = arg;
    coil_msg_fn fn = h->fn;
    void *user = h->arg;
    free(h);
    fn(target, user);
}

int coil_post_msg(coil_loop *target, coil_msg *msg)
{
    if (!target || !msg || !msg->fn)
        return -EINVAL;
    struct coil__loop *l = target->impl;
    coil_msg *old = atomic_load_explicit(&l->inbox, memory_order_relaxed);
    do {
        msg->next = old;
        /* release: the message's contents are visible to the owner that
         * takes it with an acquire exchange */
    } while (!atomic_compare_exchange_weak_explicit(&l->inbox, &old, msg, memory_order_release,
                                                    memory_order_relaxed));
    if (!old)
        l->be->doorbell(l, coil__tls_loop);
    return 0;
}

int coil_post(coil_loop *target, coil_msg_fn fn, void *arg)
{
    if (!fn)
        return -EINVAL;
    heap_msg *h = malloc(sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->fn = fn;
    h->arg = arg;
    h->m.fn = heap_msg_run;
    h->m.arg = h;
    return coil_post_msg(target, &h->m);
}

void coil__msgs_run(struct coil__loop *l)
{
    if (!atomic_load_explicit(&l->inbox, memory_order_relaxed))
        return;
    coil_msg *taken = atomic_exchange_explicit(&l->inbox, NULL, memory_order_acquire);
    coil_msg *fifo = NULL;
    while (taken) {
        coil_msg *next = taken->next;
        taken->next = fifo;
        fifo = taken;
        taken = next;
    }
    while (fifo) {
        coil_msg *m = fifo;
        fifo = m->next;
        l->msgs_received++;
        /* m may be freed by its fn (heap messages free themselves). */
        m->fn(l->pub, m->arg);
    }
}

int coil__msgs_init(struct coil__loop *l)
{
    atomic_init(&l->inbox, NULL);
    l->wake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return l->wake_efd < 0 ? -errno : 0;
}

void coil__msgs_exit(struct coil__loop *l)
{
    if (l->wake_efd >= 0)
        close(l->wake_efd);
    l->wake_efd = -1;
}

/* Doorbell shared by both backends when the sender cannot use MSG_RING. */
void coil__eventfd_ring(struct coil__loop *target)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the bell is ringing. */
    ssize_t r = write(target->wake_efd, &one, sizeof(one));
    (void)r;
}

void coil__eventfd_drain(struct coil__loop *l)
{
    uint64_t v;
    ssize_t r = read(l->wake_efd, &v, sizeof(v));
    (void)r;
}
