/*
 * The per-loop scheduler: stackful tasks, their run queue, and the one way a
 * task waits (coil__block), on which every operation, sleep, join and event
 * is built.
 */
#include <errno.h>
#include <stdlib.h>

#include "loop_impl.h"

_Thread_local struct coil__loop *coil__tls_loop;

static void ready_push(struct coil__loop *l, coil_task *t)
{
    if (t->queued || t->state == COIL__TASK_DONE)
        return;
    t->queued = true;
    t->next_ready = NULL;
    if (l->ready_tail)
        l->ready_tail->next_ready = t;
    else
        l->ready_head = t;
    l->ready_tail = t;
}

static void task_free(struct coil__loop *l, coil_task *t)
{
    t->next_ready = l->free_tasks;
    l->free_tasks = t;
}

/* Runs on the task's own stack; never returns (the scheduler reclaims the
 * stack once it is back on its own). */
static void task_entry(void *arg)
{
    coil_task *t = arg;
    struct coil__loop *l = t->loop;
    t->result = t->fn(t->arg);
    t->state = COIL__TASK_DONE;
    if (t->joiner && t->join_wait)
        coil__wake(t->join_wait);
    coil__ctx_switch_final(&t->ctx, &l->sched_ctx);
}

static void task_finished(struct coil__loop *l, coil_task *t)
{
    coil__ctx_destroy(&t->ctx);
    coil__stack_put(&l->stacks, t->stack);
    t->stack.lo = NULL;
    l->tasks_live--;
    if (t->detached)
        task_free(l, t);
}

void coil__run_ready(struct coil__loop *l)
{
    /* Only the tasks ready when the batch starts run now; tasks they wake run
     * next turn, after the backend was polled, so I/O is never starved. */
    coil_task *t = l->ready_head;
    coil_task *last = l->ready_tail;
    if (!t)
        return;
    l->ready_head = l->ready_tail = NULL;
    struct coil__loop *prev_tls = coil__tls_loop;
    coil__tls_loop = l;
    for (;;) {
        coil_task *next = t->next_ready;
        bool is_last = (t == last);
        t->queued = false;
        if (t->state != COIL__TASK_DONE) {
            t->state = COIL__TASK_RUNNING;
            l->current = t;
            coil__ctx_switch(&l->sched_ctx, &t->ctx);
            l->current = NULL;
            if (t->state == COIL__TASK_DONE)
                task_finished(l, t);
        }
        if (is_last)
            break;
        t = next;
    }
    coil__tls_loop = prev_tls;
}

void coil__wake(coil__wait *w)
{
    if (w->done)
        return;
    w->done = true;
    coil_task *t = w->task;
    if (t && t->state == COIL__TASK_BLOCKED)
        ready_push(t->loop, t);
}

static void wait_abort(coil__wait *w, int reason)
{
    if (w->done || w->aborting || w->shield)
        return;
    w->aborting = true;
    w->reason = reason;
    if (w->abort)
        w->abort(w);
    else
        coil__wake(w);
}

int coil__pending(coil_task *t)
{
    if (t->cancelled)
        return -ECANCELED;
    if (t->interrupt) {
        int err = t->interrupt;
        t->interrupt = 0;
        return err;
    }
    return 0;
}

static void deadline_fired(coil_timer *timer)
{
    wait_abort(timer->data, -ETIMEDOUT);
}

static void deadline_unlist(struct coil__loop *l, coil__deadline *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        l->new_deadlines = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->listed = false;
}

void coil__deadlines_arm(struct coil__loop *l)
{
    while (l->new_deadlines) {
        coil__deadline *d = l->new_deadlines;
        deadline_unlist(l, d);
        if (!d->w->done && coil_timer_start(&d->timer, d->when) < 0)
            wait_abort(d->w, -ENOMEM);
    }
}

int64_t coil__deadlines_next(struct coil__loop *l)
{
    int64_t next = -1;
    for (coil__deadline *d = l->new_deadlines; d; d = d->next)
        if (next < 0 || d->when < next)
            next = d->when;
    return next;
}

