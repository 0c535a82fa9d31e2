/* Stackful execution contexts: the primitive under coil's cooperative tasks.
 *
 * Two backends share this interface:
 *   - ctx_x86_64.S + ctx_x86_64.c: a hand-written switch that saves only what
 *     the SysV ABI makes callee-saved (rbx, rbp, r12-r15, rsp, MXCSR control
 *     bits and the x87 control word), so a switch costs a couple of dozen
 *     instructions and no syscall;
 *   - ctx_ucontext.c (COIL_CTX_UCONTEXT): getcontext/makecontext/swapcontext,
 *     for every other architecture. glibc's swapcontext also swaps the signal
 *     mask with a syscall, so it is much slower; it exists for portability.
 *
 * Rules every user of this header must follow:
 *   - A context only ever runs on the thread that created it (thread-per-core:
 *     nothing migrates). The ASan bookkeeping uses thread-local state.
 *   - The entry function of a context must never return. It ends by calling
 *     coil__ctx_switch_final() to a context that is still alive. Returning
 *     aborts the process.
 *   - A coil__ctx must not move in memory between coil__ctx_make() and its
 *     first run (the first run reads entry/arg from it), nor while suspended
 *     (other contexts switch back to it by address).
 *   - Call coil__ctx_destroy() once a context is finished and before its stack
 *     is reused or unmapped: it drops the Valgrind stack registration.
 *   - Under AddressSanitizer stacks must be large (>= 256 KiB, see stack.c):
 *     instrumented frames carry redzones and are several times bigger.
 *   - Floating-point control state (rounding mode, FTZ/DAZ, x87 precision) is
 *     per context. A new context starts with the state of the thread that
 *     called coil__ctx_make() at the time of the call.
 */
#ifndef COIL_CTX_H
#define COIL_CTX_H

#include <stddef.h>

#ifdef COIL_CTX_UCONTEXT
#include <ucontext.h>
#elif !defined(__x86_64__)
#error "no hand-written context switch for this architecture: build with -DCOIL_CTX_UCONTEXT=1"
#endif

/* One switch for "is AddressSanitizer on": the build may say so with
 * COIL_ASAN=1, and GCC/Clang say so themselves. */
#ifndef COIL__ASAN
#if defined(COIL_ASAN) && COIL_ASAN
#define COIL__ASAN 1
#elif defined(__SANITIZE_ADDRESS__)
#define COIL__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL__ASAN 1
#endif
#endif
#endif
#ifndef COIL__ASAN
#define COIL__ASAN 0
#endif

typedef struct coil__ctx {
    void *sp;                 /* saved stack pointer (asm switch) */
    void *stack_lo;           /* lowest usable address of this context's stack (NULL for a thread's own stack) */
    size_t stack_size;
    void *asan_fake_stack;    /* ASan fake-stack handle saved across a switch */

    /* Stack bounds handed to ASan when switching to this context. Equal to
     * stack_lo/stack_size for a made context; for a thread's own stack they
     * come from pthread_getattr_np() and are corrected by what ASan reports
     * the first time this context switches away. */
    const void *asan_bottom;
    size_t asan_size;

    /* First-run parameters, read once on the new stack. */
    void (*entry)(void *arg);
    void *arg;

    unsigned valgrind_id;     /* Valgrind stack id, valid if valgrind_registered */
    unsigned char valgrind_registered;

#ifdef COIL_CTX_UCONTEXT
    ucontext_t uc;
#endif
} coil__ctx;

/* Prepare the calling thread's own context (the scheduler side). */
void coil__ctx_init_main(coil__ctx *ctx);
/* Prepare ctx so that the first switch to it calls entry(arg) on the given stack. entry must never return: it ends with coil__ctx_switch_final. */
void coil__ctx_make(coil__ctx *ctx, void *stack_lo, size_t stack_size, void (*entry)(void *arg), void *arg);
/* Save the current context into from and resume to. Returns when something switches back to from. Calls the ASan fiber hooks around the switch. */
void coil__ctx_switch(coil__ctx *from, coil__ctx *to);
/* Like switch, for a context that is finished and will never be resumed (ASan: pass NULL fake-stack save so the fake stack is destroyed). Never returns. */
_Noreturn void coil__ctx_switch_final(coil__ctx *from, coil__ctx *to);
/* Release what coil__ctx_make registered with tools (Valgrind's stack table).
 * Call it after the context has finished (switch_final) and before its stack
 * is reused or unmapped; calling it on a thread context or twice is harmless. */
