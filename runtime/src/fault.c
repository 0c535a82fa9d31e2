/*
 * Fault injection: a wrapper of the loop's backend (see fault.h). The
 * wrapper is a per-loop copy of the real ops table with the socket entries
 * that can fail replaced; everything else (poll, doorbell, buffer recycling)
 * is the real function itself.
 *
 * One side effect to know about: uring.c rings another loop's doorbell with
 * MSG_RING only when both loops' ops table is the real io_uring one, so
 * with faults installed cross-core messages always ring the eventfd — a path
 * foreign threads use anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fault.h"
#include "loop_impl.h"

enum call_class { CALL_SEND, CALL_RECV, CALL_ACCEPT };

static const struct {
    const char *name;
    enum call_class cls;
} kinds[COIL__FAULT_KINDS] = {
    [COIL__FAULT_SEND_SHORT] = { "send_short", CALL_SEND },
    [COIL__FAULT_SEND_RESET] = { "send_reset", CALL_SEND },
    [COIL__FAULT_RECV_SHORT] = { "recv_short", CALL_RECV },
    [COIL__FAULT_RECV_RESET] = { "recv_reset", CALL_RECV },
    [COIL__FAULT_RECV_NOBUFS] = { "recv_nobufs", CALL_RECV },
    [COIL__FAULT_ACCEPT_EMFILE] = { "accept_emfile", CALL_ACCEPT },
};

/* Bytes a short receive held back for one socket. They are older than
 * anything the backend still has for it, so every way of reading the socket
 * (receive, receive into a buffer, splice) takes them first. */
typedef struct held {
    coil_sock *s;
    coil_buf b;
    struct held *next;
} held;

struct coil__faults {
    coil__backend vt;          /* what l->be points to */
    const coil__backend *real;
    uint32_t every[COIL__FAULT_KINDS];
    /* A fault whose turn came on a call that could not take it (a short
     * receive of one byte) waits for the next call that can. */
    bool pending[COIL__FAULT_KINDS];
    uint64_t calls[3];
    coil__fault_counts counts;
    uint64_t rng;
    bool from_env;
    held *held;
};

const char *coil__fault_name(enum coil__fault_kind k)
{
    return (unsigned)k < COIL__FAULT_KINDS ? kinds[k].name : "?";
}

int coil__faults_parse(const char *spec, uint32_t every[COIL__FAULT_KINDS], char *err,
                       size_t errlen)
{
    memset(every, 0, sizeof(uint32_t) * COIL__FAULT_KINDS);
    bool seen[COIL__FAULT_KINDS] = { false };
    const char *p = spec;
    if (!*p)
        return 0;
    for (;;) {
        const char *eq = strchr(p, '=');
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        if (!eq || eq > end) {
            snprintf(err, errlen, "'%.*s': expected kind=N", (int)(end - p), p);
            return -EINVAL;
        }
        int k = -1;
        for (int i = 0; i < COIL__FAULT_KINDS; i++)
            if (strlen(kinds[i].name) == (size_t)(eq - p) && memcmp(kinds[i].name, p, (size_t)(eq - p)) == 0)
                k = i;
        if (k < 0) {
            snprintf(err, errlen, "unknown fault '%.*s'", (int)(eq - p), p);
            return -EINVAL;
        }
        if (seen[k]) {
            snprintf(err, errlen, "fault '%s' given twice", kinds[k].name);
            return -EINVAL;
        }
        seen[k] = true;
        uint64_t v = 0;
        const char *d = eq + 1;
        if (d == end || end - d > 10) {
            snprintf(err, errlen, "'%.*s': expected a number 0..1000000000", (int)(end - p), p);
            return -EINVAL;
        }
        for (; d < end; d++) {
            if (*d < '0' || *d > '9') {
                snprintf(err, errlen, "'%.*s': expected a number 0..1000000000", (int)(end - p), p);
                return -EINVAL;
            }
            v = v * 10 + (uint64_t)(*d - '0');
        }
        if (v > 1000000000) {
            snprintf(err, errlen, "'%.*s': expected a number 0..1000000000", (int)(end - p), p);
            return -EINVAL;
        }
        every[k] = (uint32_t)v;
        if (!*end)
            return 0;
        p = end + 1;
        if (!*p) {
            snprintf(err, errlen, "trailing ','");
            return -EINVAL;
        }
    }
}

static struct coil__faults *F(const coil_sock *s)
{
    return s->loop->faults;
}

/* Counts a call of class c and marks the faults whose turn it is. */
static void tick(struct coil__faults *f, enum call_class c)
{
    uint64_t n = ++f->calls[c];
    for (int k = 0; k < COIL__FAULT_KINDS; k++)
        if (kinds[k].cls == c && f->every[k] && n % f->every[k] == 0)
            f->pending[k] = true;
}

