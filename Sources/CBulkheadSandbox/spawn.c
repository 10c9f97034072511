// The part of spawning a driver domain that runs between clone3 and execve. Only raw system
// calls here: the child is a copy of a multi-threaded process, so no locks, no malloc.
#define _GNU_SOURCE 1
#include "CBulkheadSandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>

// struct clone_args, version 0 (CLONE_ARGS_SIZE_VER0 = 64 bytes), declared here rather than
// taken from <linux/sched.h>, which clashes with glibc's <sched.h>.
struct bh_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
};

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

__attribute__((noreturn)) static void bh_child_fail(int error_pipe, int32_t step) {
    struct bh_sandbox_spawn_failure failure = {.step = step, .error = errno};
    ssize_t ignored = write(error_pipe, &failure, sizeof failure);
    (void)ignored;
    _exit(127);
}

__attribute__((noreturn)) static void bh_child(const char *path, char *const argv[],
                                               char *const envp[], const int *fds,
                                               int fd_count, int error_pipe) {
    // Die with the thread that spawned us. If the parent died before this prctl, nobody reads
    // the error pipe any more: poll reports POLLERR on a pipe without readers.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0UL, 0UL, 0UL) != 0)
        bh_child_fail(error_pipe, BH_SANDBOX_STEP_PDEATHSIG);
    struct pollfd lifeline = {.fd = error_pipe, .events = POLLOUT};
    if (poll(&lifeline, 1, 0) == 1 && (lifeline.revents & POLLERR)) _exit(127);

    // Move fds[i] to i. First duplicate every source (and the error pipe) above the highest
    // number in play, so that no dup2 below can overwrite a source not yet moved.
    int floor = fd_count;
    for (int i = 0; i < fd_count; i++)
        if (fds[i] >= floor) floor = fds[i] + 1;
    if (error_pipe >= floor) floor = error_pipe + 1;
    int stash[BH_SANDBOX_MAX_FDS];
    int pipe_copy = fcntl(error_pipe, F_DUPFD_CLOEXEC, floor);
    if (pipe_copy < 0) bh_child_fail(error_pipe, BH_SANDBOX_STEP_FDS);
    error_pipe = pipe_copy;
    for (int i = 0; i < fd_count; i++) {
        stash[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, floor);
        if (stash[i] < 0) bh_child_fail(error_pipe, BH_SANDBOX_STEP_FDS);
    }
    for (int i = 0; i < fd_count; i++) {
        // dup2 clears FD_CLOEXEC on the new number: it survives execve.
        if (dup2(stash[i], i) != i) bh_child_fail(error_pipe, BH_SANDBOX_STEP_FDS);
    }
    // Close everything else but the error pipe (close-on-exec: execve closes it, which the
    // parent reads as success).
    if (syscall(SYS_close_range, (unsigned)fd_count, (unsigned)error_pipe - 1, 0) != 0 ||
        syscall(SYS_close_range, (unsigned)error_pipe + 1, ~0U, 0) != 0)
        bh_child_fail(error_pipe, BH_SANDBOX_STEP_FDS);

    // Ignored signals survive execve, and so does the mask: reset both. (Handlers are reset by
    // execve itself. glibc refuses its two internal signals; that is harmless.)
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    for (int signo = 1; signo < NSIG; signo++) {
        if (signo == SIGKILL || signo == SIGSTOP) continue;
        (void)sigaction(signo, &default_action, NULL);
    }
    uint64_t empty_mask = 0;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty_mask, NULL, sizeof empty_mask) != 0)
        bh_child_fail(error_pipe, BH_SANDBOX_STEP_SIGNALS);

    // Own session and process group: the terminal's ^C goes to the core alone, and kill(0, ...)
    // in the domain reaches nothing of the core's.
    if (setsid() < 0) bh_child_fail(error_pipe, BH_SANDBOX_STEP_SETSID);

    execve(path, argv, envp);
    bh_child_fail(error_pipe, BH_SANDBOX_STEP_EXEC);
}

int bh_sandbox_spawn(const char *path, char *const argv[], char *const envp[], const int *fds,
                     int fd_count, uint64_t namespace_flags, int *pidfd_out,
                     int *error_pipe_out) {
    if (fd_count < 0 || fd_count > BH_SANDBOX_MAX_FDS) {
        errno = EINVAL;
        return -1;
    }
    int error_pipe[2];
    if (pipe2(error_pipe, O_CLOEXEC) != 0) return -1;

    int pidfd = -1;
    struct bh_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_PIDFD | namespace_flags;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(error_pipe[0]);
        bh_child(path, argv, envp, fds, fd_count, error_pipe[1]);
    }
    int saved = errno;
    close(error_pipe[1]);
    if (pid < 0) {
        close(error_pipe[0]);
        errno = saved;
        return -1;
    }
    *pidfd_out = pidfd;
    *error_pipe_out = error_pipe[0];
    return (int)pid;
}

int bh_sandbox_clear_capabilities(void) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &header, data);
}

int bh_sandbox_waitid(int pidfd, int options, int *pid_out, int *code_out, int *status_out) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, options) != 0) return -1;
    *pid_out = info.si_pid;
    *code_out = info.si_code;
    *status_out = info.si_status;
    return 0;
}

const char *bh_sandbox_signal_abbreviation(int signo) { return sigabbrev_np(signo); }

const char *bh_sandbox_errno_name(int error) { return strerrorname_np(error); }
