/* C side of the x86-64 context switch (ctx_x86_64.S): building the first
 * frame of a new context and the sanitizer/Valgrind bookkeeping around the
 * raw switch, which the assembly knows nothing about. */
#ifndef COIL_CTX_UCONTEXT

#define COIL__CTX_IMPL 1
#include "ctx.h"

#include <stdint.h>
#include <string.h>

/* ctx_x86_64.S */
void coil__ctx_swap(void **save_sp, void *new_sp);
_Noreturn void coil__ctx_jump(void *new_sp);
void coil__ctx_trampoline(void);

/* Frame slots, in 8-byte words from the saved sp; must match the .S. */
enum {
    FRAME_CTL,  /* MXCSR in the low 4 bytes, x87 control word in the next 2 */
    FRAME_R15,
    FRAME_R14,
    FRAME_R13,
    FRAME_R12,
    FRAME_RBX,
    FRAME_RBP,
    FRAME_RET,
    FRAME_WORDS
};

/* Runs first on every new stack, called by coil__ctx_trampoline. */
static void ctx_start(void *p)
{
    coil__ctx *ctx = p;
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

    /* The trampoline is entered by `ret`, which pops FRAME_RET; the slot
     * above it must then be 16-byte aligned so the trampoline's call meets
     * the ABI. Two zero words sit above that as a terminator for anything
     * walking the stack by frame pointers. */
    uintptr_t top = ((uintptr_t)stack_lo + stack_size) & ~(uintptr_t)15;
    uint64_t *frame = (uint64_t *)(top - 16) - FRAME_WORDS;
    frame[FRAME_WORDS] = 0;
    frame[FRAME_WORDS + 1] = 0;

    uint32_t mxcsr;
    uint16_t fpucw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    /* Only the control bits are state worth inheriting; sticky exception
     * flags of the creator are not the new context's business. */
    mxcsr &= ~(uint32_t)0x3f;
    frame[FRAME_CTL] = (uint64_t)mxcsr | ((uint64_t)fpucw << 32);

    frame[FRAME_R15] = 0;
    frame[FRAME_R14] = 0;
    frame[FRAME_R13] = (uint64_t)(uintptr_t)ctx;
    frame[FRAME_R12] = (uint64_t)(uintptr_t)ctx_start;
    frame[FRAME_RBX] = 0;
    frame[FRAME_RBP] = 0;
    frame[FRAME_RET] = (uint64_t)(uintptr_t)coil__ctx_trampoline;
    ctx->sp = frame;
}

void coil__ctx_switch(coil__ctx *from, coil__ctx *to)
{
    coil__ctx_tools_leave(from, &from->asan_fake_stack, to);
    coil__ctx_swap(&from->sp, to->sp);
    coil__ctx_tools_arrive(from->asan_fake_stack);
}

_Noreturn void coil__ctx_switch_final(coil__ctx *from, coil__ctx *to)
{
    coil__ctx_tools_leave(from, NULL, to);
    from->sp = NULL;
    coil__ctx_jump(to->sp);
}

void coil__ctx_destroy(coil__ctx *ctx)
{
    coil__ctx_tools_destroy(ctx);
}

#endif /* !COIL_CTX_UCONTEXT */
