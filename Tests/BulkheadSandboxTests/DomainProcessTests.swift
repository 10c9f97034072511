import BulkheadSandbox
import BulkheadSystem
import Foundation
import Testing

@Suite("DomainTermination")
struct DomainTerminationTests {
    @Test("descriptions name the exit status or the signal")
    func descriptions() {
        #expect(DomainTermination.exited(status: 3).description == "exited with status 3")
        #expect(DomainTermination.signaled(signal: SIGSEGV, coreDumped: false).description == "killed by SIGSEGV")
        #expect(DomainTermination.signaled(signal: SIGKILL, coreDumped: false).description == "killed by SIGKILL")
        #expect(DomainTermination.signaled(signal: SIGABRT, coreDumped: true).description == "killed by SIGABRT (core dumped)")
        #expect(DomainTermination.signaled(signal: SIGSYS, coreDumped: true).description == "seccomp violation (SIGSYS)")
        #expect(DomainTermination.signaled(signal: SIGSYS, coreDumped: false).isSeccompViolation)
        #expect(!DomainTermination.signaled(signal: SIGSEGV, coreDumped: false).isSeccompViolation)
        #expect(!DomainTermination.exited(status: 0).isSeccompViolation)
        #expect(DomainTermination.signalName(200) == "signal 200")
    }
}

@Suite("SeccompPolicy")
struct SeccompPolicyTests {
    @Test("every name in the common list exists on this architecture")
    func commonResolves() {
        #expect(SeccompPolicy.common.unknownSyscalls == [])
        #expect(SeccompPolicy.common.rules.allSatisfy { !$0.comment.isEmpty })
    }

    @Test("the common list allows no open, socket, ioctl, process creation, exec or kill")
    func commonIsNarrow() {
        let names = Set(SeccompPolicy.common.syscallNames)
        for forbidden in ["open", "openat", "openat2", "socket", "connect", "ioctl", "clone", "clone3", "fork", "vfork",
                          "execve", "execveat", "kill", "tgkill", "ptrace", "mount", "setuid", "prctl", "seccomp", "bpf"] {
            #expect(!names.contains(forbidden), "\(forbidden) is in the common list")
        }
        // I/O only on fds it names: an unconditional write could grow a memfd the domain holds.
        for rule in SeccompPolicy.common.rules where ["read", "write", "pread64", "pwrite64"].contains(rule.syscall) {
            #expect(!rule.conditions.isEmpty, "\(rule.syscall) on any fd")
        }
    }

    @Test("fd and int conditions compare the low 32 bits, as the kernel reads an int")
    func intConditions() {
        #expect(SeccompPolicy.ArgumentCondition.fileDescriptor(8) == .init(0, .maskedEqual(mask: 0xffff_ffff, value: 8)))
        #expect(SeccompPolicy.ArgumentCondition.int(1, is: 3) == .init(1, .maskedEqual(mask: 0xffff_ffff, value: 3)))
        #expect(SeccompPolicy.ArgumentCondition.int(2, is: -1) == .init(2, .maskedEqual(mask: 0xffff_ffff, value: 0xffff_ffff)))
    }

    @Test("an unknown syscall name is an error naming it (before anything is loaded)")
    func unknownName() {
        let policy = SeccompPolicy([.init("no_such_call", "a typo")])
        #expect(policy.unknownSyscalls == ["no_such_call"])
        #expect {
            try policy.load()
        } throws: { error in
            guard let error = error as? SandboxError else { return false }
            return error.code == .seccomp && "\(error)".contains("no_such_call")
        }
    }
}

@Suite("DomainProcess.spawn failures", .enabled(if: ProbeHarness.isRoot, "needs root to create namespaces; skipped"))
struct SpawnFailureTests {
    @Test("a missing executable is an execve error, and the child is reaped")
    func missingExecutable() {
        #expect {
            _ = try DomainProcess.spawn(executable: "/nonexistent/bulkhead-domain", arguments: ["blk", "blk0"], fds: [])
        } throws: { error in
            guard let error = error as? SandboxError else { return false }
            return error.code == .spawn && error.underlyingError?.errno == .noEntry
                && error.underlyingError?.call.hasPrefix("execve") == true
        }
    }

    @Test("an fd that is not open is an error while moving fds")
    func badFileDescriptor() {
        #expect {
            _ = try DomainProcess.spawn(executable: "/bin/true", arguments: [], fds: [9_999])
        } throws: { error in
            guard let error = error as? SandboxError else { return false }
            return error.code == .spawn && error.underlyingError?.errno == Errno(rawValue: EBADF)
        }
    }

    @Test("too many fds is refused before anything starts")
    func tooManyFileDescriptors() {
        #expect(throws: SandboxError.self) {
            _ = try DomainProcess.spawn(executable: "/bin/true", arguments: [], fds: Array(repeating: 0, count: 100))
        }
    }

    @Test("without namespaces, a plain executable runs and its status comes back")
    func plainRun() throws {
        let domain = try DomainProcess.spawn(executable: "/bin/sh", arguments: ["-c", "exit 7"], fds: [], namespaces: [])
        #expect(try domain.wait() == .exited(status: 7))
    }

    @Test("kill through the pidfd ends a domain (it is pid 1 of its namespace: SIGKILL)")
    func killThroughPidfd() throws {
        let domain = try DomainProcess.spawn(executable: "/bin/sleep", arguments: ["30"], fds: [])
        #expect(try domain.poll() == nil)
        try domain.kill()
        #expect(try domain.wait() == .signaled(signal: SIGKILL, coreDumped: false))
    }
}
