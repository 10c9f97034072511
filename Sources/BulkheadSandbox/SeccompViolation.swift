import CBulkheadSandbox
#if canImport(Glibc)
import Glibc
#endif

/// Which system call a domain that seccomp killed was making. The kernel logs every
/// `SECCOMP_RET_KILL_PROCESS` as an audit record (`type=1326 ... pid=P ... syscall=N`) in its log
/// buffer; the core (root) reads `/dev/kmsg` for the record of that pid and names the call
/// with libseccomp. Best effort: nil when the record is not there (audit rate limits, no
/// access to the kernel log).
public enum SeccompViolation {
    public static func syscallName(pid: Int32, attempts: Int = 5) -> String? {
        for attempt in 0..<attempts {
            if let number = syscallNumber(pid: pid) { return name(of: number) ?? "syscall \(number)" }
            if attempt + 1 < attempts { usleep(2000) } // the record may trail the death by a moment
        }
        return nil
    }

    /// The syscall number in the newest seccomp audit record for `pid`.
    static func syscallNumber(pid: Int32) -> Int32? {
        let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var found: Int32?
        var record = [UInt8](repeating: 0, count: 8192)
        let pidField = Substring("pid=\(pid)")
        while true {
            // One read returns one record; EPIPE means records were overwritten: keep going.
            let n = record.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EPIPE || errno == EINTR { continue }; break }
            if n == 0 { break }
            let text = String(decoding: record[0..<n], as: UTF8.self)
            // Whole space-separated fields (String.contains(String) is _StringProcessing's,
            // which nothing here links).
            let fields = text.split(separator: " ")
            guard fields.contains("type=1326"), fields.contains(pidField) else { continue }
            for field in fields where field.hasPrefix("syscall=") {
                found = Int32(field.dropFirst("syscall=".count).prefix(while: { $0.isNumber }))
            }
        }
        return found
    }

    /// The name of syscall `number` on this architecture (libseccomp's table).
    static func name(of number: Int32) -> String? {
        guard let name = seccomp_syscall_resolve_num_arch(UInt32(SCMP_ARCH_NATIVE), number) else { return nil }
        defer { free(name) }
        return String(cString: name)
    }
}