static bool due(struct coil__faults *f, enum coil__fault_kind k)
{
    return f->pending[k];
}

static void spend(struct coil__faults *f, enum coil__fault_kind k)
{
    f->pending[k] = false;
    f->counts.injected[k]++;
}

/* Where to cut n >= 2 bytes: 1 .. n-1, from a fixed-seed generator so that
 * a run repeats exactly. */
static size_t cut(struct coil__faults *f, size_t n)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return 1 + (size_t)(f->rng % (n - 1));
}

static held **held_slot(struct coil__faults *f, const coil_sock *s)
{
    held **pp = &f->held;
    while (*pp && (*pp)->s != s)
        pp = &(*pp)->next;
    return pp;
}

static void held_drop(held **pp)
{
    held *h = *pp;
    *pp = h->next;
    coil_buf_release(&h->b);
    free(h);
}

static bool held_add(struct coil__faults *f, coil_sock *s, coil_buf *b)
{
    held *h = malloc(sizeof(*h));
    if (!h)
        return false;
    *h = (held){ .s = s, .b = *b, .next = f->held };
    f->held = h;
    *b = (coil_buf){ 0 };
    return true;
}

/* An injected error is still a call: a pending cancel wins, as it would in
 * the backend. */
static int fail_with(coil_sock *s, int err)
{
    int p = coil__pending(s->loop->current);
    return p ? p : err;
}

static int f_accept(coil_sock *lsn, struct sockaddr_storage *peer, int64_t deadline)
{
    struct coil__faults *f = F(lsn);
    tick(f, CALL_ACCEPT);
    f->counts.accepts++;
    if (due(f, COIL__FAULT_ACCEPT_EMFILE)) {
        spend(f, COIL__FAULT_ACCEPT_EMFILE);
        return fail_with(lsn, -EMFILE);
    }
    int fd = f->real->accept(lsn, peer, deadline);
    if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM)
        f->counts.accept_errors++;
    return fd;
}

static ssize_t f_sendmsg(coil_sock *s, struct iovec *iov, int iovcnt, int64_t deadline)
{
    struct coil__faults *f = F(s);
    tick(f, CALL_SEND);
    f->counts.sends++;
    if (due(f, COIL__FAULT_SEND_RESET)) {
        spend(f, COIL__FAULT_SEND_RESET);
        return fail_with(s, -ECONNRESET);
    }
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (!due(f, COIL__FAULT_SEND_SHORT) || total < 2)
        return f->real->sendmsg(s, iov, iovcnt, deadline);
    spend(f, COIL__FAULT_SEND_SHORT);
    /* Offer the kernel only the first d bytes: it sends at most those, and
     * coil_sendv must go on from there. iov is the caller's scratch (see
     * coil_sendv), and the backend is done with it when it returns. */
    size_t d = cut(f, total), acc = 0;
    int i = 0;
    while (acc + iov[i].iov_len < d)
        acc += iov[i++].iov_len;
    size_t saved = iov[i].iov_len;
    iov[i].iov_len = d - acc;
    ssize_t n = f->real->sendmsg(s, iov, i + 1, deadline);
    iov[i].iov_len = saved;
    return n;
}

/* The first part of a short receive goes to the caller, the rest is held
 * for the socket. With nothing of the receive kept when memory is short. */
static ssize_t short_copy(struct coil__faults *f, coil_sock *s, char *buf, size_t n)
{
    struct coil__loop *l = s->loop;
    size_t d = cut(f, n);
    /* The rest must fit one pool-sized buffer. */
    if (n - d > l->bufs.size)
        d = n - l->bufs.size;
    uint32_t id;
    if (coil__bufpool_take_any(&l->bufs, &id) < 0)
        return (ssize_t)n;
    coil_buf rest;
    coil__buf_view(l, &rest, id, n - d);
    memcpy(rest.data, buf + d, n - d);
    if (!held_add(f, s, &rest)) {
        coil_buf_release(&rest);
        return (ssize_t)n;
    }
    spend(f, COIL__FAULT_RECV_SHORT);
    return (ssize_t)d;
}

/* Every receive counts; a due reset ends it at once. Returns 0 or the
 * error to return. */
static int recv_begin(struct coil__faults *f, coil_sock *s)
{
    tick(f, CALL_RECV);
    f->counts.recvs++;
    if (!due(f, COIL__FAULT_RECV_RESET))
        return 0;
    spend(f, COIL__FAULT_RECV_RESET);
    return fail_with(s, -ECONNRESET);
}

