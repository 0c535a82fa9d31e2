/*
 * The loop: options, backend choice (io_uring first, epoll when io_uring
 * cannot be set up), one turn of work, and the embedding entry points.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "loop_impl.h"

#ifdef COIL_ASAN
#define COIL_DEFAULT_STACK (256u * 1024)
#else
#define COIL_DEFAULT_STACK (64u * 1024)
#endif

int64_t coil__clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void coil__log(const char *fmt, ...)
{
    if (getenv("COIL_QUIET"))
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "coil: %s\n", line);
}

void coil_loop_options_default(coil_loop_options *o)
{
    *o = (coil_loop_options){
        .ring_entries = 256,
        .buf_count = 256,
        .buf_size = 16384,
        .bufs_per_sock = 8,
        .stack_size = COIL_DEFAULT_STACK,
    };
}

static int check_options(coil_loop_options *o)
{
    coil_loop_options d;
    coil_loop_options_default(&d);
    if (!o->ring_entries)
        o->ring_entries = d.ring_entries;
    if (!o->buf_count)
        o->buf_count = d.buf_count;
    if (!o->buf_size)
        o->buf_size = d.buf_size;
    if (!o->bufs_per_sock)
        o->bufs_per_sock = d.bufs_per_sock;
    if (!o->stack_size)
        o->stack_size = d.stack_size;
    bool pow2 = (o->buf_count & (o->buf_count - 1)) == 0;
    if (!pow2 || o->buf_count > 32768 || o->ring_entries > 32768 || o->bufs_per_sock > 64)
        return -EINVAL;
    return 0;
}

static int backend_start(struct coil__loop *l)
{
    const char *want = l->opts.backend;
    if (!want)
        want = getenv("COIL_BACKEND");
    if (want && *want) {
        if (strcmp(want, "io_uring") == 0)
            l->be = &coil__backend_uring;
        else if (strcmp(want, "epoll") == 0)
            l->be = &coil__backend_epoll;
        else
            return -EINVAL;
        int err = l->be->init(l);
        if (err < 0)
            coil__log("backend %s requested but cannot be set up: %s", want, strerror(-err));
        return err;
    }
    l->be = &coil__backend_uring;
    int err = l->be->init(l);
    if (err == 0)
        return 0;
    coil__log("io_uring cannot be set up (%s); falling back to epoll", strerror(-err));
    l->be = &coil__backend_epoll;
    return l->be->init(l);
}

static bool logged_backend;
static _Thread_local struct coil__loop *owned_loop;

int coil_loop_init(coil_loop *loop, const coil_loop_options *opts)
{
    struct coil__loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    if (opts)
        l->opts = *opts;
    int err = check_options(&l->opts);
    if (err < 0)
        goto fail_free;
    l->pub = loop;
    loop->impl = l;
    l->owner_tid = (pid_t)syscall(SYS_gettid);
    l->wake_efd = -1;
    l->now = coil__clock_ns();
    coil__ctx_init_main(&l->sched_ctx);
    /* Freed stacks keep their pages while the loop is busy: giving them back
     * on every put made each new task fault its stack in again, a cliff past
     * a handful of concurrent connections. The pages go back once the loop
     * has been idle (see turn()); beyond 1024 cached stacks are unmapped. */
    err = coil__stack_pool_init(&l->stacks, l->opts.stack_size, 1024, 1024);
    if (err < 0)
        goto fail_free;
    err = coil__bufpool_init(&l->bufs, l->opts.buf_count, l->opts.buf_size);
    if (err < 0)
        goto fail_stacks;
    err = coil__msgs_init(l);
    if (err < 0)
        goto fail_bufs;
    err = backend_start(l);
    if (err < 0)
        goto fail_msgs;
    err = coil__faults_env(l);
    if (err < 0) {
        l->be->exit(l);
        goto fail_msgs;
    }
    owned_loop = l;
    if (!__atomic_exchange_n(&logged_backend, true, __ATOMIC_RELAXED))
        coil__log("backend: %s", l->be->name);
    return 0;

fail_msgs:
    coil__msgs_exit(l);
fail_bufs:
    coil__bufpool_exit(&l->bufs);
fail_stacks:
    coil__stack_pool_exit(&l->stacks);
fail_free:
    free(l);
    loop->impl = NULL;
    return err;
}

int coil_loop_exit(coil_loop *loop)
{
    struct coil__loop *l = loop->impl;
    if (!l)
        return -EINVAL;
    if (l->tasks_live || l->heap_len || l->socks_open || l->running)
        return -EBUSY;
    l->exiting = true;
    coil__msgs_run(l); /* messages already queued are delivered, not leaked */
    coil__pipes_exit(l);
    coil__faults_exit(l);
    l->be->exit(l);
    coil__msgs_exit(l);
    coil__bufpool_exit(&l->bufs);
    coil__stack_pool_exit(&l->stacks);
    coil__tasks_exit(l);
    coil__timers_exit(l);
    coil__ctx_destroy(&l->sched_ctx);
    if (owned_loop == l)
        owned_loop = NULL;
    free(l);
    loop->impl = NULL;
    return 0;
}

