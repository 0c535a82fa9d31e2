/* x86-64 SysV context switch; the C side is ctx_x86_64.c.
 *
 * A suspended context is nothing but its stack pointer. The switch is an
 * ordinary call, so the compiler has already spilled every caller-saved
 * register; only the callee-saved state has to travel with the stack.
 * Frame left at the saved sp (low to high address):
 *
 *     sp+0   MXCSR (4 bytes), x87 control word (2 bytes), 2 bytes unused
 *     sp+8   r15
 *     sp+16  r14
 *     sp+24  r13
 *     sp+32  r12
 *     sp+40  rbx
 *     sp+48  rbp
 *     sp+56  return address
 *
 * coil__ctx_make() (C) builds the same frame on a fresh stack with the return
 * address pointing at coil__ctx_trampoline.
 *
 * MXCSR and the x87 control word are callee-saved in the SysV ABI too: without
 * them a task that changes its rounding mode would change it for every task
 * that runs after it on the thread.
 *
 * No .note.gnu.property is emitted on purpose: these functions switch stacks
 * behind the back of a CET shadow stack, so the linked program must not claim
 * shadow-stack compatibility. endbr64 is still emitted under -fcf-protection
 * so IBT-only builds keep working.
 */

#if defined(__x86_64__) && !defined(COIL_CTX_UCONTEXT)

#if defined(__CET__) && (__CET__ & 1)
#define COIL_ENDBR endbr64
#else
#define COIL_ENDBR
#endif

    .text

/* void coil__ctx_swap(void **save_sp, void *new_sp)
 * Saves the current context, stores its sp into *save_sp, resumes new_sp. */
    .globl  coil__ctx_swap
    .hidden coil__ctx_swap
    .type   coil__ctx_swap, @function
    .p2align 4
coil__ctx_swap:
    .cfi_startproc
    COIL_ENDBR
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)

    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    /* From here on the frame belongs to the context being resumed; the CFI
     * above describes it equally well because the layout is the same. */

    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret
    .cfi_endproc
    .size   coil__ctx_swap, .-coil__ctx_swap

/* void coil__ctx_jump(void *new_sp)
 * Resumes new_sp without saving anything: the caller's context is finished. */
    .globl  coil__ctx_jump
    .hidden coil__ctx_jump
    .type   coil__ctx_jump, @function
    .p2align 4
coil__ctx_jump:
    .cfi_startproc
    COIL_ENDBR
    movq    %rdi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   coil__ctx_jump, .-coil__ctx_jump

/* First code run on a new stack, reached by the `ret` of swap/jump.
 * r12 = function, r13 = its argument (placed there by coil__ctx_make).
 * The `ret` left rsp 16-byte aligned, as the ABI wants at a call. */
    .globl  coil__ctx_trampoline
    .hidden coil__ctx_trampoline
    .type   coil__ctx_trampoline, @function
    .p2align 4
coil__ctx_trampoline:
    .cfi_startproc
    /* Bottom of the call chain: unwinders and debuggers stop here. */
    .cfi_undefined %rip
    movq    %r13, %rdi
    call    *%r12
    /* The function must not return; there is nothing to return to. */
    ud2
    .cfi_endproc
    .size   coil__ctx_trampoline, .-coil__ctx_trampoline

#endif /* __x86_64__ && !COIL_CTX_UCONTEXT */

/* Outside the #if: even an empty object must not make the stack executable. */
    .section .note.GNU-stack, "", @progbits