void coil__ctx_destroy(coil__ctx *ctx);

/* ---- Shared by the two backends (ctx_x86_64.c, ctx_ucontext.c) only. ---- */
#ifdef COIL__CTX_IMPL

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if COIL__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Valgrind cannot tell a context switch from a huge stack frame unless the
 * stacks are registered; the client requests are a few no-op instructions when
 * not running under Valgrind. ASan and Valgrind never run together. */
#if !COIL__ASAN && !defined(COIL_NO_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define COIL__VALGRIND 1
#endif
#endif
#ifndef COIL__VALGRIND
#define COIL__VALGRIND 0
#endif

#if COIL__ASAN
/* The context that started the switch now finishing. Only the arriving side
 * knows ASan's view of the stack it left, and that is the only reliable
 * source of a thread stack's bounds, so it is handed over through here. */
static __thread coil__ctx *coil__ctx_asan_leaving;
#endif

static inline void coil__ctx_tools_init_main(coil__ctx *ctx)
{
#if COIL__ASAN
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
            ctx->asan_bottom = addr;
            ctx->asan_size = size;
        }
        pthread_attr_destroy(&attr);
    }
#else
    (void)ctx;
#endif
}

static inline void coil__ctx_tools_make(coil__ctx *ctx, void *stack_lo, size_t stack_size)
{
    ctx->asan_bottom = stack_lo;
    ctx->asan_size = stack_size;
#if COIL__ASAN
    /* Frames of a context that ended with switch_final never returned, so
     * their redzones are still poisoned; a recycled stack must start clean. */
    ASAN_UNPOISON_MEMORY_REGION(stack_lo, stack_size);
#endif
#if COIL__VALGRIND
    ctx->valgrind_id = VALGRIND_STACK_REGISTER((char *)stack_lo,
                                               (char *)stack_lo + stack_size - 1);
    ctx->valgrind_registered = 1;
#endif
}

static inline void coil__ctx_tools_destroy(coil__ctx *ctx)
{
#if COIL__VALGRIND
    if (ctx->valgrind_registered) {
        VALGRIND_STACK_DEREGISTER(ctx->valgrind_id);
        ctx->valgrind_registered = 0;
    }
#else
    (void)ctx;
#endif
}

/* Before leaving `from` for `to`. fake_save is &from->asan_fake_stack, or
 * NULL when `from` is finished so ASan frees its fake frames. */
static inline void coil__ctx_tools_leave(coil__ctx *from, void **fake_save, coil__ctx *to)
{
#if COIL__ASAN
    coil__ctx_asan_leaving = from;
    __sanitizer_start_switch_fiber(fake_save, to->asan_bottom, to->asan_size);
#else
    (void)from, (void)fake_save, (void)to;
#endif
}

/* First thing after arriving on a stack. fake is the handle saved when this
 * context left (NULL on its first run). */
static inline void coil__ctx_tools_arrive(void *fake)
{
#if COIL__ASAN
    const void *bottom_old = NULL;
    size_t size_old = 0;
    __sanitizer_finish_switch_fiber(fake, &bottom_old, &size_old);
    coil__ctx *left = coil__ctx_asan_leaving;
    if (left && !left->stack_lo && bottom_old) {
        left->asan_bottom = bottom_old;
        left->asan_size = size_old;
    }
#else
    (void)fake;
#endif
}

/* An entry function returned: the context has no frame to return to. */
static inline _Noreturn void coil__ctx_entry_returned(void)
{
    fputs("coil: a context entry function returned; it must end with coil__ctx_switch_final\n",
          stderr);
    abort();
}

#endif /* COIL__CTX_IMPL */

#endif /* COIL_CTX_H */