int coil__block(struct coil__loop *l, coil__wait *w, int64_t deadline)
{
    coil_task *t = l->current;
    w->task = t;
    coil__deadline *dl = &t->deadline;
    bool timed = deadline != COIL_NO_DEADLINE;
    if (timed) {
        coil_timer_init(l->pub, &dl->timer, deadline_fired);
        dl->timer.data = w;
        dl->w = w;
        dl->when = deadline;
        dl->prev = NULL;
        dl->next = l->new_deadlines;
        if (dl->next)
            dl->next->prev = dl;
        l->new_deadlines = dl;
        dl->listed = true;
    }
    t->wait = w;
    /* A cancel that raced with starting the operation still ends the wait. */
    if (!w->shield) {
        int pending = coil__pending(t);
        if (pending)
            wait_abort(w, pending);
    }
    while (!w->done) {
        t->state = COIL__TASK_BLOCKED;
        coil__ctx_switch(&t->ctx, &l->sched_ctx);
    }
    t->state = COIL__TASK_RUNNING;
    t->wait = NULL;
    if (timed) {
        if (dl->listed)
            deadline_unlist(l, dl);
        else
            coil_timer_stop(&dl->timer);
    }
    return w->reason;
}

int coil_spawn(coil_loop *loop, coil_task_fn fn, void *arg, coil_task **out)
{
    struct coil__loop *l = loop->impl;
    if (!fn)
        return -EINVAL;
    if (l->exiting)
        return -ESHUTDOWN;
    coil_task *t = l->free_tasks;
    if (t)
        l->free_tasks = t->next_ready;
    else if (!(t = malloc(sizeof(*t))))
        return -ENOMEM;
    *t = (coil_task){ .loop = l, .fn = fn, .arg = arg, .detached = out == NULL };
    int err = coil__stack_get(&l->stacks, &t->stack);
    if (err < 0) {
        task_free(l, t);
        return err;
    }
    coil__ctx_make(&t->ctx, t->stack.lo, t->stack.size, task_entry, t);
    t->state = COIL__TASK_READY;
    l->tasks_live++;
    l->tasks_spawned++;
    ready_push(l, t);
    if (out)
        *out = t;
    return 0;
}

static void join_abort(coil__wait *w)
{
    coil_task *target = w->ctx;
    target->joiner = NULL;
    target->join_wait = NULL;
    coil__wake(w);
}

/* shielded: neither a cancel nor an interrupt of the caller ends the wait. */
static int join(coil_task *t, int *result, bool shielded)
{
    struct coil__loop *l = coil__tls_loop;
    coil_task *self = coil__self_in(l);
    if (!self)
        return -EPERM;
    if (!t || t == self || t->loop != l || t->joiner || t->detached)
        return -EINVAL;
    if (t->state != COIL__TASK_DONE) {
        int err = shielded ? 0 : coil__pending(self);
        if (err)
            return err;
        coil__wait w = { .abort = join_abort, .ctx = t, .shield = shielded };
        t->joiner = self;
        t->join_wait = &w;
        err = coil__block(l, &w, COIL_NO_DEADLINE);
        if (err)
            return err;
    }
    if (result)
        *result = t->result;
    task_free(l, t);
    return 0;
}

int coil_join(coil_task *t, int *result)
{
    return join(t, result, false);
}

int coil_join_shielded(coil_task *t, int *result)
{
    return join(t, result, true);
}

void coil_detach(coil_task *t)
{
    if (!t)
        return;
    if (t->state == COIL__TASK_DONE && t->stack.lo == NULL)
        task_free(t->loop, t);
    else
        t->detached = true;
}

void coil_cancel(coil_task *t)
{
    if (!t || t->state == COIL__TASK_DONE)
        return;
    t->cancelled = true;
    if (t->state == COIL__TASK_BLOCKED && t->wait)
        wait_abort(t->wait, -ECANCELED);
}

void coil_interrupt(coil_task *t, int err)
{
    if (!t || t->state == COIL__TASK_DONE || err >= 0)
        return;
    if (t->state == COIL__TASK_BLOCKED && t->wait && !t->wait->aborting && !t->wait->shield)
        wait_abort(t->wait, err);
    else
        t->interrupt = err;
}