static bool alive(struct coil__loop *l)
{
    return l->tasks_live || l->heap_len || l->socks_parked || l->refs;
}

static int64_t wait_budget(struct coil__loop *l, int64_t timeout_ns)
{
    if (l->ready_head || l->stop)
        return 0;
    int64_t next = coil__timers_next(l);
    int64_t unarmed = coil__deadlines_next(l);
    if (unarmed >= 0 && (next < 0 || unarmed < next))
        next = unarmed;
    if (next < 0)
        return timeout_ns;
    int64_t until = next - l->now;
    if (until < 0)
        until = 0;
    return (timeout_ns < 0 || until < timeout_ns) ? until : timeout_ns;
}

/* One turn. Submissions queued after the poll stay queued: inside
 * coil_loop_run the next turn's poll sends them, one system call for both. */
static int turn(coil_loop *loop, int64_t timeout_ns)
{
    struct coil__loop *l = loop->impl;
    struct coil__loop *prev = coil__tls_loop;
    coil__tls_loop = l;
    l->running = true;
    l->loop_turns++;
    l->now = coil__clock_ns();
    /* After a burst (no task live), at most once a second. */
    if (!l->tasks_live && l->stacks.cached > 16 && l->now - l->last_trim > 1000000000) {
        coil__stack_pool_trim(&l->stacks);
        l->last_trim = l->now;
    }
    coil__msgs_run(l);
    coil__run_ready(l);
    /* Nothing alive: nothing of ours could end a wait, so do not block. */
    int64_t budget = alive(l) ? wait_budget(l, timeout_ns) : 0;
    int err = l->be->poll(l, budget);
    l->now = coil__clock_ns();
    coil__deadlines_arm(l);
    coil__timers_run(l);
    coil__msgs_run(l);
    coil__run_ready(l);
    l->running = false;
    coil__tls_loop = prev;
    if (err < 0)
        return err;
    return alive(l) ? 1 : 0;
}

int coil_loop_run_once(coil_loop *loop, int64_t timeout_ns)
{
    struct coil__loop *l = loop->impl;
    if (l->current)
        return -EPERM;
    int r = turn(loop, timeout_ns);
    /* Work started after the poll (by timers, messages, woken tasks) goes to
     * the kernel before control leaves: an embedder may not call again soon. */
    l->be->flush(l);
    return r;
}

int coil_loop_run(coil_loop *loop)
{
    struct coil__loop *l = loop->impl;
    if (l->current)
        return -EPERM;
    l->stop = false;
    int r;
    do
        r = turn(loop, -1);
    while (r > 0 && !l->stop);
    /* A doorbell queued by a loop that stops now must still ring. */
    l->be->flush(l);
    l->stop = false;
    return r < 0 ? r : 0;
}

void coil_loop_stop(coil_loop *loop)
{
    loop->impl->stop = true;
}

void coil_loop_ref(coil_loop *loop)
{
    loop->impl->refs++;
}

void coil_loop_unref(coil_loop *loop)
{
    if (loop->impl->refs)
        loop->impl->refs--;
}

int coil_loop_fd(coil_loop *loop)
{
    return loop->impl->be->fd(loop->impl);
}

int64_t coil_loop_timeout_ns(coil_loop *loop)
{
    struct coil__loop *l = loop->impl;
    l->now = coil__clock_ns();
    return wait_budget(l, -1);
}

const char *coil_loop_backend(const coil_loop *loop)
{
    return loop->impl->be->name;
}

int64_t coil_now(coil_loop *loop)
{
    return loop->impl->now;
}

int64_t coil_deadline_in(coil_loop *loop, int64_t ns)
{
    int64_t d = loop->impl->now + ns;
    return d == COIL_NO_DEADLINE ? 1 : d;
}

void coil_loop_stats_get(coil_loop *loop, coil_loop_stats *out)
{
    struct coil__loop *l = loop->impl;
    *out = (coil_loop_stats){
        .tasks_live = l->tasks_live,
        .tasks_spawned = l->tasks_spawned,
        .stacks_mapped = l->stacks.mapped,
        .stacks_in_use = l->stacks.in_use,
        .bufs_total = l->bufs.count,
        .bufs_in_use = l->bufs.in_use,
        .bufs_exhausted = l->bufs_exhausted,
        .socks_parked = l->socks_parked,
        .timers_active = l->heap_len,
        .stale_completions = l->stale_completions,
        .cq_overflows = l->cq_overflows,
        .msgs_received = l->msgs_received,
        .loop_turns = l->loop_turns,
        .sends_continued = l->sends_continued,
        .bufs_overflow = l->bufs.overflows,
    };
}

coil_loop *coil_loop_current(void)
{
    struct coil__loop *l = coil__tls_loop ? coil__tls_loop : owned_loop;
    return l ? l->pub : NULL;
}
