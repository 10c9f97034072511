// C for the driver-domain sandbox.
//
// Two things live here: the code that must run in a new process between clone3 and execve
// (moving fds to fixed numbers, resetting signals, the parent-death signal), which cannot be
// Swift because it runs in a copy of a multi-threaded process where only raw system calls are
// safe; and fixed-argument wrappers for calls Swift cannot make (variadic or glibc-less:
// pivot_root, capset, waitid on a pidfd, pidfd_send_signal). Everything else -- the order of
// the sandbox steps, the seccomp policy -- is Swift, in BulkheadSandbox.
#ifndef CBULKHEADSANDBOX_H
#define CBULKHEADSANDBOX_H

#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

// MARK: namespaces (clone flags)

static const uint64_t BH_SANDBOX_CLONE_NEWNS = CLONE_NEWNS;
static const uint64_t BH_SANDBOX_CLONE_NEWPID = CLONE_NEWPID;
static const uint64_t BH_SANDBOX_CLONE_NEWIPC = CLONE_NEWIPC;
static const uint64_t BH_SANDBOX_CLONE_NEWNET = CLONE_NEWNET;
static const uint64_t BH_SANDBOX_CLONE_NEWUTS = CLONE_NEWUTS;
static const uint64_t BH_SANDBOX_CLONE_NEWCGROUP = CLONE_NEWCGROUP;

// MARK: spawning

/// The most fds (standard streams included) that bh_sandbox_spawn places in the child.
#define BH_SANDBOX_MAX_FDS 64

/// What the child was doing when it failed before execve; sent over the error pipe.
enum bh_sandbox_spawn_step {
    BH_SANDBOX_STEP_PDEATHSIG = 1,
    BH_SANDBOX_STEP_PARENT_GONE = 2,
    BH_SANDBOX_STEP_FDS = 3,
    BH_SANDBOX_STEP_SIGNALS = 4,
    BH_SANDBOX_STEP_SETSID = 5,
    BH_SANDBOX_STEP_EXEC = 6,
};

/// The message a child that failed before execve writes to the error pipe.
struct bh_sandbox_spawn_failure {
    int32_t step;  // enum bh_sandbox_spawn_step
    int32_t error; // errno
};

/// Starts `path` with `argv`/`envp` in a new process (clone3 with CLONE_PIDFD plus
/// `namespace_flags`). In the child, before execve: PR_SET_PDEATHSIG(SIGKILL), `fds[i]` is
/// moved to number `i` for every i < `fd_count` (overlaps are safe: every source is first
/// duplicated above all sources and targets), every other fd is closed (close_range), every
/// signal disposition is reset to SIG_DFL and the mask emptied, and a new session is started.
///
/// Returns the child's pid (in the caller's pid namespace) and stores its pidfd (close-on-exec)
/// in `*pidfd_out` and the read end of the error pipe (close-on-exec) in `*error_pipe_out`:
/// end-of-file there means execve succeeded; otherwise one `struct bh_sandbox_spawn_failure`
/// arrives and the child exits with 127 (the caller reaps it). Returns -1 with errno set when
/// the child could not be created.
int bh_sandbox_spawn(const char *path, char *const argv[], char *const envp[], const int *fds,
                     int fd_count, uint64_t namespace_flags, int *pidfd_out,
                     int *error_pipe_out);

// MARK: fixed-argument wrappers

static inline int bh_sandbox_pivot_root(const char *new_root, const char *put_old) {
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

/// Clears the effective, permitted and inheritable capability sets of the calling thread
/// (capset, version 3, both 32-bit words).
int bh_sandbox_clear_capabilities(void);

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/// waitid(P_PIDFD, pidfd, ..., options): on success stores si_pid, si_code (CLD_EXITED,
/// CLD_KILLED, CLD_DUMPED, ...) and si_status. si_pid is 0 under WNOHANG while the process runs.
int bh_sandbox_waitid(int pidfd, int options, int *pid_out, int *code_out, int *status_out);

/// ptrace(PTRACE_ATTACH, pid) (variadic in glibc). Used by the probe domain to show it fails.
static inline long bh_sandbox_ptrace_attach(int pid) {
    return syscall(SYS_ptrace, (long)PTRACE_ATTACH, (long)pid, 0L, 0L);
}

static inline int bh_sandbox_pidfd_send_signal(int pidfd, int signo) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signo, NULL, 0);
}

/// The abbreviation of a signal ("SEGV", "SYS"), or NULL for an unknown number.
const char *bh_sandbox_signal_abbreviation(int signo);

/// The name of an errno value ("ENOENT"), or NULL for an unknown number.
const char *bh_sandbox_errno_name(int error);


// setrlimit with plain ints (the resource type differs between C dialects).
static inline int bh_sandbox_setrlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit limit = {.rlim_cur = soft, .rlim_max = hard};
    return setrlimit(resource, &limit);
}
static const int BH_SANDBOX_RLIMIT_NOFILE = RLIMIT_NOFILE;
static const int BH_SANDBOX_RLIMIT_NPROC = RLIMIT_NPROC;
static const int BH_SANDBOX_RLIMIT_CORE = RLIMIT_CORE;
static const int BH_SANDBOX_RLIMIT_DATA = RLIMIT_DATA;
static const int BH_SANDBOX_RLIMIT_FSIZE = RLIMIT_FSIZE;
static const int BH_SANDBOX_RLIMIT_MEMLOCK = RLIMIT_MEMLOCK;

// MARK: libseccomp constants (function-like or unsigned macros)

static const uint32_t BH_SCMP_ACT_KILL_PROCESS = SCMP_ACT_KILL_PROCESS;
static const uint32_t BH_SCMP_ACT_ALLOW = SCMP_ACT_ALLOW;
static const uint32_t BH_SCMP_ACT_LOG = SCMP_ACT_LOG;
static inline uint32_t bh_scmp_act_errno(uint16_t error) { return SCMP_ACT_ERRNO(error); }

#endif
