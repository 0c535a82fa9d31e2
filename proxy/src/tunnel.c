/*
 * After a protocol switch (101): bytes relayed both ways, as borrowed views,
 * one direction per task. A side that ends its direction (FIN) has that
 * passed on as a half-close; the tunnel ends when both directions did,
 * when either side fails, or when nothing moved either way for the idle
 * timeout (a silent direction is fine while the other one talks).
 */
#include <errno.h>
#include <sys/socket.h>

#include "forward.h"

typedef struct direction {
    coil_sock *from, *to;
    coil_buf early;            /* sent first */
    uint64_t bytes;
    bool failed;
    struct tunnel *t;
} direction;

typedef struct tunnel {
    coil_loop *loop;
    int64_t idle_ns;
    int64_t last_ns;           /* last time a byte moved, either way */
    direction up, down;
} tunnel;

static void fail_both(tunnel *t)
{
    /* Whatever the other direction waits for ends now. */
    coil_shutdown(t->up.from, SHUT_RDWR);
    coil_shutdown(t->up.to, SHUT_RDWR);
}

static int relay(direction *d)
{
    tunnel *t = d->t;
    coil_buf b = d->early;
    d->early = (coil_buf){ 0 };
    for (;;) {
        if (b.len) {
            size_t n = b.len;
            if (coil_send_buf(d->to, &b, coil_deadline_in(t->loop, t->idle_ns)) < 0)
                break;
            d->bytes += n;
            t->last_ns = coil_now(t->loop);
        } else {
            coil_buf_release(&b);
        }
        ssize_t n = coil_recv_buf(d->from, &b, t->last_ns + t->idle_ns);
        if (n == 0) {
            coil_shutdown(d->to, SHUT_WR);
            return 0;
        }
        if (n == -ETIMEDOUT && coil_now(t->loop) < t->last_ns + t->idle_ns)
            continue; /* the other direction moved meanwhile */
        if (n < 0)
            break;
    }
    coil_buf_release(&b);
    d->failed = true;
    fail_both(t);
    return 0;
}

static int relay_task(void *arg)
{
    return relay(arg);
}

void px_tunnel(px_core *core, coil_sock *client, coil_buf *client_early, coil_sock *up,
               coil_buf *up_early, int64_t idle_ns, uint64_t *bytes_up, uint64_t *bytes_down)
{
    tunnel t = { .loop = core->loop, .idle_ns = idle_ns, .last_ns = coil_now(core->loop) };
    t.up = (direction){ .from = client, .to = up, .early = *client_early, .t = &t };
    t.down = (direction){ .from = up, .to = client, .early = *up_early, .t = &t };
    *client_early = *up_early = (coil_buf){ 0 };
    /* Multishot receives would read ahead of a slow peer: one receive at a
     * time keeps the backpressure in the kernel. */
    coil_sock_rx_single(client, true);
    coil_sock_rx_single(up, true);
    coil_task *down_task = NULL;
    if (coil_spawn(core->loop, relay_task, &t.down, &down_task) < 0) {
        coil_buf_release(&t.up.early);
        coil_buf_release(&t.down.early);
        *bytes_up = *bytes_down = 0;
        return;
    }
    relay(&t.up);
    if (coil_cancelled())
        fail_both(&t);
    coil_join_shielded(down_task, NULL);
    *bytes_up = t.up.bytes;
    *bytes_down = t.down.bytes;
}