bool coil_cancelled(void)
{
    coil_task *t = coil__self_in(coil__tls_loop);
    return t && t->cancelled;
}

coil_task *coil_self(void)
{
    return coil__self_in(coil__tls_loop);
}

int coil_yield(void)
{
    struct coil__loop *l = coil__tls_loop;
    coil_task *t = coil__self_in(l);
    if (!t)
        return -EPERM;
    t->state = COIL__TASK_READY;
    ready_push(l, t);
    coil__ctx_switch(&t->ctx, &l->sched_ctx);
    t->state = COIL__TASK_RUNNING;
    return coil__pending(t);
}

static void sleep_done(coil_timer *timer)
{
    coil__wake(timer->data);
}

int coil_sleep_until(int64_t deadline)
{
    struct coil__loop *l = coil__tls_loop;
    if (!coil__self_in(l))
        return -EPERM;
    /* Its own timer rather than a deadline: the end of a sleep is success,
     * while an interrupt carrying -ETIMEDOUT must still read as one. */
    coil__wait w = { 0 };
    coil_timer timer;
    coil_timer_init(l->pub, &timer, sleep_done);
    timer.data = &w;
    if (coil_timer_start(&timer, deadline) < 0)
        return -ENOMEM;
    int err = coil__block(l, &w, COIL_NO_DEADLINE);
    coil_timer_stop(&timer);
    return err;
}

int coil_sleep(int64_t ns)
{
    struct coil__loop *l = coil__tls_loop;
    if (!l)
        return -EPERM;
    return coil_sleep_until(coil_now(l->pub) + (ns > 0 ? ns : 0));
}

/* Intrusive FIFO of waiters (events; epoll readiness). */
void coil__waitq_push(coil__waiter **head, coil__waiter **tail, coil__waiter *n)
{
    n->next = NULL;
    if (*tail)
        (*tail)->next = n;
    else
        *head = n;
    *tail = n;
}

void coil__waitq_remove(coil__waiter **head, coil__waiter **tail, coil__waiter *n)
{
    coil__waiter *prev = NULL;
    for (coil__waiter *it = *head; it; prev = it, it = it->next) {
        if (it != n)
            continue;
        if (prev)
            prev->next = it->next;
        else
            *head = it->next;
        if (*tail == it)
            *tail = prev;
        return;
    }
}

void coil_event_init(coil_event *ev)
{
    *ev = (coil_event){ 0 };
}

static bool event_wake_one(coil_event *ev)
{
    coil__waiter *n = ev->wait_head;
    if (!n)
        return false;
    ev->wait_head = n->next;
    if (!ev->wait_head)
        ev->wait_tail = NULL;
    coil__wake(n->w);
    return true;
}

void coil_event_set(coil_event *ev)
{
    ev->set = true;
    while (event_wake_one(ev)) {
    }
}

void coil_event_reset(coil_event *ev)
{
    ev->set = false;
}

void coil_event_notify_one(coil_event *ev)
{
    event_wake_one(ev);
}

static void event_abort(coil__wait *w)
{
    /* Leave the queue at once so that a later notify_one is not spent on a
     * waiter that is already leaving. */
    coil_event *ev = w->ctx;
    for (coil__waiter *n = ev->wait_head; n; n = n->next) {
        if (n->w == w) {
            coil__waitq_remove(&ev->wait_head, &ev->wait_tail, n);
            break;
        }
    }
    coil__wake(w);
}

int coil_event_wait(coil_event *ev, int64_t deadline)
{
    struct coil__loop *l = coil__tls_loop;
    coil_task *t = coil__self_in(l);
    if (!t)
        return -EPERM;
    int err = coil__pending(t);
    if (err)
        return err;
    if (ev->set)
        return 0;
    coil__wait w = { .abort = event_abort, .ctx = ev };
    coil__waiter n = { .w = &w };
    coil__waitq_push(&ev->wait_head, &ev->wait_tail, &n);
    return coil__block(l, &w, deadline);
}

void coil__tasks_exit(struct coil__loop *l)
{
    while (l->free_tasks) {
        coil_task *t = l->free_tasks;
        l->free_tasks = t->next_ready;
        free(t);
    }
}
