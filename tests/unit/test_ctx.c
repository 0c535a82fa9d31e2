/* Context switch primitives (ctx.h), whichever backend is built. */
#include "harness.h"

#include <fenv.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx.h"
#include "stack.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* The loop's stack size; the pool raises it under ASan. */
#define TEST_STACK_SIZE ((size_t)64 * 1024)

/* Coroutines never call cmocka asserts: a failing assert longjmps, which
 * must not cross from a coroutine stack to the main one. They record what
 * they saw and the main side checks it. */

typedef struct co {
    coil__ctx ctx;
    coil__stack stack;
} co;

static coil__stack_pool pool;

static int setup(void **state)
{
    (void)state;
    return coil__stack_pool_init(&pool, TEST_STACK_SIZE, 4, 16) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    int leaked = pool.in_use != 0;
    coil__stack_pool_exit(&pool);
    return leaked ? -1 : 0;
}

static void co_start(co *c, void (*entry)(void *), void *arg)
{
    assert_int_equal(coil__stack_get(&pool, &c->stack), 0);
    coil__ctx_make(&c->ctx, c->stack.lo, c->stack.size, entry, arg);
}

/* The start of most tests: main is the context running now, c is made to
 * start at entry(arg) when first switched to. */
static void co_begin(coil__ctx *main, co *c, void (*entry)(void *), void *arg)
{
    coil__ctx_init_main(main);
    co_start(c, entry, arg);
}

/* Only for coroutines that have finished with switch_final. */
static void co_release(co *c)
{
    coil__ctx_destroy(&c->ctx);
    coil__stack_put(&pool, c->stack);
}

/* ---- ping-pong -------------------------------------------------------- */

struct pingpong {
    coil__ctx main;
    co co;
    long value;
    int quit;
    long rounds;
};

static void pingpong_entry(void *arg)
{
    struct pingpong *s = arg;
    while (!s->quit) {
        s->value = s->value * 3 + 1;
        s->rounds++;
        coil__ctx_switch(&s->co.ctx, &s->main);
    }
    coil__ctx_switch_final(&s->co.ctx, &s->main);
}

static void test_pingpong(void **state)
{
    (void)state;
    struct pingpong s = {0};
    co_begin(&s.main, &s.co, pingpong_entry, &s);

    const long n = 200000;
    for (long i = 0; i < n; i++) {
        s.value = i;
        coil__ctx_switch(&s.main, &s.co.ctx);
        assert_int_equal(s.value, i * 3 + 1);
    }
    s.quit = 1;
    coil__ctx_switch(&s.main, &s.co.ctx);
    assert_int_equal(s.rounds, n);
    co_release(&s.co);
}

/* ---- several coroutines interleaving ---------------------------------- */

#define NCO 5
#define NSTEPS 50

struct interleave {
    coil__ctx main;
    co co[NCO];
    int log[NCO * NSTEPS];
    int nlog;
};

struct interleave_arg {
    struct interleave *s;
    int id;
};

static void interleave_entry(void *p)
{
    struct interleave_arg *a = p;
    struct interleave *s = a->s;
    for (int k = 0; k < NSTEPS; k++) {
        s->log[s->nlog++] = a->id * 1000 + k;
        coil__ctx_switch(&s->co[a->id].ctx, &s->main);
    }
    coil__ctx_switch_final(&s->co[a->id].ctx, &s->main);
}

static void test_interleave(void **state)
{
    (void)state;
    static struct interleave s;
    struct interleave_arg args[NCO];
    memset(&s, 0, sizeof s);
    coil__ctx_init_main(&s.main);
    for (int i = 0; i < NCO; i++) {
        args[i] = (struct interleave_arg){ &s, i };
        co_start(&s.co[i], interleave_entry, &args[i]);
    }
    /* Round-robin, but resume them in a rotating order so each context is
     * resumed from different neighbours. */
    for (int k = 0; k < NSTEPS; k++)
        for (int j = 0; j < NCO; j++)
            coil__ctx_switch(&s.main, &s.co[(j + k) % NCO].ctx);
    for (int i = 0; i < NCO; i++) {
        coil__ctx_switch(&s.main, &s.co[i].ctx);
        co_release(&s.co[i]);
    }

    assert_int_equal(s.nlog, NCO * NSTEPS);
    int idx = 0;
    for (int k = 0; k < NSTEPS; k++)
        for (int j = 0; j < NCO; j++)
            assert_int_equal(s.log[idx++], ((j + k) % NCO) * 1000 + k);
}

