/*
 * Receive buffers of one loop: buf_count buffers of buf_size bytes carved
 * from one allocation and named by a 16-bit-compatible id. A LIFO free stack
 * picks them, so a lightly loaded loop keeps touching the same few buffers
 * and its RSS stays small. On io_uring with a buffer ring the kernel picks
 * from a window of buffers offered to it, refilled from that stack (see
 * uring.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop_impl.h"

int coil__bufpool_init(coil__bufpool *p, uint32_t count, uint32_t size)
{
    *p = (coil__bufpool){ .count = count, .size = size };
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t bytes = (size_t)count * size;
    bytes = (bytes + page - 1) / page * page;
    p->mem = aligned_alloc(page, bytes);
    p->free_ids = malloc(count * sizeof(*p->free_ids));
    p->refs = calloc(count, sizeof(*p->refs));
    if (!p->mem || !p->free_ids || !p->refs) {
        free(p->mem);
        free(p->free_ids);
        free(p->refs);
        return -ENOMEM;
    }
    /* Lowest ids on top of the stack: they are handed out first. */
    for (uint32_t i = 0; i < count; i++)
        p->free_ids[i] = count - 1 - i;
    p->nfree = count;
    return 0;
}

void coil__bufpool_exit(coil__bufpool *p)
{
    for (uint32_t i = 0; i < p->nextra; i++)
        free(p->extra[i]);
    free(p->extra);
    free(p->extra_refs);
    free(p->extra_free);
    free(p->refs);
    free(p->mem);
    free(p->free_ids);
    *p = (coil__bufpool){ 0 };
}

int coil__bufpool_take(coil__bufpool *p, uint32_t *id)
{
    if (!p->nfree)
        return -ENOBUFS;
    *id = p->free_ids[--p->nfree];
    p->in_use++;
    return 0;
}

/* Overflow buffers live outside the pool, one allocation each, with ids from
 * count upwards: the pool ran dry, and a connection must still make progress
 * rather than wait for buffers that other tasks hold. */
int coil__bufpool_take_any(coil__bufpool *p, uint32_t *id)
{
    if (coil__bufpool_take(p, id) == 0)
        return 0;
    uint32_t slot;
    if (p->nextra_free) {
        slot = p->extra_free[--p->nextra_free];
    } else {
        if (p->nextra == p->extra_cap) {
            uint32_t cap = p->extra_cap ? p->extra_cap * 2 : 16;
            char **e = realloc(p->extra, cap * sizeof(*e));
            if (!e)
                return -ENOMEM;
            p->extra = e;
            uint16_t *r = realloc(p->extra_refs, cap * sizeof(*r));
            if (!r)
                return -ENOMEM;
            p->extra_refs = r;
            uint32_t *f = realloc(p->extra_free, cap * sizeof(*f));
            if (!f)
                return -ENOMEM;
            p->extra_free = f;
            p->extra_cap = cap;
        }
        slot = p->nextra++;
    }
    p->extra[slot] = malloc(p->size);
    p->extra_refs[slot] = 0;
    if (!p->extra[slot]) {
        p->extra_free[p->nextra_free++] = slot;
        return -ENOMEM;
    }
    p->in_use++;
    p->overflows++;
    *id = p->count + slot;
    return 0;
}

char *coil__buf_addr(const coil__bufpool *p, uint32_t id)
{
    if (id < p->count)
        return p->mem + (size_t)id * p->size;
    return p->extra[id - p->count];
}

void coil__buf_view(struct coil__loop *l, coil_buf *out, uint32_t id, size_t len)
{
    out->data = coil__buf_addr(&l->bufs, id);
    out->len = len;
    out->loop = l;
    out->id = id;
}

static uint16_t *ref_of(coil__bufpool *p, uint32_t id)
{
    return id < p->count ? &p->refs[id] : &p->extra_refs[id - p->count];
}

void coil__buf_give_back(struct coil__loop *l, uint32_t id)
{
    uint16_t *ref = ref_of(&l->bufs, id);
    if (*ref) {
        (*ref)--; /* another view still holds it */
        return;
    }
    l->bufs.in_use--;
    if (id >= l->bufs.count) {
        uint32_t slot = id - l->bufs.count;
        free(l->bufs.extra[slot]);
        l->bufs.extra[slot] = NULL;
        l->bufs.extra_free[l->bufs.nextra_free++] = slot;
    } else if (l->bufs.kernel_ring)
        l->be->buf_recycle(l, id);
    else
        l->bufs.free_ids[l->bufs.nfree++] = id;
}

int coil_buf_share(const coil_buf *b, size_t off, size_t len, coil_buf *out)
{
    if (!b->loop || off > b->len || len > b->len - off)
        return -EINVAL;
    uint16_t *ref = ref_of(&b->loop->bufs, b->id);
    if (*ref == UINT16_MAX)
        return -EOVERFLOW;
    (*ref)++;
    *out = *b;
    out->data = b->data + off;
    out->len = len;
    return 0;
}

void coil_buf_release(coil_buf *b)
{
    if (!b->loop)
        return;
    coil__buf_give_back(b->loop, b->id);
    *b = (coil_buf){ 0 };
}
