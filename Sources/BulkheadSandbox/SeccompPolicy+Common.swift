#if canImport(Glibc)
import Glibc
#endif

extension SeccompPolicy {
    /// What every domain needs after `Sandbox.enter`: the Swift runtime and malloc, a loop
    /// that waits on eventfds with `ppoll`, reads and writes them, works on shared memory
    /// mapped from fds the core passed, and exits. Found by running the probe domain's idle
    /// loop under `strace -f` (see domains/probe/README.md). No `open`, no `socket`, no
    /// `ioctl`, no `clone`/`fork`/`execve`, no `kill`.
    public static let common = SeccompPolicy([
        // I/O on the fds the core passed (eventfd counters, the report pipe, logs on stderr).
        .init("read", "eventfd counters, pipes"),
        .init("write", "eventfd doorbells, stderr log lines"),
        .init("close", "dropping a passed fd the domain no longer needs"),
        // Waiting.
        .init("ppoll", "the main loop waits on eventfds (glibc's ppoll)"),
        .init("poll", "the main loop waits on eventfds (glibc's poll)"),
        .init("futex", "Swift runtime and glibc locks (contended only)"),
        .init("nanosleep", "backoff sleeps"),
        .init("clock_nanosleep", "glibc's nanosleep/usleep"),
        .init("clock_gettime", "when the vDSO falls back to the system call"),
        .init("sched_yield", "spin-lock backoff in the runtime"),
        // Memory. No PROT_EXEC: a domain never creates new code.
        .init("mmap", "malloc arenas and large blocks; mapping guest memory and the control region from passed memfds",
              when: [.init(2, .maskedEqual(mask: UInt64(PROT_EXEC), value: 0))]),
        .init("mprotect", "malloc grows arenas by mprotect",
              when: [.init(2, .maskedEqual(mask: UInt64(PROT_EXEC), value: 0))]),
        .init("munmap", "free of large blocks"),
        .init("mremap", "realloc of large blocks"),
        .init("madvise", "malloc trims freed memory (MADV_DONTNEED)"),
        .init("brk", "malloc's main heap"),
        // Signals: returning from a handler, glibc masking signals around internal work.
        .init("rt_sigreturn", "return from a signal handler"),
        .init("rt_sigprocmask", "glibc blocks signals around abort and some internal work"),
        .init("restart_syscall", "a call interrupted by SIGSTOP/SIGCONT resumes"),
        // Identity queries and randomness.
        .init("getpid", "glibc abort/raise"),
        .init("gettid", "glibc abort/raise"),
        .init("getrandom", "seeds Swift's Hasher (Dictionary/Set) and SystemRandomNumberGenerator"),
        // Ending.
        .init("exit", "a thread ends"),
        .init("exit_group", "the process ends"),
    ])
}
