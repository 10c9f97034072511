#if canImport(Glibc)
import Glibc
#endif

extension SeccompPolicy {
    /// What every domain kind (blk, net, probe) calls after `Sandbox.enter`: the intersection of
    /// their working sets under `strace -f` (orchestration/scripts/seccomp-trace.sh), plus the
    /// stderr line a domain writes before it dies. A domain is one thread (no `clone` is ever
    /// allowed), so nothing here serves another thread: no `futex`, no `exit`.
    ///
    /// Not here, on purpose: `open`, `socket`, `ioctl`, `clone`/`fork`/`execve`, `kill`, and
    /// the calls of glibc's `abort()` (`rt_sigprocmask`, `gettid`, `tgkill`): a domain is pid 1
    /// of its namespace, where a raised SIGABRT is ignored anyway, so an abort (a glibc heap
    /// check, a Swift runtime error) ends in SIGSYS at its first call, recorded as a seccomp
    /// violation. Swift's own traps (`fatalError`, overflow) are `ud2`: SIGILL, no call.
    public static let common = SeccompPolicy([
        // Memory. Domains are single-threaded: only the main arena, grown by brk; blocks of
        // M_MMAP_THRESHOLD (128 KiB) and more, and any block when brk cannot grow, by mmap.
        .init("brk", "malloc grows and trims its (only) arena"),
        // No PROT_EXEC: a domain never creates code.
        .init("mmap", "malloc of large blocks (blk WRITE_ZEROES' 1 MiB, O_DIRECT bounce buffers); the probe maps fd 5",
              when: [.init(2, .maskedEqual(mask: UInt64(PROT_EXEC), value: 0))]),
        // Waiting: glibc's poll() is the poll syscall on x86-64 (ppoll only for a timespec).
        .init("poll", "every main loop sleeps on its eventfds/pipes (blk/net: kicks and doorbell; probe: fd 4)"),
        // Identity and the end.
        .init("getpid", "the pid in Hello (blk/net run()) and in the probe's report"),
        .init("write", "stderr: the line a domain writes before it exits on an error (VirtioDomain.fatal, the probe's fail, Swift runtime errors)",
              when: [.fileDescriptor(2)]),
        .init("exit_group", "exit(): the process ends"),
    ])
}
