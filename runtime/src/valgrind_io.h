/*
 * What Valgrind cannot see of io_uring, told to it.
 *
 * Memory. memcheck follows memory through the system calls it wraps, but
 * io_uring moves bytes outside them: a receive fills its buffer while the
 * loop is elsewhere, so every received byte would read as undefined (and
 * each parse of it be reported); a send reads its buffer after the
 * submitting call returned, so sending undefined bytes would go
 * unreported. The backend marks what the kernel wrote when the completion
 * arrives and checks what it hands the kernel to send, as memcheck's own
 * wrappers of recv(2) and send(2) do.
 *
 * Threads. Valgrind runs one thread at a time and hands over only when a
 * thread enters a system call it knows may block, or after a long run of
 * its own. Valgrind 3.19 does not count io_uring_enter among those: a loop
 * asleep in its ring kept every other thread (coil_rt's starting thread,
 * its signal thread, the other cores) from running until a completion
 * woke it, so an idle coil-proxy never answered SIGTERM. Under Valgrind
 * the backend cuts a wait into slices of COIL__VALGRIND_SLICE_NS and calls
 * sched_yield(2), which Valgrind does hand over on, after each.
 *
 * Outside Valgrind each of these is a few no-op instructions (the hot paths
 * ask COIL__UNDER_VALGRIND() first, so nothing is computed for a mark);
 * without Valgrind's headers (or with COIL_NO_VALGRIND) it is nothing.
 */
#ifndef COIL_VALGRIND_IO_H
#define COIL_VALGRIND_IO_H

#if !defined(COIL_NO_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define COIL__KERNEL_WROTE(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define COIL__KERNEL_READS(p, n) ((void)VALGRIND_CHECK_MEM_IS_DEFINED((p), (n)))
#define COIL__UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef COIL__KERNEL_WROTE
#define COIL__KERNEL_WROTE(p, n) ((void)(p), (void)(n))
#define COIL__KERNEL_READS(p, n) ((void)(p), (void)(n))
#define COIL__UNDER_VALGRIND() 0
#endif

#define COIL__VALGRIND_SLICE_NS 10000000 /* 10 ms */

#endif
