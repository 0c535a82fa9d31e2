/*
 * Private: fault injection. A loop whose faults are configured (COIL_FAULTS
 * in the environment at coil_loop_init, or coil__faults_set from a test)
 * runs on a wrapper of its backend that makes chosen socket operations fail
 * or come up short, by deterministic counters, so that a failing run can be
 * repeated. Without faults the wrapper is not installed: l->be is the real
 * backend and nothing here runs.
 *
 * Grammar (COIL_FAULTS and coil__faults_set):
 *
 *   spec  = item *( "," item )
 *   item  = kind "=" every        every: decimal 0 .. 1000000000, 0 = off
 *   kind  = "send_short" / "send_reset" / "recv_short" / "recv_reset"
 *         / "recv_nobufs" / "accept_emfile"
 *
 * No spaces, no key twice. "kind=N" makes every N-th call of its class a
 * fault: sends (backend sendmsg), receives (coil_recv and coil_recv_buf) and
 * accepts each have one call counter. See docs/reliability.md for what each
 * kind exercises.
 */
#ifndef COIL_FAULT_H
#define COIL_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "coil/loop.h"

struct coil__loop;

enum coil__fault_kind {
    COIL__FAULT_SEND_SHORT,
    COIL__FAULT_SEND_RESET,
    COIL__FAULT_RECV_SHORT,
    COIL__FAULT_RECV_RESET,
    COIL__FAULT_RECV_NOBUFS,
    COIL__FAULT_ACCEPT_EMFILE,
    COIL__FAULT_KINDS,
};

/* What the wrapper saw since the faults were last set. */
typedef struct coil__fault_counts {
    uint64_t injected[COIL__FAULT_KINDS];
    uint64_t sends, recvs, accepts;   /* calls that went through the wrapper */
    uint64_t accept_errors;           /* accepts that failed for real (EMFILE, ...) */
} coil__fault_counts;

/* Parses spec into every[] (one period per kind, 0 = off). Returns 0, or
 * -EINVAL with a reason in err (NUL-terminated, errlen bytes). */
int coil__faults_parse(const char *spec, uint32_t every[COIL__FAULT_KINDS], char *err,
                       size_t errlen);

/* Loop init: installs the wrapper when COIL_FAULTS is set and not empty.
 * Returns 0, -EINVAL (bad spec, logged to stderr), -ENOMEM. */
int coil__faults_env(struct coil__loop *l);

/* Loop exit: prints the counts (one stderr line, when COIL_FAULTS set them
 * up), removes the wrapper, frees its state. */
void coil__faults_exit(struct coil__loop *l);

/* Tests: sets loop's faults to spec (installing the wrapper if needed) and
 * zeroes the counts. "" keeps the wrapper, injecting nothing, still
 * counting calls. Returns 0, -EINVAL, -ENOMEM. Owner thread, outside a
 * backend call. */
int coil__faults_set(coil_loop *loop, const char *spec);

/* Tests: the counts since coil__faults_set (all zero without a wrapper).
 * Owner thread. */
void coil__faults_get(coil_loop *loop, coil__fault_counts *out);

/* "send_short", ...: the kind's name in the grammar. */
const char *coil__fault_name(enum coil__fault_kind k);

#endif
