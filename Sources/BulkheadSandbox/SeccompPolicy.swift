import BulkheadSystem
import CBulkheadSandbox
#if canImport(Glibc)
import Glibc
#endif

/// A seccomp allowlist: the system calls a domain may make once it is sandboxed, each with the
/// reason it needs it. Anything else kills the whole process with `SIGSYS`
/// (`SCMP_ACT_KILL_PROCESS`), which the core records as a seccomp violation.
///
/// Every domain's policy lives beside its code and starts from `common` (the virtio domains
/// through `virtioDomain`, in `domains/SeccompPolicy+VirtioDomain.swift`):
///
///     extension SeccompPolicy {
///         static let block = SeccompPolicy.virtioDomain.adding([
///             .init("pread64", "reads the disk image at the guest's offset", when: [.fileDescriptor(8)]),
///             .init("fdatasync", "VIRTIO_BLK_T_FLUSH", when: [.fileDescriptor(8)]),
///         ])
///     }
///
/// Each list is the working set its domain showed under `strace -f` after `Sandbox.enter`
/// (orchestration/scripts/seccomp-trace.sh prints it and the difference with the lists), plus
/// the few calls a named path needs that no trace showed; their comments say which.
public struct SeccompPolicy: Sendable {
    /// What the filter does with a call that matches a rule.
    public enum Action: Sendable, Equatable {
        /// Let the call through.
        case allow
        /// Fail the call with this errno without making it (e.g. `clone3` → `ENOSYS`, so
        /// glibc falls back to `clone`, whose flags a filter can inspect).
        case fail(Errno)
    }

    /// A condition on one argument of the call (the syscall's argument `index`, from 0).
    public struct ArgumentCondition: Sendable, Equatable {
        public enum Comparison: Sendable, Equatable {
            case equal(UInt64)
            case notEqual(UInt64)
            /// `(argument & mask) == value`.
            case maskedEqual(mask: UInt64, value: UInt64)
        }
        public let index: UInt32
        public let comparison: Comparison

        public init(_ index: UInt32, _ comparison: Comparison) {
            self.index = index
            self.comparison = comparison
        }

        /// Argument `index`, a C `int` (a file descriptor, a mode, a `whence`), is `value`.
        /// Compared on the low 32 bits, as the kernel reads an `int`: the upper half of the
        /// register is not defined by the ABI, and ignoring it lets nothing else through.
        public static func int(_ index: UInt32, is value: Int32) -> ArgumentCondition {
            ArgumentCondition(index, .maskedEqual(mask: 0xffff_ffff, value: UInt64(UInt32(bitPattern: value))))
        }

        /// The call's first argument is the file descriptor `fd` (`read`, `write`, `pread64`, …).
        public static func fileDescriptor(_ fd: Int32) -> ArgumentCondition { int(0, is: fd) }
    }

    /// One allowed (or deliberately failed) system call.
    public struct Rule: Sendable, Equatable {
        /// The name as in `man 2 syscalls` for this architecture (`pread64`, `newfstatat`).
        public let syscall: String
        /// Why the domain needs it. Required: an allowlist entry nobody can explain is removed.
        public let comment: String
        public let action: Action
        /// All must hold for the rule to match (several rules for one call are alternatives).
        public let conditions: [ArgumentCondition]

        public init(_ syscall: String, _ comment: String, action: Action = .allow, when conditions: [ArgumentCondition] = []) {
            self.syscall = syscall
            self.comment = comment
            self.action = action
            self.conditions = conditions
        }
    }

    public private(set) var rules: [Rule]

    public init(_ rules: [Rule]) { self.rules = rules }

    /// This policy plus `more` rules.
    public func adding(_ more: [Rule]) -> SeccompPolicy { SeccompPolicy(rules + more) }

    /// The syscall names the policy mentions, sorted, without repeats.
    public var syscallNames: [String] { Array(Set(rules.map(\.syscall))).sorted() }

    /// The syscall names that do not exist on this architecture (a typo, or another
    /// architecture's call): `load()` would throw for them. A domain's tests check this is empty.
    public var unknownSyscalls: [String] {
        syscallNames.filter { seccomp_syscall_resolve_name($0) == __NR_SCMP_ERROR }
    }

    /// Builds the BPF filter with libseccomp and installs it on the calling process (every
    /// thread: TSYNC). Needs `PR_SET_NO_NEW_PRIVS` or `CAP_SYS_ADMIN`.
    public func load() throws(SandboxError) {
        guard let context = seccomp_init(BH_SCMP_ACT_KILL_PROCESS) else {
            throw SandboxError(.seccomp, "create a seccomp filter (seccomp_init)")
        }
        defer { seccomp_release(context) }
        // Calls from another ABI (i386 int 0x80, x32) kill too; apply to every thread.
        try check(seccomp_attr_set(context, SCMP_FLTATR_ACT_BADARCH, BH_SCMP_ACT_KILL_PROCESS), "set the bad-architecture action")
        try check(seccomp_attr_set(context, SCMP_FLTATR_CTL_TSYNC, 1), "ask for thread synchronisation")
        for rule in rules {
            let number = seccomp_syscall_resolve_name(rule.syscall)
            if number == __NR_SCMP_ERROR {
                throw SandboxError(.seccomp, "seccomp rule for \(rule.syscall): no such system call on this architecture")
            }
            let action: UInt32
            switch rule.action {
            case .allow: action = BH_SCMP_ACT_ALLOW
            case .fail(let errno): action = bh_scmp_act_errno(UInt16(truncatingIfNeeded: errno.rawValue))
            }
            let comparisons = rule.conditions.map { condition -> scmp_arg_cmp in
                switch condition.comparison {
                case .equal(let value): return scmp_arg_cmp(arg: condition.index, op: SCMP_CMP_EQ, datum_a: value, datum_b: 0)
                case .notEqual(let value): return scmp_arg_cmp(arg: condition.index, op: SCMP_CMP_NE, datum_a: value, datum_b: 0)
                case .maskedEqual(let mask, let value):
                    return scmp_arg_cmp(arg: condition.index, op: SCMP_CMP_MASKED_EQ, datum_a: mask, datum_b: value)
                }
            }
            let result = comparisons.withUnsafeBufferPointer { buffer in
                // SAFETY: libseccomp reads buffer.count comparisons from the buffer.
                seccomp_rule_add_array(context, action, number, UInt32(buffer.count), buffer.baseAddress)
            }
            try check(result, "seccomp rule for \(rule.syscall)")
        }
        try check(seccomp_load(context), "load the seccomp filter (\(rules.count) rules)")
    }

    private func check(_ result: Int32, _ operation: String) throws(SandboxError) {
        if result < 0 {
            throw SandboxError(.seccomp, operation, underlyingError: SystemError(call: "libseccomp", errno: Errno(rawValue: -result)))
        }
    }
}