/* ---- coroutine to coroutine, without going through main --------------- */

struct chain {
    coil__ctx main;
    co a, b;
    char trace[32];
    int n;
};

static void chain_a(void *p)
{
    struct chain *s = p;
    s->trace[s->n++] = 'a';
    coil__ctx_switch(&s->a.ctx, &s->b.ctx);
    s->trace[s->n++] = 'A';
    coil__ctx_switch(&s->a.ctx, &s->b.ctx);
    s->trace[s->n++] = '1';
    coil__ctx_switch_final(&s->a.ctx, &s->main);
}

static void chain_b(void *p)
{
    struct chain *s = p;
    s->trace[s->n++] = 'b';
    coil__ctx_switch(&s->b.ctx, &s->main);
    s->trace[s->n++] = 'B';
    coil__ctx_switch(&s->b.ctx, &s->a.ctx);
    s->trace[s->n++] = '2';
    coil__ctx_switch_final(&s->b.ctx, &s->main);
}

static void test_chain(void **state)
{
    (void)state;
    struct chain s = {0};
    co_begin(&s.main, &s.a, chain_a, &s);
    co_start(&s.b, chain_b, &s);

    coil__ctx_switch(&s.main, &s.a.ctx); /* a -> b -> main */
    s.trace[s.n++] = 'm';
    coil__ctx_switch(&s.main, &s.a.ctx); /* A -> B -> 1 -> main */
    s.trace[s.n++] = 'M';
    coil__ctx_switch(&s.main, &s.b.ctx); /* 2 -> main */
    s.trace[s.n] = 0;
    assert_string_equal(s.trace, "abmAB1M2");
    co_release(&s.a);
    co_release(&s.b);
}

/* ---- callee-saved registers ------------------------------------------- */

/* Many values live across the switch: the compiler keeps as many as it can
 * in callee-saved registers, so a switch that loses one shows up here.
 * Without self it computes the same without switching: the expected value. */
static __attribute__((noinline)) uint64_t
many_locals_round(uint64_t seed, coil__ctx *self, coil__ctx *other)
{
    uint64_t a = seed * 0x9e3779b97f4a7c15ull, b = a ^ (a >> 29), c = b * 31 + seed;
    uint64_t d = c ^ 0xdeadbeefull, e = d + (a << 7), f = e * 0x100000001b3ull;
    uint64_t g = f ^ b, h = g + c, i = h * 3 + d, j = i ^ e, k = j + f, l = k * 7 + g;
    double x = (double)(seed & 0xffff) * 0.5, y = x * 1.25 + 3.0;

    if (self)
        coil__ctx_switch(self, other);

    uint64_t r = a;
    r = r * 131 + b; r = r * 131 + c; r = r * 131 + d; r = r * 131 + e;
    r = r * 131 + f; r = r * 131 + g; r = r * 131 + h; r = r * 131 + i;
    r = r * 131 + j; r = r * 131 + k; r = r * 131 + l;
    r += (uint64_t)(x * 4.0) + (uint64_t)(y * 8.0);
    return r;
}

/* A recursion that switches at every node: each level keeps values from
 * before the switch that it needs after it. */
static __attribute__((noinline)) uint64_t
rec_switch(int depth, uint64_t salt, coil__ctx *self, coil__ctx *other, int do_switch)
{
    uint64_t before = salt * 2654435761u + (uint64_t)depth;
    if (depth <= 1) {
        if (do_switch)
            coil__ctx_switch(self, other);
        return before ^ (uint64_t)depth;
    }
    uint64_t l = rec_switch(depth - 1, before, self, other, do_switch);
    if (do_switch)
        coil__ctx_switch(self, other);
    uint64_t r = rec_switch(depth - 2, l + salt, self, other, do_switch);
    return (l * 31) ^ (r + before) ^ (uint64_t)depth;
}

