/* Per-loop stack pool (stack.h). */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctx.h" /* COIL__ASAN */
#include "stack.h"

#define SZ ((size_t)64 * 1024)

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* mincore() fails with ENOMEM exactly when part of the range is unmapped. */
static int is_mapped(const void *p, size_t len)
{
    unsigned char vec[64];
    size_t pg = page_size();
    assert_true(len / pg <= sizeof vec);
    if (mincore((void *)((uintptr_t)p & ~(pg - 1)), len, vec) == 0)
        return 1;
    assert_int_equal(errno, ENOMEM);
    return 0;
}

/* Permissions ("rw-p", "---p", ...) of the mapping holding addr, from
 * /proc/self/maps; 0 if none. */
static int maps_perms(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char pr[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, pr) != 3)
            continue;
        if ((uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
            memcpy(perms, pr, 5);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static void fill(coil__stack s, unsigned char v)
{
    memset(s.lo, v, s.size);
}

static int all_bytes(coil__stack s, unsigned char v)
{
    const unsigned char *p = s.lo;
    for (size_t i = 0; i < s.size; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void test_init(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, 0, 1, 1), -EINVAL);

    assert_int_equal(coil__stack_pool_init(&p, 1000, 2, 3), 0);
    assert_int_equal(p.stack_size % page_size(), 0);
    assert_true(p.stack_size >= 1000);
#if COIL__ASAN
    assert_true(p.stack_size >= COIL__STACK_MIN_ASAN);
#else
    assert_int_equal(p.stack_size, page_size());
#endif
    assert_int_equal(p.hot_limit, 2);
    assert_int_equal(p.max_cached, 3);
    assert_int_equal(p.mapped, 0);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.cached, 0);
    assert_int_equal(p.trimmed, 0);
    coil__stack_pool_exit(&p);
}

static void test_get_put_lifo(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 8, 8), 0);

    coil__stack a, b;
    assert_int_equal(coil__stack_get(&p, &a), 0);
    assert_int_equal(coil__stack_get(&p, &b), 0);
    assert_ptr_not_equal(a.lo, b.lo);
    assert_int_equal(a.size, p.stack_size);
    assert_int_equal((uintptr_t)a.lo % page_size(), 0);
    fill(a, 0x11);
    fill(b, 0x22);
    assert_int_equal(p.mapped, 2);
    assert_int_equal(p.in_use, 2);
    assert_int_equal(p.cached, 0);

    coil__stack_put(&p, a);
    coil__stack_put(&p, b);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.cached, 2);
    assert_int_equal(p.mapped, 2);

    coil__stack x, y;
    assert_int_equal(coil__stack_get(&p, &x), 0);
    assert_ptr_equal(x.lo, b.lo);
    assert_int_equal(coil__stack_get(&p, &y), 0);
    assert_ptr_equal(y.lo, a.lo);
    /* Hot stacks keep their contents. */
    assert_true(all_bytes(x, 0x22));
    assert_true(all_bytes(y, 0x11));
    assert_int_equal(p.mapped, 2);
    assert_int_equal(p.trimmed, 0);

    coil__stack_put(&p, x);
    coil__stack_put(&p, y);
    coil__stack_pool_exit(&p);
    assert_int_equal(p.mapped, 0);
}

static void test_guard_in_maps(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 1, 1), 0);
    coil__stack s;
    assert_int_equal(coil__stack_get(&p, &s), 0);

    char perms[5];
    assert_true(maps_perms((char *)s.lo - 1, perms));
    assert_string_equal(perms, "---p");
    assert_true(maps_perms(s.lo, perms));
    assert_string_equal(perms, "rw-p");
    assert_true(maps_perms((char *)s.lo + s.size - 1, perms));
    assert_string_equal(perms, "rw-p");

    coil__stack_put(&p, s);
    coil__stack_pool_exit(&p);
}

/* In a child: writes to the first byte of the stack, then to the guard
 * page below it. */
static void touch_guard(void *arg)
{
    coil__stack *s = arg;
    ((volatile char *)s->lo)[0] = 1;          /* fine */
    ((volatile char *)s->lo)[-1] = 1;         /* guard */
}

