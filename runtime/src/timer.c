/*
 * Loop timers: a binary min-heap of pointers to caller-owned coil_timer
 * structs, each knowing its index, so start/stop/re-arm are O(log n) with no
 * system call. The loop's poll sleeps until the earliest one.
 */
#include <errno.h>
#include <stdlib.h>

#include "loop_impl.h"

#define NOT_ARMED UINT32_MAX

static void heap_set(struct coil__loop *l, uint32_t i, coil_timer *t)
{
    l->heap[i] = t;
    t->heap_index = i;
}

static bool earlier(const coil_timer *a, const coil_timer *b)
{
    return a->when < b->when;
}

static void sift_up(struct coil__loop *l, uint32_t i)
{
    coil_timer *t = l->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!earlier(t, l->heap[parent]))
            break;
        heap_set(l, i, l->heap[parent]);
        i = parent;
    }
    heap_set(l, i, t);
}

static void sift_down(struct coil__loop *l, uint32_t i)
{
    coil_timer *t = l->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= l->heap_len)
            break;
        if (c + 1 < l->heap_len && earlier(l->heap[c + 1], l->heap[c]))
            c++;
        if (!earlier(l->heap[c], t))
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void coil_timer_init(coil_loop *loop, coil_timer *timer, coil_timer_cb cb)
{
    *timer = (coil_timer){ .loop = loop->impl, .cb = cb, .heap_index = NOT_ARMED };
}

bool coil_timer_active(const coil_timer *timer)
{
    return timer->heap_index != NOT_ARMED;
}

int coil_timer_start(coil_timer *timer, int64_t deadline)
{
    struct coil__loop *l = timer->loop;
    /* Armed from a timer callback for "now" or earlier: it fires next turn,
     * so a callback that re-arms itself at once cannot hold the loop here. */
    if (l->timers_running && deadline <= l->now)
        deadline = l->now + 1;
    if (coil_timer_active(timer)) {
        int64_t old = timer->when;
        timer->when = deadline;
        if (deadline < old)
            sift_up(l, timer->heap_index);
        else
            sift_down(l, timer->heap_index);
        return 0;
    }
    if (l->heap_len == l->heap_cap) {
        uint32_t cap = l->heap_cap ? l->heap_cap * 2 : 64;
        coil_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        l->heap = h;
        l->heap_cap = cap;
    }
    timer->when = deadline;
    heap_set(l, l->heap_len++, timer);
    sift_up(l, timer->heap_index);
    return 0;
}

void coil_timer_stop(coil_timer *timer)
{
    if (!coil_timer_active(timer))
        return;
    struct coil__loop *l = timer->loop;
    uint32_t i = timer->heap_index;
    timer->heap_index = NOT_ARMED;
    coil_timer *last = l->heap[--l->heap_len];
    if (i == l->heap_len)
        return;
    heap_set(l, i, last);
    if (i > 0 && earlier(last, l->heap[(i - 1) / 2]))
        sift_up(l, i);
    else
        sift_down(l, i);
}

void coil__timers_run(struct coil__loop *l)
{
    int64_t now = l->now;
    l->timers_running = true;
    while (l->heap_len && l->heap[0]->when <= now) {
        coil_timer *t = l->heap[0];
        coil_timer_stop(t);
        t->cb(t);
    }
    l->timers_running = false;
}

int64_t coil__timers_next(struct coil__loop *l)
{
    return l->heap_len ? l->heap[0]->when : -1;
}

void coil__timers_exit(struct coil__loop *l)
{
    free(l->heap);
    l->heap = NULL;
    l->heap_len = l->heap_cap = 0;
}