#define REGS_ROUNDS 2000
#define REC_DEPTH 12

struct regs {
    coil__ctx main;
    co co;
    uint64_t co_bad;
    uint64_t co_rec;
};

static void regs_entry(void *p)
{
    struct regs *s = p;
    for (uint64_t n = 0; n < REGS_ROUNDS; n++)
        if (many_locals_round(n + 777, &s->co.ctx, &s->main) !=
            many_locals_round(n + 777, NULL, NULL))
            s->co_bad++;
    s->co_rec = rec_switch(REC_DEPTH, 99, &s->co.ctx, &s->main, 1);
    coil__ctx_switch_final(&s->co.ctx, &s->main);
}

static void test_callee_saved(void **state)
{
    (void)state;
    struct regs s = {0};
    co_begin(&s.main, &s.co, regs_entry, &s);

    uint64_t main_bad = 0;
    for (uint64_t n = 0; n < REGS_ROUNDS; n++)
        if (many_locals_round(n, &s.main, &s.co.ctx) != many_locals_round(n, NULL, NULL))
            main_bad++;
    /* Both sides recurse with the same shape, so they switch the same number
     * of times; one extra switch lets the coroutine finish. */
    uint64_t main_rec = rec_switch(REC_DEPTH, 5, &s.main, &s.co.ctx, 1);
    coil__ctx_switch(&s.main, &s.co.ctx);

    assert_int_equal(main_bad, 0);
    assert_int_equal(s.co_bad, 0);
    assert_int_equal(main_rec, rec_switch(REC_DEPTH, 5, NULL, NULL, 0));
    assert_int_equal(s.co_rec, rec_switch(REC_DEPTH, 99, NULL, NULL, 0));
    co_release(&s.co);
}

/* ---- floating-point control state is per context ---------------------- */

struct fpmode {
    coil__ctx main;
    co a, b;
    int a_mode_after_switch;
    int b_mode_at_start;
    double a_seventh;        /* 1/7 rounded upward (SSE) */
    long double a_seventh_x87;
    double b_tenth;        /* 1/10 rounded downward (SSE) */
    unsigned a_mxcsr_rc, b_mxcsr_rc;
};

static volatile double one = 1.0, seven = 7.0, ten = 10.0;
static volatile long double one_l = 1.0L, seven_l = 7.0L;

#if defined(__x86_64__)
static unsigned mxcsr_get(void)
{
    unsigned v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}
#endif

static void fp_a(void *p)
{
    struct fpmode *s = p;
    fesetround(FE_UPWARD);
    coil__ctx_switch(&s->a.ctx, &s->main);
    s->a_mode_after_switch = fegetround();
    s->a_seventh = one / seven;
    s->a_seventh_x87 = one_l / seven_l;
#if defined(__x86_64__)
    s->a_mxcsr_rc = (mxcsr_get() >> 13) & 3;
#endif
    coil__ctx_switch_final(&s->a.ctx, &s->main);
}

static void fp_b(void *p)
{
    struct fpmode *s = p;
    s->b_mode_at_start = fegetround();
    fesetround(FE_DOWNWARD);
    coil__ctx_switch(&s->b.ctx, &s->main);
    s->b_tenth = one / ten;
#if defined(__x86_64__)
    s->b_mxcsr_rc = (mxcsr_get() >> 13) & 3;
#endif
    coil__ctx_switch_final(&s->b.ctx, &s->main);
}