/* recv_nobufs: what a socket goes through when io_uring's buffer ring ran
 * dry (uring_net.c, -ENOBUFS): its multishot receive ends, the buffers it
 * had queued are read first, then it receives single-shot into a buffer of
 * its own (from the heap while the pool is dry) until the ring has room
 * again, and re-arms. The wrapper can neither make the kernel post -ENOBUFS
 * nor make the ring look short to uring_net.c (which re-arms at once when
 * the ring has room), so it plays that sequence itself: it ends the
 * multishot (rx_stop), lets the queued buffers be read, and stays due until
 * a receive finds the queue empty. That receive is single-shot (into a heap
 * overflow buffer for coil_recv_buf) and the next one re-arms, as the
 * backend does once the ring refilled. On epoll, and io_uring without
 * multishot, rx_stop does nothing and the fault is the heap-buffer receive. */
static ssize_t f_recv(coil_sock *s, void *buf, size_t len, int64_t deadline)
{
    struct coil__faults *f = F(s);
    int err = recv_begin(f, s);
    if (err)
        return err;
    held **pp = held_slot(f, s);
    if (*pp && len) {
        held *h = *pp;
        size_t n = len < h->b.len ? len : h->b.len;
        if (n >= 2 && due(f, COIL__FAULT_RECV_SHORT)) {
            n = cut(f, n);
            spend(f, COIL__FAULT_RECV_SHORT);
        }
        memcpy(buf, h->b.data, n);
        h->b.data += n;
        h->b.len -= n;
        if (!h->b.len)
            held_drop(pp);
        return (ssize_t)n;
    }
    if (due(f, COIL__FAULT_RECV_NOBUFS)) {
        err = f->real->rx_stop(s);
        if (err)
            return err;
        if (!coil__sock_rx_has(s))
            spend(f, COIL__FAULT_RECV_NOBUFS); /* this receive is single-shot */
    }
    ssize_t n = f->real->recv(s, buf, len, deadline);
    if (n >= 2 && due(f, COIL__FAULT_RECV_SHORT))
        return short_copy(f, s, buf, (size_t)n);
    return n;
}

/* A single-shot receive into a heap buffer, as a socket whose pool ran dry
 * gets (epoll and io_uring alike: coil__bufpool_take_any). */
static ssize_t recv_overflow(coil_sock *s, coil_buf *out, int64_t deadline)
{
    struct coil__loop *l = s->loop;
    /* Rule broken on purpose: the pool is made to look empty for the one
     * take_any call below (nothing runs in between), so that the receive
     * lands in an overflow buffer as it would when the pool is really dry. */
    uint32_t nfree = l->bufs.nfree, id;
    l->bufs.nfree = 0;
    int err = coil__bufpool_take_any(&l->bufs, &id);
    l->bufs.nfree = nfree;
    if (err < 0)
        return err;
    ssize_t n = l->faults->real->recv(s, coil__buf_addr(&l->bufs, id), l->bufs.size, deadline);
    if (n <= 0) {
        coil__buf_give_back(l, id);
        return n;
    }
    coil__buf_view(l, out, id, (size_t)n);
    return n;
}

static ssize_t f_recv_buf(coil_sock *s, coil_buf *out, int64_t deadline)
{
    struct coil__faults *f = F(s);
    int err = recv_begin(f, s);
    if (err)
        return err;
    held **pp = held_slot(f, s);
    if (*pp) {
        held *h = *pp;
        if (h->b.len >= 2 && due(f, COIL__FAULT_RECV_SHORT)) {
            size_t d = cut(f, h->b.len);
            if (coil_buf_share(&h->b, 0, d, out) == 0) {
                spend(f, COIL__FAULT_RECV_SHORT);
                h->b.data += d;
                h->b.len -= d;
                return (ssize_t)d;
            }
        }
        *out = h->b;
        h->b = (coil_buf){ 0 };
        held_drop(pp);
        return (ssize_t)out->len;
    }
    ssize_t n;
    if (due(f, COIL__FAULT_RECV_NOBUFS)) {
        err = f->real->rx_stop(s);
        if (err)
            return err;
        /* Bytes the multishot queued before it ended come first; the fault
         * stays due until a receive finds the queue empty and takes the
         * single-shot path. */
        if (coil__sock_rx_has(s)) {
            n = f->real->recv_buf(s, out, deadline);
        } else {
            spend(f, COIL__FAULT_RECV_NOBUFS);
            n = recv_overflow(s, out, deadline);
        }
    } else {
        n = f->real->recv_buf(s, out, deadline);
    }
    if (n >= 2 && due(f, COIL__FAULT_RECV_SHORT)) {
        size_t d = cut(f, (size_t)n);
        coil_buf rest;
        if (coil_buf_share(out, d, (size_t)n - d, &rest) == 0) {
            if (held_add(f, s, &rest)) {
                spend(f, COIL__FAULT_RECV_SHORT);
                out->len = d;
                return (ssize_t)d;
            }
            coil_buf_release(&rest);
        }
    }
    return n;
}

