import Foundation

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public let status: Int32
    /// True when the process ended by a signal (a crash), not by exit.
    public let signaled: Bool
    public let stdout: String
    public let stderr: String
    public let timedOut: Bool

    public init(status: Int32, signaled: Bool, stdout: String, stderr: String, timedOut: Bool) {
        self.status = status; self.signaled = signaled; self.stdout = stdout; self.stderr = stderr; self.timedOut = timedOut
    }

    /// Lines of stdout starting with `BULKHEAD-RESULT`.
    public var resultLines: [String] {
        stdout.split(whereSeparator: \.isNewline).map(String.init).filter { $0.hasPrefix("BULKHEAD-RESULT ") }
    }
}

/// Paths of the checkout under test.
public enum Checkout {
    /// The package root, found from this source file's location.
    public static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `bulkhead` executable: `$BULKHEAD_BIN`, or the debug build of this checkout.
    public static var bulkhead: String {
        if let explicit = ProcessInfo.processInfo.environment["BULKHEAD_BIN"] { return explicit }
        return root.appendingPathComponent(".build/debug/bulkhead").path
    }

    /// The test guest built by `make -C guest`.
    public static var guest: String { root.appendingPathComponent("guest/build/guest.elf").path }

    public static var hasKVM: Bool { access("/dev/kvm", R_OK | W_OK) == 0 }
    public static var hasGuest: Bool { FileManager.default.fileExists(atPath: guest) }
    public static var hasBulkhead: Bool { FileManager.default.isExecutableFile(atPath: bulkhead) }

    /// The first of `names` found on PATH.
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// Runs `executable` with `arguments` to completion (killing it after `timeout` seconds),
/// with stdin from /dev/null, and collects its output.
public func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: TimeInterval = 120
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    try process.run()

    // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }

    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while process.isRunning {
        if Date() > deadline {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
            break
        }
        usleep(5_000)
    }
    process.waitUntilExit()
    group.wait()
    return ProcessResult(
        status: process.terminationStatus,
        signaled: process.terminationReason == .uncaughtSignal,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self),
        timedOut: timedOut)
}
