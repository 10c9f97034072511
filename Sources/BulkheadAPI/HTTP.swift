import BulkheadSystem
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 request, as the API reads it: request line, headers, a body of at most
/// `HTTPRequest.maximumBody` bytes. Anything else is a 4xx, never a crash.
public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [String: String]
    public var body: [UInt8]

    static let maximumHeader = 16 << 10
    static let maximumBody = 64 << 10

    public enum ParseError: Error, Equatable { case incomplete, malformed(String), tooLarge }

    /// Parses `bytes` if it holds a whole request; `.incomplete` when more is needed.
    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> HTTPRequest {
        guard let end = headerEnd(bytes) else {
            if bytes.count > maximumHeader { throw .tooLarge }
            throw .incomplete
        }
        let head = String(decoding: bytes[..<end], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        guard !lines.isEmpty else { throw .malformed("empty request") }
        let requestLine = lines.removeFirst().split(separator: " ").map(String.init)
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else { throw .malformed("bad request line") }
        var headers: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw .malformed("bad header line") }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]).trimmingSpaces
        }
        var length = 0
        if let text = headers["content-length"] {
            guard let value = Int(text), value >= 0 else { throw .malformed("bad Content-Length") }
            guard value <= maximumBody else { throw .tooLarge }
            length = value
        }
        let bodyStart = end + 4
        guard bytes.count >= bodyStart + length else { throw .incomplete }
        var path = requestLine[1]
        var query: [String: String] = [:]
        if let mark = path.firstIndex(of: "?") {
            for pair in path[path.index(after: mark)...].split(separator: "&") {
                // Not omitting empty pieces: "=" or "=v" has an empty key, never no key at all.
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                query[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            path = String(path[..<mark])
        }
        return HTTPRequest(method: requestLine[0], path: path, query: query, headers: headers,
                           body: Array(bytes[bodyStart..<(bodyStart + length)]))
    }

    static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }
}

/// A response: status, content type, body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int, contentType: String = "application/json", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func json(_ value: JSON, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, body: value.serialized + "\n")
    }

    /// A 4xx/5xx with a JSON body `{"error": "..."}`, Firecracker-style (`fault_message`).
    public static func error(_ status: Int, _ message: String) -> HTTPResponse {
        .json(.object([("error", .string(message))]), status: status)
    }

    var reason: String {
        switch status {
        case 200: return "OK"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 413: return "Payload Too Large"
        case 500: return "Internal Server Error"
        default: return "Status"
        }
    }

    var serialized: [UInt8] {
        let body = Array(self.body.utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
            + "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}

/// Unix-domain stream sockets: listen (mode 0600) and connect.
public enum UnixSocket {
    static func address(_ path: String) throws(SystemError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw SystemError(call: "socket path \(path) (longer than \(capacity - 1) bytes)", errno: Errno(rawValue: ENAMETOOLONG)) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
            raw[bytes.count] = 0
        }
        return address
    }

    /// Creates the socket at `path` (replacing a stale socket file there), readable and
    /// writable by the owner only.
    public static func listen(at path: String) throws(SystemError) -> FileDescriptor {
        var address = try address(path)
        let fd = FileDescriptor(owning: try systemCall32("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                throw SystemError(call: "bind(\(path)): a file that is not a socket is in the way", errno: Errno(rawValue: EEXIST))
            }
            unlink(path)
        }
        // umask makes the socket 0600 from the start: no window in which others may connect.
        let previous = umask(0o177)
        defer { umask(previous) }
        try systemCall32("bind(\(path))") {
            withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        }
        try systemCall32("listen(\(path))") { Glibc.listen(fd.rawValue, 16) }
        return fd
    }

    public static func connect(to path: String) throws(SystemError) -> FileDescriptor {
        var address = try address(path)
        let fd = FileDescriptor(owning: try systemCall32("socket(AF_UNIX)") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        try systemCall32("connect(\(path))") {
            withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        }
        return fd
    }
}
