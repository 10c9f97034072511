import CBulkheadSandbox
#if canImport(Glibc)
import Glibc
#endif

/// How a domain process ended, as `waitid` reports it.
public enum DomainTermination: Sendable, Equatable, CustomStringConvertible {
    /// It called `exit(status)`.
    case exited(status: Int32)
    /// A signal ended it. `SIGSYS` is a seccomp violation (the filter's default action).
    case signaled(signal: Int32, coreDumped: Bool)

    /// True when seccomp killed it: it made a system call outside its allowlist.
    public var isSeccompViolation: Bool {
        if case .signaled(SIGSYS, _) = self { return true }
        return false
    }

    /// `SIGSEGV` for 11; `signal 99` for a number the C library does not know.
    public static func signalName(_ signal: Int32) -> String {
        guard let abbreviation = bh_sandbox_signal_abbreviation(signal) else { return "signal \(signal)" }
        return "SIG" + String(cString: abbreviation)
    }

    /// "exited with status 3", "killed by SIGSEGV", "seccomp violation (SIGSYS)".
    public var description: String {
        switch self {
        case .exited(let status):
            return "exited with status \(status)"
        case .signaled(let signal, let coreDumped):
            if signal == SIGSYS { return "seccomp violation (SIGSYS)" }
            return "killed by \(Self.signalName(signal))" + (coreDumped ? " (core dumped)" : "")
        }
    }
}
