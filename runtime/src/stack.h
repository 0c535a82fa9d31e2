/* Per-loop pool of task stacks.
 *
 * Each stack is its own mapping with PROT_NONE guard page(s) below the usable
 * range, so running off the end of a stack faults instead of silently
 * overwriting a neighbour. Mappings are MAP_NORESERVE: a stack costs only the
 * pages it has touched. Every stack is two kernel VMAs (guard + usable), which
 * is what counts against vm.max_map_count (65530 by default, so roughly 32k
 * live stacks per process before coil__stack_get fails with -ENOMEM).
 *
 * Free stacks are recycled LIFO so the most recently used (cache-warm, pages
 * resident) stack is handed out first. The hot_limit most recently returned
 * free stacks keep their pages; when a put pushes one out of that window, the
 * stack leaving it is given back to the kernel with MADV_DONTNEED but stays
 * mapped (cheap to reuse, no page cost). Beyond max_cached free stacks, a
 * stack put back is unmapped. coil__stack_pool_trim() lets an idle loop drop
 * the remaining pages after a burst.
 *
 * Single-threaded: a pool belongs to one loop. No locks.
 *
 * Stack size is the caller's choice (the loop uses 64 KiB of usable stack per
 * task). Under AddressSanitizer instrumented frames are several times larger,
 * so the pool raises the size to at least COIL__STACK_MIN_ASAN.
 */
#ifndef COIL_STACK_H
#define COIL_STACK_H

#include <stddef.h>

#define COIL__STACK_MIN_ASAN ((size_t)256 * 1024)

typedef struct coil__stack { void *lo; size_t size; } coil__stack;  /* usable range [lo, lo+size), guard page(s) below lo */

typedef struct coil__stack_pool {
    size_t stack_size;      /* usable bytes, page-rounded */
    unsigned max_cached;    /* free stacks kept mapped; beyond this they are munmap'd */
    unsigned hot_limit;     /* free stacks kept with their pages; beyond this, a stack put back is madvise(MADV_DONTNEED)'d */

    /* private */
    size_t guard_size;      /* PROT_NONE bytes below each stack */
    coil__stack *free;      /* free stacks in release order: trimmed ("cold")
                               ones first, the hot ones at the end, so popping
                               the end reuses the most recently released one */
    size_t free_cap;
    size_t hot;             /* how many entries at the end of free[] are hot */

    size_t mapped;          /* stacks currently mapped (in use + cached) */
    size_t in_use;
    size_t cached;
    size_t trimmed;         /* count of MADV_DONTNEED calls done */
} coil__stack_pool;

int  coil__stack_pool_init(coil__stack_pool *p, size_t stack_size, unsigned hot_limit, unsigned max_cached); /* 0 or -errno */
int  coil__stack_get(coil__stack_pool *p, coil__stack *out);  /* 0, -ENOMEM (mmap failure or vm.max_map_count hit) */
void coil__stack_put(coil__stack_pool *p, coil__stack s);
void coil__stack_pool_trim(coil__stack_pool *p);  /* MADV_DONTNEED every cached stack, munmap above max_cached: called by the loop when idle after a burst */
/* Unmaps cached stacks. Stacks still in use stay mapped (they belong to
 * whoever holds them); putting them back afterwards unmaps them, since the
 * pool no longer caches anything after exit. */
void coil__stack_pool_exit(coil__stack_pool *p);

#endif /* COIL_STACK_H */
