/*
 * coil_rt: one pinned thread and one loop per CPU. Start-up is two-phase:
 * every core creates its loop on its own thread (an io_uring ring with
 * SINGLE_ISSUER belongs to the thread that made it), then all meet at a
 * barrier before any on_start runs, so no message can reach a loop that does
 * not exist yet.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "loop_impl.h"

typedef struct rt_core {
    struct coil_rt *rt;
    unsigned index;
    int cpu;
    pthread_t thread;
    bool thread_started;
    coil_loop loop;
    bool loop_alive;   /* guarded by rt->mu: coil_post to it is allowed */
    int err;
} rt_core;

struct coil_rt {
    coil_rt_options opts;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready;       /* cores whose loop init finished (ok or not) */
    unsigned started;     /* cores whose on_start finished */
    bool failed;
    bool stopping;
    pthread_t sig_thread;
    bool sig_started;
    bool sigmask_saved;
    sigset_t caller_sigmask;  /* the starting thread's mask before start */
    unsigned n;
    rt_core cores[];
};

static void stop_msg(coil_loop *loop, void *arg)
{
    (void)arg;
    coil_loop_stop(loop);
}

void coil_rt_stop(coil_rt *rt)
{
    pthread_mutex_lock(&rt->mu);
    if (!rt->stopping) {
        rt->stopping = true;
        for (unsigned i = 0; i < rt->n; i++)
            if (rt->cores[i].loop_alive)
                coil_post(&rt->cores[i].loop, stop_msg, NULL);
    }
    pthread_mutex_unlock(&rt->mu);
}

