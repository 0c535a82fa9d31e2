/*
 * Cross-core messages: the only way a thread touches another loop.
 *
 * A message is a function and an argument run on the target loop's thread,
 * between turns, outside any task (it may spawn tasks). Each target loop has
 * one lock-free queue; a sender pushes and rings the target's doorbell only
 * when the queue was empty (io_uring to io_uring: IORING_OP_MSG_RING from the
 * sender's ring; otherwise an eventfd). Messages from one sender arrive in the
 * order sent.
 */
#ifndef COIL_MSG_H
#define COIL_MSG_H

#include "coil/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*coil_msg_fn)(coil_loop *target, void *arg);

/* Caller-allocated message for coil_post_msg(). */
typedef struct coil_msg {
    coil_msg_fn fn;        /* public: set before posting */
    void *arg;             /* public */
    struct coil_msg *next; /* private */
} coil_msg;

/* Queues fn(target, arg) to run on target's thread. The message memory is
 * allocated here and freed after fn ran. arg is passed through untouched:
 * whatever it points to must stay valid until fn has used it (fn usually
 * frees it or hands it on). Messages queued before coil_loop_exit() begins
 * still run, during it (a task they spawn then fails with -ESHUTDOWN).
 * Thread-safe: the one entry point any thread — a loop's or a foreign one —
 * may call on a loop it does not own, from coil_loop_init() returning until
 * coil_loop_exit() begins (the caller guarantees that window).
 * Returns 0, -ENOMEM, -EINVAL (fn NULL). */
int coil_post(coil_loop *target, coil_msg_fn fn, void *arg);

/* Like coil_post() with caller memory: msg must stay valid until msg->fn has
 * started running on the target (fn may then free or reuse it), and must not
 * be posted again before that. Returns 0; -EINVAL when msg or msg->fn is
 * NULL. Thread-safe, like coil_post(). */
int coil_post_msg(coil_loop *target, coil_msg *msg);

#ifdef __cplusplus
}
#endif
#endif