static void test_fp_rounding_per_context(void **state)
{
    (void)state;
    struct fpmode s = {0};
    assert_int_equal(fegetround(), FE_TONEAREST);
    co_begin(&s.main, &s.a, fp_a, &s);
    co_start(&s.b, fp_b, &s);

    coil__ctx_switch(&s.main, &s.a.ctx);          /* A: upward */
    assert_int_equal(fegetround(), FE_TONEAREST);
    double near_seventh = one / seven;
    long double near_seventh_x87 = one_l / seven_l;

    coil__ctx_switch(&s.main, &s.b.ctx);          /* B: sees nearest, sets downward */
    assert_int_equal(fegetround(), FE_TONEAREST);
    double near_tenth = one / ten;

    coil__ctx_switch(&s.main, &s.a.ctx);          /* A: still upward */
    assert_int_equal(fegetround(), FE_TONEAREST);
    coil__ctx_switch(&s.main, &s.b.ctx);          /* B: still downward */
    assert_int_equal(fegetround(), FE_TONEAREST);
    assert_true(one / seven == near_seventh);

    assert_int_equal(s.b_mode_at_start, FE_TONEAREST);
    assert_int_equal(s.a_mode_after_switch, FE_UPWARD);
    /* Valgrind keeps the control words but computes SSE in round-to-nearest
     * and x87 in double precision whatever they say. */
    if (!RUNNING_ON_VALGRIND) {
        /* Round-to-nearest takes 1/7 down (in double and in x87 extended)
         * and 1/10 up, so the directed results must differ from the nearest
         * ones. */
        assert_true(s.a_seventh > near_seventh);
        assert_true(s.a_seventh_x87 > near_seventh_x87);
        assert_true(s.b_tenth < near_tenth);
    }
#if defined(__x86_64__)
    /* fegetround() reads only the x87 control word; the SSE unit has its own
     * rounding field in MXCSR (bits 13-14), which must travel too. */
    assert_int_equal(s.a_mxcsr_rc, 2);  /* upward */
    assert_int_equal(s.b_mxcsr_rc, 1);  /* downward */
    assert_int_equal((mxcsr_get() >> 13) & 3, 0);
#endif
    co_release(&s.a);
    co_release(&s.b);
}

/* ---- floating-point values across switches ---------------------------- */

#define FP_STEPS 3000

struct fpcalc {
    coil__ctx main;
    co co;
    double co_result;
};

static __attribute__((noinline)) double fp_step(double acc, int i)
{
    return acc * 0.999 + sqrt((double)i + 0.5) / (1.0 + sin((double)i) * 0.5);
}

static void fpcalc_entry(void *p)
{
    struct fpcalc *s = p;
    double acc = 1.0, acc2 = -2.0;
    for (int i = 0; i < FP_STEPS; i++) {
        acc = fp_step(acc, i);
        coil__ctx_switch(&s->co.ctx, &s->main);
        acc2 = fp_step(acc2, i + 1);
    }
    s->co_result = acc + acc2 * 3.0;
    coil__ctx_switch_final(&s->co.ctx, &s->main);
}

static void test_fp_across_switches(void **state)
{
    (void)state;
    struct fpcalc s = {0};
    co_begin(&s.main, &s.co, fpcalc_entry, &s);

    double m = 0.25;
    for (int i = 0; i < FP_STEPS; i++) {
        m = fp_step(m, 2 * i);
        coil__ctx_switch(&s.main, &s.co.ctx);
    }
    coil__ctx_switch(&s.main, &s.co.ctx);

    double ref_m = 0.25, acc = 1.0, acc2 = -2.0;
    for (int i = 0; i < FP_STEPS; i++) {
        ref_m = fp_step(ref_m, 2 * i);
        acc = fp_step(acc, i);
        acc2 = fp_step(acc2, i + 1);
    }
    /* Same operations in the same order: bit-identical. */
    assert_true(m == ref_m);
    assert_true(s.co_result == acc + acc2 * 3.0);
    co_release(&s.co);
}

/* ---- using a good part of the stack ----------------------------------- */

struct deep {
    coil__ctx main;
    co co;
    uint64_t result;
};

static volatile int deep_levels = 32;

/* ~1 KiB per level, not a tail call, so 32 levels hold ~32 KiB at once. */
static __attribute__((noinline)) uint64_t deep_rec(int n)
{
    volatile unsigned char buf[1024];
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = (unsigned char)(n + i);
    if (n == 0)
        return buf[64];
    uint64_t below = deep_rec(n - 1);
    return below * 3 + buf[(size_t)n * 64 % sizeof buf];
}

static void deep_entry(void *p)
{
    struct deep *s = p;
    s->result = deep_rec(deep_levels);
    coil__ctx_switch(&s->co.ctx, &s->main);
    s->result += deep_rec(deep_levels);
    coil__ctx_switch_final(&s->co.ctx, &s->main);
}