static void test_guard_faults(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 1, 1), 0);
    coil__stack s;
    assert_int_equal(coil__stack_get(&p, &s), 0);

    int status = harness_fork_wait(touch_guard, &s);
    if (WIFSIGNALED(status)) {
        assert_int_equal(WTERMSIG(status), SIGSEGV);
    } else {
        /* A sanitizer may report the fault itself and exit non-zero. */
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 0);
    }

    coil__stack_put(&p, s);
    coil__stack_pool_exit(&p);
}

static void test_hot_limit_dontneed(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 1, 8), 0);

    coil__stack a, b, c;
    assert_int_equal(coil__stack_get(&p, &a), 0);
    assert_int_equal(coil__stack_get(&p, &b), 0);
    assert_int_equal(coil__stack_get(&p, &c), 0);
    fill(a, 0xa1);
    fill(b, 0xb2);
    fill(c, 0xc3);

    coil__stack_put(&p, a);                 /* hot */
    assert_int_equal(p.trimmed, 0);
    coil__stack_put(&p, b);                 /* b hot, a pushed out: trimmed */
    assert_int_equal(p.trimmed, 1);
    coil__stack_put(&p, c);                 /* c hot, b trimmed */
    assert_int_equal(p.trimmed, 2);
    assert_int_equal(p.cached, 3);
    assert_int_equal(p.mapped, 3);

    /* The hot one comes back first with its contents, then the trimmed ones,
     * still mapped but reading back as zero pages, also newest first. */
    coil__stack x, y, z;
    assert_int_equal(coil__stack_get(&p, &x), 0);
    assert_ptr_equal(x.lo, c.lo);
    assert_true(all_bytes(x, 0xc3));
    assert_int_equal(coil__stack_get(&p, &y), 0);
    assert_ptr_equal(y.lo, b.lo);
    assert_true(all_bytes(y, 0));
    assert_int_equal(coil__stack_get(&p, &z), 0);
    assert_ptr_equal(z.lo, a.lo);
    assert_true(all_bytes(z, 0));
    assert_int_equal(p.mapped, 3);
    assert_int_equal(p.trimmed, 2);

    coil__stack_put(&p, x);
    coil__stack_put(&p, y);
    coil__stack_put(&p, z);
    coil__stack_pool_exit(&p);
    assert_int_equal(p.mapped, 0);
}

static void test_max_cached_munmap(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 4, 2), 0);

    coil__stack s[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(coil__stack_get(&p, &s[i]), 0);
    assert_int_equal(p.mapped, 4);

    for (int i = 0; i < 4; i++)
        coil__stack_put(&p, s[i]);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.cached, 2);
    assert_int_equal(p.mapped, 2);
    assert_true(is_mapped(s[0].lo, page_size()));
    assert_true(is_mapped(s[1].lo, page_size()));
    assert_false(is_mapped(s[2].lo, page_size()));
    assert_false(is_mapped(s[3].lo, page_size()));

    coil__stack_pool_exit(&p);
    assert_int_equal(p.mapped, 0);
    assert_false(is_mapped(s[0].lo, page_size()));
    assert_false(is_mapped(s[1].lo, page_size()));
}

static void test_trim(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 2, 8), 0);

    coil__stack s[4];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(coil__stack_get(&p, &s[i]), 0);
        fill(s[i], (unsigned char)(0x10 + i));
    }
    for (int i = 0; i < 4; i++)
        coil__stack_put(&p, s[i]);
    assert_int_equal(p.trimmed, 2);         /* s[0], s[1] pushed out of the hot window */
    assert_int_equal(p.cached, 4);

    /* Idle after the burst: the hot ones give their pages back too, the cold
     * ones are not advised a second time. */
    coil__stack_pool_trim(&p);
    assert_int_equal(p.trimmed, 4);
    assert_int_equal(p.cached, 4);
    assert_int_equal(p.mapped, 4);
    for (int i = 0; i < 4; i++)
        assert_true(all_bytes(s[i], 0));
    coil__stack_pool_trim(&p);
    assert_int_equal(p.trimmed, 4);

    /* A lowered max_cached takes effect at the next trim. */
    p.max_cached = 1;
    coil__stack_pool_trim(&p);
    assert_int_equal(p.cached, 1);
    assert_int_equal(p.mapped, 1);

    coil__stack x;
    assert_int_equal(coil__stack_get(&p, &x), 0);
    assert_true(all_bytes(x, 0));
    assert_int_equal(p.cached, 0);
    coil__stack_put(&p, x);
    coil__stack_pool_exit(&p);
    assert_int_equal(p.mapped, 0);
}

