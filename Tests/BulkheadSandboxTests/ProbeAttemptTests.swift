import BulkheadSandbox
import Foundation
import Testing

/// What a sandboxed domain gets when it tries something forbidden.
enum Expected: CustomStringConvertible, Sendable {
    /// Seccomp kills it: the call is not on the allowlist.
    case seccompKill
    /// The call is made and refused with this errno (a layer below seccomp holds).
    case refused(String)

    var description: String {
        switch self {
        case .seccompKill: "SIGSYS"
        case .refused(let errno): errno
        }
    }
}

struct Attempt: CustomTestStringConvertible, Sendable {
    let arguments: [String]
    let expected: Expected
    var testDescription: String { "\(arguments.joined(separator: " ")) → \(expected)" }
}

/// Each attempt of a compromised domain fails or kills the domain alone: seccomp first, and
/// under it (`--allow` lets the call through) the empty root, the uid, the namespaces and the
/// rlimits. The test process stands in for the core and carries on.
@Suite("Probe domain: forbidden attempts", .enabled(if: ProbeHarness.canRun, ProbeHarness.skipReason))
struct ProbeAttemptTests {
    static let core = "\(getpid())"

    static let attempts: [Attempt] = [
        Attempt(arguments: ["open-host-file"], expected: .seccompKill),
        Attempt(arguments: ["open-host-file", "--allow", "openat"], expected: .refused("ENOENT")),
        Attempt(arguments: ["socket"], expected: .seccompKill),
        Attempt(arguments: ["socket", "--allow", "socket", "--allow", "connect"], expected: .refused("ENETUNREACH")),
        Attempt(arguments: ["fork"], expected: .seccompKill),
        Attempt(arguments: ["fork", "--allow", "clone"], expected: .refused("EAGAIN")),
        Attempt(arguments: ["exec"], expected: .seccompKill),
        Attempt(arguments: ["exec", "--allow", "execve"], expected: .refused("ENOENT")),
        Attempt(arguments: ["mount"], expected: .seccompKill),
        Attempt(arguments: ["mount", "--allow", "mount"], expected: .refused("EPERM")),
        Attempt(arguments: ["ptrace", "--core-pid", core], expected: .seccompKill),
        Attempt(arguments: ["ptrace", "--core-pid", core, "--allow", "ptrace"], expected: .refused("ESRCH")),
        Attempt(arguments: ["setuid0"], expected: .seccompKill),
        Attempt(arguments: ["setuid0", "--allow", "setuid"], expected: .refused("EPERM")),
        Attempt(arguments: ["kill-parent", "--core-pid", core], expected: .seccompKill),
        Attempt(arguments: ["kill-parent", "--core-pid", core, "--allow", "kill"], expected: .refused("ESRCH")),
        // An allowed call on an fd its list does not name (write is allowed on 2 and 3 only).
        Attempt(arguments: ["write-other-fd"], expected: .seccompKill),
        Attempt(arguments: ["fd-limit"], expected: .refused("EMFILE")),
        Attempt(arguments: ["memory-limit"], expected: .refused("malloc failed")),
    ]

    @Test("the attempt fails or kills only the probe", arguments: attempts)
    func attempt(_ attempt: Attempt) throws {
        let outcome = try ProbeHarness.run(attempt.arguments)
        switch attempt.expected {
        case .seccompKill:
            #expect(outcome.termination == .signaled(signal: SIGSYS, coreDumped: false), "report: \(outcome.report)")
            #expect(outcome.termination.isSeccompViolation)
            #expect(outcome.termination.description == "seccomp violation (SIGSYS)")
            #expect(outcome.report == "", "a seccomp kill leaves no report")
        case .refused(let errno):
            #expect(outcome.termination == .exited(status: 0), "report: \(outcome.report)")
            #expect(outcome.report.hasPrefix("BULKHEAD-PROBE \(attempt.arguments[0]) blocked "), "report: \(outcome.report)")
            #expect(outcome.report.contains(errno), "report: \(outcome.report)")
        }
        // The stand-in core is alive and still the same process.
        #expect(kill(getpid(), 0) == 0)
        #expect("\(getpid())" == Self.core)
    }

    @Test("fd-limit stops at RLIMIT_NOFILE (64)")
    func fdLimit() throws {
        let outcome = try ProbeHarness.run(["fd-limit"])
        // fds 0-3 are open: eventfds take 4...63, the 61st fails.
        #expect(outcome.report.contains("eventfd #61: EMFILE"), "report: \(outcome.report)")
    }

    @Test("memory-limit stops near RLIMIT_DATA (256 MiB)")
    func memoryLimit() throws {
        let outcome = try ProbeHarness.run(["memory-limit"])
        let mebibytes = outcome.report.split(separator: " ").compactMap { Int($0) }.first ?? -1
        #expect((200...256).contains(mebibytes), "report: \(outcome.report)")
    }

    @Test("a crash is recorded as the crash, not as a seccomp violation")
    func crash() throws {
        let outcome = try ProbeHarness.run(["crash"])
        #expect(outcome.termination == .signaled(signal: SIGSEGV, coreDumped: false))
        #expect(outcome.termination.description == "killed by SIGSEGV")
    }

    @Test("an exit status comes back as it was")
    func exitStatus() throws {
        let outcome = try ProbeHarness.run(["exit"])
        #expect(outcome.termination == .exited(status: 3))
        #expect(outcome.termination.description == "exited with status 3")
    }
}
