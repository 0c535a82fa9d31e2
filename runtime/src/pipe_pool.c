/*
 * Per-loop pool of pipes for splice. Creating a pipe costs two descriptors
 * and a system call, so drained pipes are kept for reuse; a pipe that may
 * still hold bytes (an error mid-splice) is closed instead, never reused.
 * The pool is bounded: pipes beyond pipe-user-pages-soft shrink to one page.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop_impl.h"

#define PIPE_POOL_MAX 16
#define PIPE_BYTES (256 * 1024)

int coil__pipe_get(struct coil__loop *l, coil__pipe *p)
{
    if (l->npipes) {
        *p = l->pipes[--l->npipes];
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    /* A larger pipe moves more per splice; failure (pipe-max-size) keeps the
     * default size, which still works. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
    p->rd = fds[0];
    p->wr = fds[1];
    return 0;
}

void coil__pipe_put(struct coil__loop *l, coil__pipe p, bool clean)
{
    if (clean && !l->exiting) {
        if (l->npipes == l->pipes_cap && l->pipes_cap < PIPE_POOL_MAX) {
            unsigned cap = l->pipes_cap ? l->pipes_cap * 2 : 4;
            coil__pipe *np = realloc(l->pipes, cap * sizeof(*np));
            if (np) {
                l->pipes = np;
                l->pipes_cap = cap;
            }
        }
        if (l->npipes < l->pipes_cap) {
            l->pipes[l->npipes++] = p;
            return;
        }
    }
    close(p.rd);
    close(p.wr);
}

void coil__pipes_exit(struct coil__loop *l)
{
    while (l->npipes) {
        coil__pipe p = l->pipes[--l->npipes];
        close(p.rd);
        close(p.wr);
    }
    free(l->pipes);
    l->pipes = NULL;
    l->pipes_cap = 0;
}
