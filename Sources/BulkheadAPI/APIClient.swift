import BulkheadSystem
#if canImport(Glibc)
import Glibc
#endif

/// Talks to a running `bulkhead run --api-socket PATH`.
public struct APIClient: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public struct Response: Sendable {
        public let status: Int
        public let body: String
    }

    /// One request; the whole response.
    public func request(_ method: String, _ target: String, body: String = "") throws(SystemError) -> Response {
        let connection = try UnixSocket.connect(to: path)
        try send(method, target, body: body, on: connection)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = try Self.read(connection, into: &chunk)
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return Self.split(bytes)
    }

    /// A streaming request (`/events`): calls `line` with each line of the body as it arrives.
    public func stream(_ target: String, line: (String) -> Void) throws(SystemError) {
        let connection = try UnixSocket.connect(to: path)
        try send("GET", target, body: "", on: connection)
        var pending: [UInt8] = []
        var headerDone = false
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try Self.read(connection, into: &chunk)
            if n == 0 { return }
            pending += chunk[0..<n]
            if !headerDone {
                guard let end = HTTPRequest.headerEnd(pending) else { continue }
                pending.removeFirst(end + 4)
                headerDone = true
            }
            while let newline = pending.firstIndex(of: 0x0a) {
                line(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeFirst(newline + 1)
            }
        }
    }

    func send(_ method: String, _ target: String, body: String, on connection: borrowing FileDescriptor) throws(SystemError) {
        let bodyBytes = Array(body.utf8)
        let head = "\(method) \(target) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(bodyBytes.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array(head.utf8) + bodyBytes
        let result: Result<Void, SystemError> = bytes.withUnsafeBytes { raw in
            Result { () throws(SystemError) in try connection.writeAll(raw) }
        }
        try result.get()
    }

    static func read(_ connection: borrowing FileDescriptor, into chunk: inout [UInt8]) throws(SystemError) -> Int {
        let result: Result<Int, SystemError> = chunk.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try connection.read(into: raw) }
        }
        return try result.get()
    }

    static func split(_ bytes: [UInt8]) -> Response {
        guard let end = HTTPRequest.headerEnd(bytes) else { return Response(status: 0, body: String(decoding: bytes, as: UTF8.self)) }
        let statusLine = String(decoding: bytes[..<end], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        let status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        return Response(status: status, body: String(decoding: bytes[(end + 4)...], as: UTF8.self))
    }
}
