import BulkheadSystem
import CBulkheadSandbox
#if canImport(Glibc)
import Glibc
#endif

/// Starts driver-domain processes (the core's side of the sandbox).
///
/// File descriptor convention: the child gets `standardInput`, `standardOutput` and
/// `standardError` at 0, 1 and 2 (/dev/null where nil), `fds[i]` at number `3 + i`, and
/// nothing else: every other fd of the core is closed in the child before `execve`. The
/// caller's fds may be close-on-exec or not, and may already sit at numbers in the target
/// range: they are moved safely.
public enum DomainProcess {
    /// The `argv[0]` of every domain, so that `ps` shows `bulkhead-domain blk blk0`.
    public static let processName = "bulkhead-domain"

    /// The environment a domain gets by default. The Swift runtime's crash handler is off: it
    /// would try to start `swift-backtrace` after a crash, which seccomp forbids, so a crash
    /// would be recorded as a seccomp violation instead of the signal that caused it.
    public static let defaultEnvironment = ["SWIFT_BACKTRACE=enable=no"]

    /// The most fds `spawn` can pass, standard streams included.
    public static let maximumFileDescriptors = Int(BH_SANDBOX_MAX_FDS)

    /// Starts `executable` as `processName arguments...` in new `namespaces`, with `fds` at
    /// 3, 4, ... and the parent-death signal set to SIGKILL.
    ///
    /// The parent-death signal follows the *thread* that calls `spawn`: call it from a thread
    /// that lives as long as the core (the supervisor's), never from a short-lived one.
    /// Throws when the process could not be created or `execve` failed (the child is reaped).
    public static func spawn(
        executable: String,
        arguments: [String],
        fds: [Int32],
        namespaces: NamespaceSet = .domain,
        environment: [String] = DomainProcess.defaultEnvironment,
        processName: String = DomainProcess.processName,
        standardInput: Int32? = nil,
        standardOutput: Int32? = nil,
        standardError: Int32? = 2
    ) throws(SandboxError) -> SpawnedDomain {
        guard fds.count + 3 <= maximumFileDescriptors else {
            throw SandboxError(.spawn, "start \(executable): \(fds.count) fds, at most \(maximumFileDescriptors - 3)")
        }
        let devNull: FileDescriptor
        do {
            devNull = try FileDescriptor.open("/dev/null", flags: O_RDWR)
        } catch {
            throw SandboxError(.spawn, "start \(executable): open /dev/null for standard streams", underlyingError: error)
        }
        let null = devNull.rawValue
        let childFds = [standardInput ?? null, standardOutput ?? null, standardError ?? null] + fds

        let argv = CStringArray([processName] + arguments)
        let envp = CStringArray(environment)
        var pidfd: Int32 = -1
        var errorPipe: Int32 = -1
        let pid = childFds.withUnsafeBufferPointer { fdBuffer in
            // SAFETY: argv/envp are NULL-terminated arrays of C strings that outlive the call;
            // fdBuffer holds childFds.count valid entries; pidfd/errorPipe are written only on
            // success.
            bh_sandbox_spawn(
                executable, argv.pointers, envp.pointers, fdBuffer.baseAddress, Int32(fdBuffer.count),
                namespaces.rawValue, &pidfd, &errorPipe)
        }
        argv.free()
        envp.free()
        _ = consume devNull  // kept open until the child has its copies
        if pid < 0 {
            throw SandboxError(
                .spawn, "start \(executable) (clone3, namespaces 0x\(String(namespaces.rawValue, radix: 16)))",
                underlyingError: SystemError(call: "clone3", errno: .current))
        }
        let domain = SpawnedDomain(pid: pid, pidfd: FileDescriptor(owning: pidfd))
        let errorReader = FileDescriptor(owning: errorPipe)

        // End of file on the error pipe: execve succeeded (it closed the child's end).
        var failure = bh_sandbox_spawn_failure()
        let count: Int
        do {
            count = try withUnsafeMutableBytes(of: &failure) { bytes throws(SystemError) in
                try errorReader.read(into: bytes)
            }
        } catch {
            _ = try? domain.kill(signal: SIGKILL)
            _ = try? domain.wait()
            throw SandboxError(.spawn, "start \(executable): read the child's error pipe", underlyingError: error)
        }
        if count == 0 { return domain }
        _ = try? domain.wait()
        let step: String
        switch failure.step {
        case Int32(BH_SANDBOX_STEP_PDEATHSIG.rawValue): step = "prctl(PR_SET_PDEATHSIG)"
        case Int32(BH_SANDBOX_STEP_FDS.rawValue): step = "moving fds \(fds) to 3...\(fds.count + 2)"
        case Int32(BH_SANDBOX_STEP_SIGNALS.rawValue): step = "resetting the signal mask"
        case Int32(BH_SANDBOX_STEP_SETSID.rawValue): step = "setsid"
        case Int32(BH_SANDBOX_STEP_EXEC.rawValue): step = "execve(\(executable))"
        default: step = "step \(failure.step)"
        }
        throw SandboxError(
            .spawn, "start \(executable): child failed before running it",
            underlyingError: SystemError(call: step, errno: Errno(rawValue: failure.error)))
    }
}

