/*
 * Timers of one loop, kept in a binary heap. Arming, re-arming and stopping a
 * timer cost no system call, so one timer per connection (keep-alive, idle,
 * send-progress) is normal: 10 000 of them are a few hundred kilobytes.
 *
 * Callbacks run on the loop thread between turns, outside any task: they may
 * spawn, wake, cancel or interrupt tasks and re-arm timers, but must not wait.
 * Threading: loop thread only.
 */
#ifndef COIL_TIMER_H
#define COIL_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#include "coil/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_timer coil_timer;
typedef void (*coil_timer_cb)(coil_timer *timer);

/* Caller-allocated; memory must stay valid while the timer is armed. */
struct coil_timer {
    void *data;          /* public */
    /* private */
    struct coil__loop *loop;
    coil_timer_cb cb;
    int64_t when;
    uint32_t heap_index; /* UINT32_MAX while not armed */
};

/* Prepares timer on loop; it is not armed. Clears timer->data: set it after
 * this call. cb is called with timer. Cannot fail. */
void coil_timer_init(coil_loop *loop, coil_timer *timer, coil_timer_cb cb);

/* Arms (or re-arms) timer to fire once when the loop clock reaches deadline
 * (absolute, ns, see coil_now()); a deadline already passed fires on the next
 * turn. timer's memory must stay valid until it fired or was stopped.
 * Returns 0 or -ENOMEM (heap growth; the timer is then not armed). */
int coil_timer_start(coil_timer *timer, int64_t deadline);

/* Disarms timer; harmless if it is not armed. Cannot fail. */
void coil_timer_stop(coil_timer *timer);

/* True while timer is armed (started, not yet fired or stopped). */
bool coil_timer_active(const coil_timer *timer);

#ifdef __cplusplus
}
#endif
#endif
