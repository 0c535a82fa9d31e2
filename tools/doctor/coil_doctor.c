/*
 * coil-doctor: what this machine offers coil, and what to fix.
 *
 * Reports the kernel, whether io_uring can be set up (and if not, why:
 * kernel.io_uring_disabled, a seccomp filter, memlock, an old kernel), which
 * opcodes and setup flags coil uses are there, which backend coil would
 * pick, and the limits that matter to a server (open files, somaxconn, pipe
 * sizes, map count). Every problem comes with its fix. Exit status: 0 when
 * coil can run (on either backend), 1 when it cannot.
 */
#include <errno.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "coil/coil.h"

static int problems;

static void say(const char *what, const char *fmt, ...)
{
    va_list ap;
    printf("%-28s ", what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void problem(const char *fix_fmt, ...)
{
    va_list ap;
    problems++;
    printf("%-28s ", "  fix:");
    va_start(ap, fix_fmt);
    vprintf(fix_fmt, ap);
    va_end(ap);
    printf("\n");
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static const char *seccomp_mode(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    const char *mode = "unknown";
    while (f && fgets(line, sizeof(line), f)) {
        int m;
        if (sscanf(line, "Seccomp: %d", &m) == 1) {
            mode = m == 0 ? "none" : m == 1 ? "strict" : "filter";
            break;
        }
    }
    if (f)
        fclose(f);
    return mode;
}

static void explain_setup_failure(int err)
{
    long disabled = read_long("/proc/sys/kernel/io_uring_disabled");
    const char *sc = seccomp_mode();
    switch (-err) {
    case EPERM:
        if (disabled == 2)
            problem("sysctl kernel.io_uring_disabled=2 turns io_uring off: set it to 0");
        else if (disabled == 1)
            problem("sysctl kernel.io_uring_disabled=1 limits io_uring to the io_uring_group: "
                    "set it to 0 or add this user to kernel.io_uring_group");
        else if (strcmp(sc, "none") != 0)
            problem("a seccomp filter (%s) refuses io_uring_setup, as Docker's default profile "
                    "does: allow io_uring_setup/io_uring_enter/io_uring_register in the profile",
                    sc);
        else
            problem("io_uring_setup was refused (EPERM): check LSM policy (SELinux/AppArmor)");
        break;
    case ENOSYS:
        problem("the kernel has no io_uring (built without CONFIG_IO_URING, or older than 5.1): "
                "use a kernel from 6.0 on");
        break;
    case ENOMEM:
        problem("not enough locked memory for the ring (kernels before 5.12 charge RLIMIT_MEMLOCK): "
                "raise ulimit -l or use a newer kernel");
        break;
    default:
        problem("io_uring_setup failed: %s", strerror(-err));
    }
    printf("%-28s coil falls back to epoll: it works, with a system call per operation\n", "");
}

static void check_uring(void)
{
    struct io_uring ring;
    struct io_uring_params p;
    static const struct {
        unsigned flags;
        const char *name;
    } flags[] = {
        { IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER+DEFER_TASKRUN" },
        { IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN" },
        { IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_COOP_TASKRUN, "TASKRUN_FLAG" },
        { IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL" },
    };
    memset(&p, 0, sizeof(p));
    int err = io_uring_queue_init_params(8, &ring, &p);
    if (err < 0) {
        say("io_uring", "cannot be set up: %s", strerror(-err));
        explain_setup_failure(err);
        return;
    }
    say("io_uring", "available (features 0x%x)", p.features);
    io_uring_queue_exit(&ring);
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        memset(&p, 0, sizeof(p));
        p.flags = flags[i].flags;
        int e = io_uring_queue_init_params(8, &ring, &p);
        say("  setup flag", "%-28s %s", flags[i].name, e == 0 ? "yes" : "no (coil does without)");
        if (e == 0)
            io_uring_queue_exit(&ring);
    }
    struct io_uring_probe *probe = io_uring_get_probe();
    static const struct {
        int op;
        const char *name;
    } ops[] = {
        { IORING_OP_ACCEPT, "ACCEPT" },       { IORING_OP_CONNECT, "CONNECT" },
        { IORING_OP_RECV, "RECV" },           { IORING_OP_SEND, "SEND" },
        { IORING_OP_SENDMSG, "SENDMSG" },     { IORING_OP_POLL_ADD, "POLL_ADD" },
        { IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL" }, { IORING_OP_MSG_RING, "MSG_RING" },
        { IORING_OP_PROVIDE_BUFFERS, "PROVIDE_BUFFERS" },
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        bool ok = probe && io_uring_opcode_supported(probe, ops[i].op);
        say("  opcode", "%-28s %s", ops[i].name, ok ? "yes" : "no");
        if (!ok && ops[i].op != IORING_OP_PROVIDE_BUFFERS && ops[i].op != IORING_OP_MSG_RING)
            problem("opcode %s is missing: coil's io_uring backend needs it; use a kernel from 6.0 on",
                    ops[i].name);
    }
    if (probe)
        io_uring_free_probe(probe);
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) == 0)
        sscanf(u.release, "%d.%d", &ma, &mi);
    bool ms = ma > 6 || (ma == 6 && mi >= 0);
    say("  multishot recv/accept", "%s", ms ? "yes (kernel 6.0 or later)"
                                            : "no: single-shot receives are used (kernel < 6.0)");
}

static void check_limits(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    say("open files (ulimit -n)", "%llu (hard %llu)", (unsigned long long)rl.rlim_cur,
        (unsigned long long)rl.rlim_max);
    if (rl.rlim_cur < 65536)
        problem("each connection is a descriptor (two through the proxy): raise ulimit -n to "
                "65536 or more (LimitNOFILE= in a systemd unit)");
    long somaxconn = read_long("/proc/sys/net/core/somaxconn");
    say("net.core.somaxconn", "%ld", somaxconn);
    if (somaxconn >= 0 && somaxconn < 1024)
        problem("listen backlogs are capped at %ld: sysctl -w net.core.somaxconn=4096", somaxconn);
    long pipe_max = read_long("/proc/sys/fs/pipe-max-size");
    say("fs.pipe-max-size", "%ld", pipe_max);
    if (pipe_max >= 0 && pipe_max < 262144)
        problem("splice pipes are sized up to 256 KiB: sysctl -w fs.pipe-max-size=1048576");
    long soft = read_long("/proc/sys/fs/pipe-user-pages-soft");
    say("fs.pipe-user-pages-soft", "%ld%s", soft,
        geteuid() == 0 ? " (root is not bound by it)" : "");
    if (geteuid() != 0 && soft >= 0 && soft < 16384)
        problem("past this many pipe pages a user's pipes shrink to one page: "
                "sysctl -w fs.pipe-user-pages-soft=65536");
    long maps = read_long("/proc/sys/vm/max_map_count");
    say("vm.max_map_count", "%ld (about %ld busy tasks: two mappings per stack)", maps, maps / 2);
    getrlimit(RLIMIT_MEMLOCK, &rl);
    say("locked memory (ulimit -l)", "%llu bytes", (unsigned long long)rl.rlim_cur);
}

static void check_backend(void)
{
    coil_loop loop;
    setenv("COIL_QUIET", "1", 0);
    coil_loop_options o;
    coil_loop_options_default(&o);
    int err = coil_loop_init(&loop, &o);
    if (err < 0) {
        say("coil would use", "nothing: %s", strerror(-err));
        problem("coil cannot start a loop on this machine");
        return;
    }
    const char *env = getenv("COIL_BACKEND");
    say("coil would use", "%s%s%s%s", coil_loop_backend(&loop), env ? " (COIL_BACKEND=" : "",
        env ? env : "", env ? ")" : "");
    coil_loop_exit(&loop);
}

/* Kept in step with man/coil-doctor.1 (tests/install/man_test.py checks it). */
static void usage(FILE *f)
{
    fprintf(f, "usage: coil-doctor\n"
               "       coil-doctor --help\n"
               "\n"
               "Reports what this machine offers coil (kernel, seccomp, io_uring setup flags and\n"
               "opcodes, the backend coil would pick, limits) and how to fix what is missing.\n"
               "\n"
               "  -h, --help    print this help and exit\n"
               "\n"
               "COIL_BACKEND=io_uring|epoll in the environment is honoured as coil programs do.\n"
               "Exit status: 0 coil can run here, 1 it cannot, 2 wrong usage.\n"
               "See coil-doctor(1).\n");
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        bool help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    struct utsname u;
    uname(&u);
    say("kernel", "%s %s", u.sysname, u.release);
    say("seccomp", "%s", seccomp_mode());
    say("kernel.io_uring_disabled", "%ld", read_long("/proc/sys/kernel/io_uring_disabled"));
    check_uring();
    check_backend();
    check_limits();
    printf("\n%d thing(s) to fix\n", problems);
    coil_loop loop;
    if (coil_loop_init(&loop, NULL) < 0)
        return 1;
    coil_loop_exit(&loop);
    return 0;
}
