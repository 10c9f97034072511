import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// An `errno` value, printed the way `strerror` names it.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static var current: Errno { Errno(rawValue: bh_errno()) }
    public static let interrupted = Errno(rawValue: EINTR)
    public static let again = Errno(rawValue: EAGAIN)
    public static let noEntry = Errno(rawValue: ENOENT)
    public static let permissionDenied = Errno(rawValue: EACCES)

    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return "\(String(cString: text)) (errno \(rawValue))"
    }
}

/// The one error type of the system layer: which call failed, on what, and the `Errno`.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. `ioctl(KVM_CREATE_VM)` or `open(/dev/kvm)`.
    public let call: String
    public let errno: Errno

    public init(call: String, errno: Errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call) failed: \(errno)" }
}

/// The syscall funnel. Every system call of the project goes through here: a negative result
/// becomes a `SystemError` naming the call; `EINTR` is retried unless the caller says that an
/// interruption is meaningful (a kicked `KVM_RUN`).
@inline(__always)
public func systemCall(
    _ call: @autoclosure () -> String,
    retryOnInterrupt: Bool = true,
    _ body: () -> Int
) throws(SystemError) -> Int {
    while true {
        let result = body()
        if result >= 0 { return result }
        let errno = Errno.current
        if errno == .interrupted && retryOnInterrupt { continue }
        throw SystemError(call: call(), errno: errno)
    }
}

/// `systemCall` for calls that return `Int32`.
@inline(__always)
@discardableResult
public func systemCall32(
    _ call: @autoclosure () -> String,
    retryOnInterrupt: Bool = true,
    _ body: () -> Int32
) throws(SystemError) -> Int32 {
    Int32(truncatingIfNeeded: try systemCall(call(), retryOnInterrupt: retryOnInterrupt) { Int(body()) })
}
