/* Portable context switch on getcontext/makecontext/swapcontext, for targets
 * without a hand-written switch. Slower than the assembly (glibc's
 * swapcontext also saves and restores the signal mask with a syscall) but
 * behaviourally the same, including the sanitizer hooks. */
#ifdef COIL_CTX_UCONTEXT

#define COIL__CTX_IMPL 1
#include "ctx.h"

#include <stdint.h>
#include <string.h>
#include <ucontext.h>

/* makecontext() only promises to pass int-sized arguments, so the context
 * pointer travels as two 32-bit halves. */
static void ctx_start(unsigned int hi, unsigned int lo)
{
    coil__ctx *ctx = (coil__ctx *)(uintptr_t)(((uint64_t)hi << 32) | (uint64_t)lo);
    coil__ctx_tools_arrive(NULL);
    ctx->entry(ctx->arg);
    coil__ctx_entry_returned();
}

void coil__ctx_init_main(coil__ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    coil__ctx_tools_init_main(ctx);
}

void coil__ctx_make(coil__ctx *ctx, void *stack_lo, size_t stack_size,
                    void (*entry)(void *arg), void *arg)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->stack_lo = stack_lo;
    ctx->stack_size = stack_size;
    ctx->entry = entry;
    ctx->arg = arg;
    coil__ctx_tools_make(ctx, stack_lo, stack_size);

    /* getcontext only fails for an invalid pointer; there is no sane way to
     * go on without a context. */
    if (getcontext(&ctx->uc) != 0)
        abort();
    ctx->uc.uc_stack.ss_sp = stack_lo;
    ctx->uc.uc_stack.ss_size = stack_size;
    ctx->uc.uc_stack.ss_flags = 0;
    ctx->uc.uc_link = NULL;

    uint64_t p = (uint64_t)(uintptr_t)ctx;
    makecontext(&ctx->uc, (void (*)(void))ctx_start, 2,
                (unsigned int)(p >> 32), (unsigned int)(p & 0xffffffffu));
}

void coil__ctx_switch(coil__ctx *from, coil__ctx *to)
{
    coil__ctx_tools_leave(from, &from->asan_fake_stack, to);
#if COIL__ASAN
    /* ASan's swapcontext interceptor warns that it cannot follow the switch
     * and wipes the target stack's shadow; the fiber hooks already tell ASan
     * everything, so go around it. getcontext returns a second time when
     * something resumes this context. */
    volatile int resumed = 0;
    if (getcontext(&from->uc) != 0)
        abort();
    if (!resumed) {
        resumed = 1;
        setcontext(&to->uc);
        abort();
    }
#else
    if (swapcontext(&from->uc, &to->uc) != 0)
        abort();
#endif
    coil__ctx_tools_arrive(from->asan_fake_stack);
}

_Noreturn void coil__ctx_switch_final(coil__ctx *from, coil__ctx *to)
{
    coil__ctx_tools_leave(from, NULL, to);
    setcontext(&to->uc);
    abort();
}

void coil__ctx_destroy(coil__ctx *ctx)
{
    coil__ctx_tools_destroy(ctx);
}

#endif /* COIL_CTX_UCONTEXT */