/// A running (or finished but not yet reaped) domain process. Owns its pidfd.
///
/// The pidfd becomes readable when the process ends; `wait()` then reaps it. Drop without
/// `wait()` and it stays a zombie until the core reaps it some other way.
public struct SpawnedDomain: ~Copyable, Sendable {
    /// The pid in the core's pid namespace (the domain sees itself as 1).
    public let pid: Int32
    /// Readable (poll/epoll) when the process has ended.
    public let pidfd: FileDescriptor

    public init(pid: Int32, pidfd: consuming FileDescriptor) {
        self.pid = pid
        self.pidfd = pidfd
    }

    /// Blocks until the process ends, reaps it and says how it ended.
    public func wait() throws(SandboxError) -> DomainTermination {
        guard let termination = try waitid(options: WEXITED) else {
            throw SandboxError(.process, "wait for domain pid \(pid): no status")
        }
        return termination
    }

    /// How the process ended, reaping it; nil while it still runs.
    public func poll() throws(SandboxError) -> DomainTermination? {
        try waitid(options: WEXITED | WNOHANG)
    }

    /// Sends `signal` through the pidfd (never to a recycled pid). Only `SIGKILL` ends a
    /// domain that has no handler for the signal: it is pid 1 of its pid namespace.
    public func kill(signal: Int32 = SIGKILL) throws(SandboxError) {
        try sandboxCall(.process, "signal domain pid \(pid)", "pidfd_send_signal(\(DomainTermination.signalName(signal)))") {
            bh_sandbox_pidfd_send_signal(pidfd.rawValue, signal)
        }
    }

    private func waitid(options: Int32) throws(SandboxError) -> DomainTermination? {
        var childPid: Int32 = 0, code: Int32 = 0, status: Int32 = 0
        try sandboxCall(.process, "wait for domain pid \(pid)", "waitid(P_PIDFD)") {
            bh_sandbox_waitid(pidfd.rawValue, options, &childPid, &code, &status)
        }
        if childPid == 0 { return nil }
        switch code {
        case Int32(CLD_EXITED): return .exited(status: status)
        case Int32(CLD_KILLED): return .signaled(signal: status, coreDumped: false)
        case Int32(CLD_DUMPED): return .signaled(signal: status, coreDumped: true)
        default: throw SandboxError(.process, "wait for domain pid \(pid): unexpected si_code \(code)")
        }
    }
}

/// A NULL-terminated `char *[]` for execve, freed explicitly.
private struct CStringArray {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: strings.count + 1)
        for (index, string) in strings.enumerated() {
            // SAFETY: index < count + 1 = capacity.
            (pointers + index).initialize(to: strdup(string))
        }
        (pointers + strings.count).initialize(to: nil)
    }

    func free() {
        for index in 0..<count { Glibc.free(pointers[index]) }
        pointers.deallocate()
    }
}
