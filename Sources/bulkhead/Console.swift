import BulkheadCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The guest's serial console on the host terminal: output to stdout, input from stdin when
/// stdin is a terminal.
final class Console: Sendable {
    private let pending = Mutex<[UInt8]>([])

    /// Buffers until a newline (or 256 bytes), so a line reaches stdout in one write.
    func write(_ byte: UInt8) {
        let chunk = pending.withLock { buffer -> [UInt8]? in
            buffer.append(byte)
            guard byte == 0x0a || buffer.count >= 256 else { return nil }
            defer { buffer.removeAll(keepingCapacity: true) }
            return buffer
        }
        if let chunk { emit(chunk) }
    }

    func flush() {
        let chunk = pending.withLock { buffer -> [UInt8] in
            defer { buffer.removeAll() }
            return buffer
        }
        if !chunk.isEmpty { emit(chunk) }
    }

    private func emit(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                // SAFETY: offset < raw.count.
                let n = Glibc.write(1, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 { if errno == EINTR { continue }; return }
                offset += n
            }
        }
    }

    /// Reads stdin on a dedicated thread and hands the bytes to the guest's UART, when stdin
    /// is a terminal. The thread ends with the process.
    func forwardInput(to machine: Machine) {
        guard isatty(0) == 1 else { return }
        _ = DedicatedThread.start(name: "console") {
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress, $0.count) }
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                machine.consoleInput(Array(buffer[0..<n]))
            }
        }
    }
}

/// Prints one line to stderr.
func printError(_ message: String) {
    let line = Array((message + "\n").utf8)
    _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
}
