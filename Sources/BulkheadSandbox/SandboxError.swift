import BulkheadSystem

/// The one error type of the sandbox module: what was being done, and the system error under it.
public struct SandboxError: Error, Sendable, CustomStringConvertible {
    /// Which part of spawning or entering the sandbox failed.
    public enum Code: String, Sendable {
        /// Creating the domain process (clone3, or a step in the child before execve).
        case spawn
        /// Waiting for, or signalling, a domain process.
        case process
        /// Mount namespace, empty root, pivot_root.
        case filesystem
        /// Hostname in the UTS namespace.
        case hostname
        /// setrlimit.
        case resourceLimit
        /// Groups, gid, uid.
        case identity
        /// Bounding set, capability sets, no_new_privs, dumpable, parent-death signal.
        case privileges
        /// Building or loading the seccomp filter (an unknown syscall name, libseccomp refused).
        case seccomp
    }

    public let code: Code
    /// What was being done, to what: `pivot_root into the empty root`, `seccomp rule for ioctl`.
    public let operation: String
    /// The failed system call, where there was one.
    public let underlyingError: SystemError?

    public init(_ code: Code, _ operation: String, underlyingError: SystemError? = nil) {
        self.code = code
        self.operation = operation
        self.underlyingError = underlyingError
    }

    public var description: String {
        if let underlyingError { return "sandbox (\(code.rawValue)): \(operation): \(underlyingError)" }
        return "sandbox (\(code.rawValue)): \(operation)"
    }
}

/// Runs `body` through the syscall funnel, turning its `SystemError` into a `SandboxError`.
@inline(__always)
func sandboxCall(
    _ code: SandboxError.Code, _ operation: @autoclosure () -> String, _ call: @autoclosure () -> String,
    _ body: () -> Int32
) throws(SandboxError) {
    do {
        try systemCall32(call(), body)
    } catch {
        throw SandboxError(code, operation(), underlyingError: error)
    }
}
