#include "stack.h"
#include "ctx.h" /* COIL__ASAN */

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if COIL__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#endif

#ifndef MAP_STACK
#define MAP_STACK 0
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

/* One page stops a frame that grows a little past the end. A single frame
 * larger than this can still jump over it unless the code is built with
 * -fstack-clash-protection; more guard would only cost address space, but
 * the loop's stacks are small and big frames do not belong on them anyway. */
#define GUARD_PAGES 1

static void stack_unmap(coil__stack_pool *p, coil__stack s)
{
#if COIL__ASAN
    /* Shadow is not cleared by munmap; whatever maps this range next must
     * not inherit redzones of frames that never returned. */
    ASAN_UNPOISON_MEMORY_REGION(s.lo, s.size);
#endif
    munmap((char *)s.lo - p->guard_size, s.size + p->guard_size);
    p->mapped--;
}

static void stack_dontneed(coil__stack_pool *p, coil__stack s)
{
    /* Failure only means the pages stay resident; the stack is still good. */
    (void)madvise(s.lo, s.size, MADV_DONTNEED);
    p->trimmed++;
}

int coil__stack_pool_init(coil__stack_pool *p, size_t stack_size,
                          unsigned hot_limit, unsigned max_cached)
{
    memset(p, 0, sizeof *p);
    if (stack_size == 0)
        return -EINVAL;

    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;

#if COIL__ASAN
    if (stack_size < COIL__STACK_MIN_ASAN)
        stack_size = COIL__STACK_MIN_ASAN;
#endif
    if (stack_size > SIZE_MAX / 2)
        return -EINVAL;
    stack_size = (stack_size + page - 1) & ~(page - 1);

    p->stack_size = stack_size;
    p->guard_size = page * GUARD_PAGES;
    p->hot_limit = hot_limit;
    p->max_cached = max_cached;
    return 0;
}

int coil__stack_get(coil__stack_pool *p, coil__stack *out)
{
    coil__stack s;

    if (p->cached > 0) {
        s = p->free[--p->cached];
        if (p->hot > 0)
            p->hot--;
    } else {
        size_t total = p->guard_size + p->stack_size;
        char *base = mmap(NULL, total, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                          -1, 0);
        if (base == MAP_FAILED)
            return -ENOMEM;
        /* Splitting the mapping creates a second VMA; this is where
         * vm.max_map_count bites (mprotect fails with ENOMEM). */
        if (mprotect(base, p->guard_size, PROT_NONE) != 0) {
            munmap(base, total);
            return -ENOMEM;
        }
        s.lo = base + p->guard_size;
        s.size = p->stack_size;
        p->mapped++;
    }

#if COIL__ASAN
    /* A suspended task may hold the only pointer to a heap block on its
     * stack, which LeakSanitizer would not otherwise scan. */
    __lsan_register_root_region(s.lo, s.size);
#endif
    p->in_use++;
    *out = s;
    return 0;
}

static int free_reserve(coil__stack_pool *p, size_t need)
{
    if (need <= p->free_cap)
        return 0;
    size_t cap = p->free_cap ? p->free_cap * 2 : 16;
    while (cap < need)
        cap *= 2;
    coil__stack *a = realloc(p->free, cap * sizeof *a);
    if (!a)
        return -ENOMEM;
    p->free = a;
    p->free_cap = cap;
    return 0;
}

void coil__stack_put(coil__stack_pool *p, coil__stack s)
{
    assert(s.lo && s.size == p->stack_size);
    assert(p->in_use > 0);
#if COIL__ASAN
    __lsan_unregister_root_region(s.lo, s.size);
#endif
    p->in_use--;

    if (p->cached >= p->max_cached || free_reserve(p, p->cached + 1) != 0) {
        stack_unmap(p, s);
        return;
    }

    p->free[p->cached++] = s;
    if (p->hot < p->hot_limit) {
        p->hot++;
        return;
    }
    /* The hot window is full: its oldest member leaves it and gives its
     * pages back. Keeping the most recently used stacks hot is what LIFO
     * reuse wants (their lines are likeliest still in cache). With
     * hot_limit 0 the oldest member is s itself. */
    stack_dontneed(p, p->free[p->cached - 1 - p->hot]);
}

void coil__stack_pool_trim(coil__stack_pool *p)
{
    /* max_cached may have been lowered since the stacks were cached. The
     * coldest stacks are at the front. */
    if (p->cached > p->max_cached) {
        size_t excess = p->cached - p->max_cached;
        for (size_t i = 0; i < excess; i++)
            stack_unmap(p, p->free[i]);
        memmove(&p->free[0], &p->free[excess], (p->cached - excess) * sizeof *p->free);
        p->cached -= excess;
        if (p->hot > p->cached)
            p->hot = p->cached;
    }

    /* Cold stacks were already given back when they were queued and have not
     * run since; only the hot ones hold pages. */
    for (size_t i = p->cached - p->hot; i < p->cached; i++)
        stack_dontneed(p, p->free[i]);
    p->hot = 0;
}

void coil__stack_pool_exit(coil__stack_pool *p)
{
    for (size_t i = 0; i < p->cached; i++)
        stack_unmap(p, p->free[i]);
    free(p->free);
    p->free = NULL;
    p->free_cap = 0;
    p->cached = 0;
    p->hot = 0;
    p->max_cached = 0;
    p->hot_limit = 0;
}
