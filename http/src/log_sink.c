/*
 * A log sink: cores hand it whole batches of log lines, a thread of its own
 * writes them. write(2) to a file on a slow disk, or to a pipe nobody
 * reads, may block for as long as it likes: it must never do so on a core.
 * A core holds the lock only to copy its batch in; when more than
 * max_pending bytes wait, new batches are dropped (and counted) rather
 * than let the log hold back the requests it records.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coil/http.h"

typedef struct batch {
    struct batch *next;
    size_t len;
    char data[];
} batch;

struct coil_http_log_sink {
    int fd;
    size_t max_pending;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    batch *head, *tail;        /* under lock */
    size_t pending;            /* bytes queued, under lock */
    bool stopping;             /* under lock */
    uint64_t dropped;          /* bytes refused, under lock */
    uint64_t write_errors;     /* writer thread only, read after stop */
};

static void write_all(coil_http_log_sink *s, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(s->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            s->write_errors++;
            return; /* a broken log must not take the server down */
        }
        p += n;
        len -= (size_t)n;
    }
}

static void *writer(void *arg)
{
    coil_http_log_sink *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->ready, &s->lock);
        batch *b = s->head;
        if (!b)
            break; /* stopping, everything written */
        s->head = s->tail = NULL;
        s->pending = 0;
        pthread_mutex_unlock(&s->lock);
        while (b) {
            batch *next = b->next;
            write_all(s, b->data, b->len);
            free(b);
            b = next;
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int coil_http_log_sink_start(int fd, size_t max_pending, coil_http_log_sink **out)
{
    coil_http_log_sink *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = fd;
    s->max_pending = max_pending ? max_pending : 16u << 20;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->ready, NULL);
    /* The writer takes no signals: they belong to whoever handles them
     * for the process (coil_rt's signal thread, or the embedder). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&s->thread, NULL, writer, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_cond_destroy(&s->ready);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -err;
    }
    *out = s;
    return 0;
}

int coil_http_log_sink_put(coil_http_log_sink *s, const char *data, size_t len)
{
    if (!len)
        return 0;
    pthread_mutex_lock(&s->lock);
    bool room = s->pending + len <= s->max_pending && !s->stopping;
    pthread_mutex_unlock(&s->lock);
    batch *b = room ? malloc(sizeof(*b) + len) : NULL;
    if (b) {
        b->next = NULL;
        b->len = len;
        memcpy(b->data, data, len);
    }
    pthread_mutex_lock(&s->lock);
    if (b && s->pending + len <= s->max_pending && !s->stopping) {
        if (s->tail)
            s->tail->next = b;
        else
            s->head = b;
        s->tail = b;
        s->pending += len;
        b = NULL;
        pthread_cond_signal(&s->ready);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    s->dropped += len;
    pthread_mutex_unlock(&s->lock);
    free(b);
    return -ENOBUFS;
}

uint64_t coil_http_log_sink_dropped(coil_http_log_sink *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t d = s->dropped;
    pthread_mutex_unlock(&s->lock);
    return d;
}

void coil_http_log_sink_stop(coil_http_log_sink *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->ready);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->ready);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