static void test_exit_with_stack_in_use(void **state)
{
    (void)state;
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, SZ, 2, 4), 0);
    coil__stack s[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil__stack_get(&p, &s[i]), 0);
    coil__stack_put(&p, s[0]);
    coil__stack_put(&p, s[1]);
    coil__stack_pool_exit(&p);

    /* The one still held stays usable... */
    assert_int_equal(p.mapped, 1);
    assert_int_equal(p.in_use, 1);
    fill(s[2], 0x5a);
    /* ...and goes away when given back. */
    coil__stack_put(&p, s[2]);
    assert_int_equal(p.mapped, 0);
    assert_int_equal(p.in_use, 0);
    assert_false(is_mapped(s[2].lo, page_size()));
}

/* Enough stacks that the free list has to grow several times. */
static void test_many(void **state)
{
    (void)state;
    enum { N = 600 };
    coil__stack_pool p;
    assert_int_equal(coil__stack_pool_init(&p, 16 * 1024, 16, N), 0);
    static coil__stack s[N];
    for (int i = 0; i < N; i++) {
        assert_int_equal(coil__stack_get(&p, &s[i]), 0);
        ((volatile char *)s[i].lo)[s[i].size - 1] = (char)i;
    }
    assert_int_equal(p.mapped, N);
    for (int i = 0; i < N; i++)
        coil__stack_put(&p, s[i]);
    assert_int_equal(p.cached, N);
    assert_int_equal(p.trimmed, N - 16);
    /* LIFO: the last 16 returned are hot and come back newest first. */
    for (int i = N - 1; i >= N - 16; i--) {
        coil__stack x;
        assert_int_equal(coil__stack_get(&p, &x), 0);
        assert_ptr_equal(x.lo, s[i].lo);
        assert_int_equal(((volatile char *)x.lo)[x.size - 1], (char)i);
        s[i] = x;
    }
    for (int i = N - 16; i < N; i++)
        coil__stack_put(&p, s[i]);
    coil__stack_pool_exit(&p);
    assert_int_equal(p.mapped, 0);
}

#if !COIL__ASAN
/* In a child: exits 0 if getting stacks under a small address-space limit
 * ends in -ENOMEM, any other status if not. */
static void exhaust_address_space(void *arg)
{
    (void)arg;
    coil__stack_pool p;
    if (coil__stack_pool_init(&p, SZ, 0, 0) != 0)
        _exit(2);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long vm_pages = 0;
    if (!f || fscanf(f, "%lu", &vm_pages) != 1)
        _exit(3);
    fclose(f);
    /* Room for a handful of stacks, then nothing. */
    rlim_t lim = (rlim_t)vm_pages * page_size() + 8 * (SZ + page_size());
    struct rlimit rl = { lim, lim };
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        _exit(4);
    coil__stack s;
    for (int i = 0; i < 1000; i++) {
        int r = coil__stack_get(&p, &s);
        if (r == -ENOMEM)
            _exit(i > 0 ? 0 : 5);
        if (r != 0)
            _exit(6);
    }
    _exit(7);
}
#endif

/* Running out of address space is reported, not fatal. */
static void test_enomem(void **state)
{
    (void)state;
#if COIL__ASAN
    /* ASan's shadow mappings make an address-space limit meaningless. */
    skip();
#else
    int status = harness_fork_wait(exhaust_address_space, NULL);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_get_put_lifo),
        cmocka_unit_test(test_guard_in_maps),
        cmocka_unit_test(test_guard_faults),
        cmocka_unit_test(test_hot_limit_dontneed),
        cmocka_unit_test(test_max_cached_munmap),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_exit_with_stack_in_use),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_enomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