static void *core_main(void *arg)
{
    rt_core *c = arg;
    coil_rt *rt = c->rt;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(c->cpu, &set);
    int err = -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (!err)
        err = coil_loop_init(&c->loop, &rt->opts.loop);

    pthread_mutex_lock(&rt->mu);
    c->err = err;
    c->loop_alive = err == 0;
    if (err)
        rt->failed = true;
    rt->ready++;
    pthread_cond_broadcast(&rt->cv);
    while (rt->ready < rt->n)
        pthread_cond_wait(&rt->cv, &rt->mu);
    bool go = !rt->failed;
    pthread_mutex_unlock(&rt->mu);

    if (go && rt->opts.on_start) {
        err = rt->opts.on_start(&c->loop, c->index, rt->opts.data);
        c->err = err < 0 ? err : 0;
    }
    /* on_stop closes what on_start opened: it runs only where on_start ran
     * and succeeded. A failing on_start cleans up after itself. */
    bool started = go && !c->err;
    pthread_mutex_lock(&rt->mu);
    if (c->err)
        rt->failed = true;
    rt->started++;
    pthread_cond_broadcast(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
    if (c->err)
        coil_rt_stop(rt);
    if (!c->loop_alive)
        return NULL;

    if (started) {
        coil_loop_ref(&c->loop);
        int r = coil_loop_run(&c->loop);
        if (r < 0 && !c->err)
            c->err = r;
        coil_loop_unref(&c->loop);
        if (rt->opts.on_stop)
            rt->opts.on_stop(&c->loop, c->index, rt->opts.data);
    }
    /* Let the tasks on_stop cancelled finish, then release the loop. A stray
     * stop (a signal's, say) must not cut this short: run until idle. */
    do
        coil_loop_run(&c->loop);
    while (coil_loop_run_once(&c->loop, 0) > 0);
    pthread_mutex_lock(&rt->mu);
    c->loop_alive = false;
    pthread_mutex_unlock(&rt->mu);
    coil_loop_run_once(&c->loop, 0); /* messages posted before the flag dropped */
    err = coil_loop_exit(&c->loop);
    if (err < 0 && !c->err)
        c->err = err;
    return NULL;
}

typedef struct sig_msg {
    coil_rt *rt;
    unsigned core;
    int signo;
} sig_msg;

static void signal_msg(coil_loop *loop, void *arg)
{
    sig_msg *m = arg;
    coil_rt *rt = m->rt;
    if (rt->opts.on_signal)
        rt->opts.on_signal(loop, m->core, m->signo, rt->opts.data);
    else if (m->signo != SIGHUP)
        coil_loop_stop(loop);
    free(m);
}

static void *signal_main(void *arg)
{
    coil_rt *rt = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    /* coil_rt_wait cancels this thread: let that happen only inside sigwait,
     * never while it holds rt->mu (the mutex would be destroyed locked) or
     * between a malloc and the post that hands the memory over. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    for (;;) {
        int signo;
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
        int werr = sigwait(&set, &signo);
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        if (werr != 0)
            continue;
        pthread_mutex_lock(&rt->mu);
        if (!rt->opts.on_signal && signo != SIGHUP)
            rt->stopping = true;
        for (unsigned i = 0; i < rt->n; i++) {
            if (!rt->cores[i].loop_alive)
                continue;
            sig_msg *m = malloc(sizeof(*m));
            if (!m)
                continue;
            *m = (sig_msg){ rt, i, signo };
            coil_post(&rt->cores[i].loop, signal_msg, m);
        }
        pthread_mutex_unlock(&rt->mu);
    }
    return NULL;
}

static int pick_cpus(const coil_rt_options *o, int *cpus, unsigned *n)
{
    if (o->cpus) {
        if (!o->ncpus || o->ncpus > COIL_RT_MAX_CORES)
            return -EINVAL;
        for (unsigned i = 0; i < o->ncpus; i++) {
            if (o->cpus[i] < 0 || o->cpus[i] >= CPU_SETSIZE)
                return -EINVAL;
            cpus[i] = o->cpus[i];
        }
        *n = o->ncpus;
        return 0;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return -errno;
    *n = 0;
    for (int c = 0; c < CPU_SETSIZE && *n < COIL_RT_MAX_CORES; c++)
        if (CPU_ISSET(c, &set))
            cpus[(*n)++] = c;
    return *n ? 0 : -EINVAL;
}

int coil_rt_start(coil_rt **out, const coil_rt_options *opts)
{
    int cpus[COIL_RT_MAX_CORES];
    unsigned n = 0;
    int err = pick_cpus(opts, cpus, &n);
    if (err < 0)
        return err;
    coil_rt *rt = calloc(1, sizeof(*rt) + n * sizeof(rt_core));
    if (!rt)
        return -ENOMEM;
    rt->opts = *opts;
    rt->opts.cpus = NULL; /* not kept: the caller's array may go away */
    rt->n = n;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);

    if (opts->handle_signals) {
        /* Blocked here so every thread created below inherits the mask and
         * only the signal thread takes them (with sigwait). */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        rt->sigmask_saved = pthread_sigmask(SIG_BLOCK, &set, &rt->caller_sigmask) == 0;
    }
    unsigned created = 0;
    for (unsigned i = 0; i < n; i++) {
        rt_core *c = &rt->cores[i];
        *c = (rt_core){ .rt = rt, .index = i, .cpu = cpus[i] };
        err = -pthread_create(&c->thread, NULL, core_main, c);
        if (err)
            break;
        c->thread_started = true;
        created++;
    }
    pthread_mutex_lock(&rt->mu);
    if (created < n) {
        /* Cores that did start must not wait at the barrier forever. */
        rt->failed = true;
        rt->ready += n - created;
        rt->started += n - created;
        pthread_cond_broadcast(&rt->cv);
    }
    while (rt->started < n)
        pthread_cond_wait(&rt->cv, &rt->mu);
    bool failed = rt->failed;
    pthread_mutex_unlock(&rt->mu);
    if (!failed && opts->handle_signals) {
        if (pthread_create(&rt->sig_thread, NULL, signal_main, rt) == 0)
            rt->sig_started = true;
    }
    if (failed) {
        int first = coil_rt_wait(rt);
        return first ? first : (err ? err : -EIO);
    }
    *out = rt;
    return 0;
}

unsigned coil_rt_cores(const coil_rt *rt)
{
    return rt->n;
}

coil_loop *coil_rt_loop(coil_rt *rt, unsigned core)
{
    return core < rt->n ? &rt->cores[core].loop : NULL;
}

int coil_rt_cpu(const coil_rt *rt, unsigned core)
{
    return core < rt->n ? rt->cores[core].cpu : -EINVAL;
}

int coil_rt_wait(coil_rt *rt)
{
    int first = 0;
    for (unsigned i = 0; i < rt->n; i++) {
        rt_core *c = &rt->cores[i];
        if (c->thread_started)
            pthread_join(c->thread, NULL);
        if (c->err && !first)
            first = c->err;
    }
    if (rt->sig_started) {
        pthread_cancel(rt->sig_thread);
        pthread_join(rt->sig_thread, NULL);
    }
    /* The runtime no longer takes the signals: give the calling thread (the
     * one that started it) its mask back, or it would ignore SIGINT/SIGTERM
     * from now on. A signal that arrived since the signal thread went is
     * delivered now, with the process's own disposition. */
    if (rt->sigmask_saved)
        pthread_sigmask(SIG_SETMASK, &rt->caller_sigmask, NULL);
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cv);
    free(rt);
    return first;
}
