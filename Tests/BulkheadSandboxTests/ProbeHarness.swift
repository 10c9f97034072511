import BulkheadSandbox
import BulkheadSystem
import BulkheadTestSupport
import Foundation
import Testing

/// Finds and runs the probe domain (`bulkhead-domain probe ...`) the way the core will: through
/// `DomainProcess.spawn`, in new namespaces, with a report pipe at fd 3.
enum ProbeHarness {
    /// `$BULKHEAD_DOMAIN_BIN`, or the debug build of this checkout.
    static var domainBinary: String {
        if let explicit = ProcessInfo.processInfo.environment["BULKHEAD_DOMAIN_BIN"] { return explicit }
        return Checkout.root.appendingPathComponent(".build/debug/bulkhead-domain").path
    }

    static var isRoot: Bool { getuid() == 0 }
    static var hasDomainBinary: Bool { FileManager.default.isExecutableFile(atPath: domainBinary) }
    static var canRun: Bool { isRoot && hasDomainBinary }
    static let skipReason: Comment = "needs root (namespaces, pivot_root, setuid) and a built bulkhead-domain (swift build --product bulkhead-domain, or $BULKHEAD_DOMAIN_BIN); skipped"

    /// A pipe, both ends close-on-exec: (read, write).
    static func pipe() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard Glibc.pipe(&fds) == 0 else { throw SystemError(call: "pipe", errno: .current) }
        // (Not atomic, but harmless: a spawned domain gets only the fds it is given.)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return (fds[0], fds[1])
    }

    /// Reads from `fd` until end of file, or until `stopAfterLine` and a newline, or `timeout`.
    static func read(_ fd: Int32, stopAfterLine: Bool = false, timeout: TimeInterval = 30) -> String {
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, 100) <= 0 { continue }
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
            if stopAfterLine && bytes.contains(UInt8(ascii: "\n")) { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    struct Outcome {
        let report: String
        let termination: DomainTermination
    }

    /// Runs `bulkhead-domain probe <id> <arguments...>` to its end.
    static func run(_ arguments: [String], id: String = "probe0") throws -> Outcome {
        let (reportRead, reportWrite) = try pipe()
        let reader = FileDescriptor(owning: reportRead)
        let domain: SpawnedDomain
        do {
            let writer = FileDescriptor(owning: reportWrite)
            domain = try DomainProcess.spawn(
                executable: domainBinary, arguments: ["probe", id] + arguments, fds: [writer.rawValue])
            // The writer closes here: end of file on the report pipe means the probe is gone.
        }
        let report = read(reader.rawValue)
        let termination = try domain.wait()
        return Outcome(report: report, termination: termination)
    }

    /// The lines of `/proc/<pid>/status` as key → value.
    static func status(of pid: Int32) throws -> [String: String] {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    static func link(_ path: String) -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "unreadable: \(path)"
    }
}