static void test_deep_stack(void **state)
{
    (void)state;
    struct deep s = {0};
    co_begin(&s.main, &s.co, deep_entry, &s);
    coil__ctx_switch(&s.main, &s.co.ctx);
    uint64_t expect = deep_rec(deep_levels);
    assert_int_equal(s.result, expect);
    coil__ctx_switch(&s.main, &s.co.ctx);
    assert_int_equal(s.result, 2 * expect);
    co_release(&s.co);
}

/* ---- stack overflow hits the guard page ------------------------------- */

static volatile int overflow_limit = 1 << 30;

static __attribute__((noinline)) int overflow_rec(int n)
{
    volatile char buf[512];
    buf[0] = (char)n;
    buf[511] = (char)n;
    if (n >= overflow_limit)
        return buf[0];
    return overflow_rec(n + 1) + buf[511];
}

struct overflow {
    coil__ctx main;
    co co;
    int r;
};

static void overflow_entry(void *p)
{
    struct overflow *s = p;
    s->r = overflow_rec(0);
    coil__ctx_switch_final(&s->co.ctx, &s->main);
}

/* In a child: runs a coroutine into its guard page. Returning (the child
 * exits 0) means the overflow went unnoticed. */
static void overflow_child(void *arg)
{
    (void)arg;
    struct overflow s = {0};
    coil__ctx_init_main(&s.main);
    if (coil__stack_get(&pool, &s.co.stack) != 0)
        _exit(3);
    coil__ctx_make(&s.co.ctx, s.co.stack.lo, s.co.stack.size, overflow_entry, &s);
    coil__ctx_switch(&s.main, &s.co.ctx);
}

static void test_guard_page_overflow(void **state)
{
    (void)state;
    int status = harness_fork_wait(overflow_child, NULL);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        assert_true(sig == SIGSEGV || sig == SIGBUS);
    } else {
        /* ASan may catch the overflow itself and exit with an error. */
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 0);
        assert_int_not_equal(WEXITSTATUS(status), 3);
    }
}

/* ---- finishing with switch_final, then recycling the stack ------------ */

struct final {
    coil__ctx main;
    co co;
    int ran;
    uint64_t sum;
};

static void final_finish(struct final *s)
{
    coil__ctx_switch_final(&s->co.ctx, &s->main);
}

/* Opaque, so the compiler does not see that the recursion ends in a call
 * that never returns (it would call that infinite recursion). */
static void (*volatile final_finish_fn)(struct final *) = final_finish;

/* Leaves frames with address-taken locals (and under ASan, poisoned
 * redzones) on the stack that never return. */
static __attribute__((noinline)) void final_nested(struct final *s, int depth)
{
    volatile char pad[200];
    pad[0] = (char)depth;
    s->sum += (uint64_t)pad[0];
    if (depth > 0)
        final_nested(s, depth - 1);
    else
        final_finish_fn(s);
}

static void final_entry(void *p)
{
    struct final *s = p;
    s->ran++;
    /* Touch the stack with a different frame layout than the last user. */
    volatile char big[3000];
    memset((char *)big, s->ran & 0xff, sizeof big);
    s->sum += (uint64_t)big[s->ran % (int)sizeof big];
    final_nested(s, s->ran % 7);
}

static void test_switch_final_and_reuse(void **state)
{
    (void)state;
    struct final s = {0};
    coil__ctx_init_main(&s.main);
    void *first_lo = NULL;
    for (int i = 0; i < 500; i++) {
        co_start(&s.co, final_entry, &s);
        if (i == 0)
            first_lo = s.co.stack.lo;
        coil__ctx_switch(&s.main, &s.co.ctx);
        assert_int_equal(s.ran, i + 1);
        co_release(&s.co);
    }
    /* LIFO pool: the same stack every time, so reuse really happened. */
    assert_ptr_equal(s.co.stack.lo, first_lo);
    assert_true(s.sum > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pingpong),
        cmocka_unit_test(test_interleave),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_callee_saved),
        cmocka_unit_test(test_fp_rounding_per_context),
        cmocka_unit_test(test_fp_across_switches),
        cmocka_unit_test(test_deep_stack),
        cmocka_unit_test(test_guard_page_overflow),
        cmocka_unit_test(test_switch_final_and_reuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
