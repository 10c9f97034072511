import BulkheadChannel
import BulkheadSandbox
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

extension SeccompPolicy {
    /// What `VirtioDomain.run` and `VirtioDomainServer` (shared by blk and net) call after
    /// `Sandbox.enter`: the control channel's doorbells, the irqfd, the standby's activation,
    /// the test hooks, and the end of the process. Each kind adds its queues' kick eventfds and
    /// its backend fd (`SeccompPolicy+Block.swift`, `SeccompPolicy+Net.swift`). Reads and writes
    /// are allowed on the fds that need them only: a domain cannot, for instance, write to a
    /// memfd it holds and grow it.
    static let virtioDomain = SeccompPolicy.common.adding([
        // Eventfds, each on its own number (DomainFileDescriptors).
        .init("read", "drains the core → domain doorbell (ControlChannel.finishSleeping)",
              when: [.fileDescriptor(DomainFileDescriptors.coreToDomainDoorbell)]),
        .init("read", "a warm standby reads its activation (VirtioDomain.run)",
              when: [.fileDescriptor(DomainFileDescriptors.standbyActivation)]),
        .init("write", "rings the domain → core doorbell when the core sleeps (ControlChannel.send)",
              when: [.fileDescriptor(DomainFileDescriptors.domainToCoreDoorbell)]),
        .init("write", "raises the guest's interrupt (interruptGuest: the irqfd)",
              when: [.fileDescriptor(DomainFileDescriptors.irqfd)]),
        // Time. clock_gettime is the vDSO and was never seen as a call; the kernel falls back
        // to the syscall when the clocksource has no vDSO mode (e.g. after a TSC marked unstable).
        .init("clock_gettime", "ControlChannel.monotonicNanoseconds (idle spin, stats cadence) when the vDSO falls back"),
        .init("clock_nanosleep", "usleep in the slow test hook (glibc's nanosleep is clock_nanosleep)"),
        .init("restart_syscall", "a poll interrupted by SIGSTOP/SIGCONT (or a cgroup freeze) resumes"),
        // Naming, test hooks, the end.
        .init("prctl", "PR_SET_NAME only: comm becomes the device id once sandboxed, or when a standby takes over",
              when: [.init(0, .equal(UInt64(PR_SET_NAME)))]),
        .init("pause", "test hook hang: stops serving until the watchdog kills it"),
        .init("close", "Shutdown: the backend, doorbell and control region fds close as the domain returns"),
        .init("munmap", "Shutdown: guest memory and the control region are unmapped; free of a malloc'd mmap block"),
    ])
}