/* Held bytes go into the pipe before anything the socket still has: a
 * splice must not overtake them. Not a receive call of its own (no fault). */
static ssize_t f_splice(coil_sock *s, int pipe_fd, size_t len, bool sock_to_pipe, int64_t deadline)
{
    struct coil__faults *f = F(s);
    held **pp = sock_to_pipe ? held_slot(f, s) : NULL;
    if (!pp || !*pp)
        return f->real->splice(s, pipe_fd, len, sock_to_pipe, deadline);
    held *h = *pp;
    ssize_t n = write(pipe_fd, h->b.data, len < h->b.len ? len : h->b.len);
    if (n < 0)
        return -errno;
    h->b.data += n;
    h->b.len -= (size_t)n;
    if (!h->b.len)
        held_drop(pp);
    return n;
}

/* A socket with held bytes is readable now, whatever the kernel says. */
static int f_park(coil_sock *s)
{
    struct coil__faults *f = F(s);
    if (*held_slot(f, s)) {
        coil__sock_park_fire(s, false);
        return 0;
    }
    return f->real->park(s);
}

static int f_quiesce(coil_sock *s)
{
    struct coil__faults *f = F(s);
    int err = f->real->quiesce(s);
    if (err == 0) {
        held **pp = held_slot(f, s);
        if (*pp)
            held_drop(pp);
    }
    return err;
}

static int install(struct coil__loop *l, const uint32_t every[COIL__FAULT_KINDS])
{
    struct coil__faults *f = l->faults;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            return -ENOMEM;
        f->real = l->be;
        f->vt = *l->be;
        f->vt.accept = f_accept;
        f->vt.recv = f_recv;
        f->vt.recv_buf = f_recv_buf;
        f->vt.sendmsg = f_sendmsg;
        f->vt.splice = f_splice;
        f->vt.park = f_park;
        f->vt.quiesce = f_quiesce;
        l->faults = f;
        l->be = &f->vt;
    }
    memcpy(f->every, every, sizeof(f->every));
    memset(f->pending, 0, sizeof(f->pending));
    memset(f->calls, 0, sizeof(f->calls));
    f->counts = (coil__fault_counts){ 0 };
    f->rng = 0x9e3779b97f4a7c15ull;
    return 0;
}

int coil__faults_env(struct coil__loop *l)
{
    const char *spec = getenv("COIL_FAULTS");
    if (!spec || !*spec)
        return 0;
    uint32_t every[COIL__FAULT_KINDS];
    char why[160];
    int err = coil__faults_parse(spec, every, why, sizeof(why));
    if (err < 0) {
        /* Not coil__log: a refused configuration is shown even when quiet. */
        fprintf(stderr, "coil: COIL_FAULTS=\"%s\": %s\n", spec, why);
        return err;
    }
    err = install(l, every);
    if (err < 0)
        return err;
    l->faults->from_env = true;
    coil__log("fault injection on: %s", spec);
    return 0;
}

void coil__faults_exit(struct coil__loop *l)
{
    struct coil__faults *f = l->faults;
    if (!f)
        return;
    if (f->from_env) {
        /* Printed even when quiet: bench/soak.py reads it. */
        char line[512];
        size_t n = 0;
        for (int k = 0; k < COIL__FAULT_KINDS; k++)
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s %llu", k ? ", " : "",
                                  kinds[k].name, (unsigned long long)f->counts.injected[k]);
        fprintf(stderr, "coil: faults injected: %s (calls: send %llu, recv %llu, accept %llu)\n",
                line, (unsigned long long)f->counts.sends, (unsigned long long)f->counts.recvs,
                (unsigned long long)f->counts.accepts);
    }
    while (f->held)
        held_drop(&f->held);
    l->be = f->real;
    l->faults = NULL;
    free(f);
}

int coil__faults_set(coil_loop *loop, const char *spec)
{
    uint32_t every[COIL__FAULT_KINDS];
    char why[160];
    int err = coil__faults_parse(spec, every, why, sizeof(why));
    if (err < 0) {
        fprintf(stderr, "coil: faults \"%s\": %s\n", spec, why);
        return err;
    }
    return install(loop->impl, every);
}

void coil__faults_get(coil_loop *loop, coil__fault_counts *out)
{
    struct coil__faults *f = loop->impl->faults;
    *out = f ? f->counts : (coil__fault_counts){ 0 };
}
