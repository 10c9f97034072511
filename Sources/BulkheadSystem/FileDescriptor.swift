import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor, closed exactly once when its owner goes away.
public struct FileDescriptor: ~Copyable, @unchecked Sendable {
    public let rawValue: Int32

    /// Takes ownership of `rawValue`.
    public init(owning rawValue: Int32) { self.rawValue = rawValue }

    deinit { _ = close(rawValue) }

    /// Opens `path` with `O_CLOEXEC` added to `flags`.
    public static func open(_ path: String, flags: Int32) throws(SystemError) -> FileDescriptor {
        let fd = try systemCall32("open(\(path))") { bh_open(path, flags) }
        return FileDescriptor(owning: fd)
    }

    /// Gives up ownership without closing.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }

    /// Writes all of `bytes`, retrying short writes.
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            // SAFETY: offset < bytes.count, so the slice stays inside the caller's buffer.
            let n = try systemCall("write(fd \(rawValue))") {
                write(rawValue, bytes.baseAddress! + offset, bytes.count - offset)
            }
            offset += n
        }
    }

    /// Reads up to `buffer.count` bytes; returns 0 at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try systemCall("read(fd \(rawValue))") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads at `offset` without moving the file position.
    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        try systemCall("pread(fd \(rawValue))") { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// Sets the size of the file.
    public func truncate(to size: Int) throws(SystemError) {
        try systemCall32("ftruncate(fd \(rawValue), \(size))") { ftruncate(rawValue, off_t(size)) }
    }

    /// The size of the file from `fstat`.
    public func size() throws(SystemError) -> Int {
        var st = stat()
        try systemCall32("fstat(fd \(rawValue))") { fstat(rawValue, &st) }
        return Int(st.st_size)
    }

    /// `ioctl` with a pointer argument.
    @discardableResult
    public func ioctl(_ name: String, _ request: UInt, _ arg: UnsafeMutableRawPointer?) throws(SystemError) -> Int32 {
        try systemCall32("ioctl(\(name))") { bh_ioctl_ptr(rawValue, request, arg) }
    }

    /// `ioctl` with an integer argument.
    @discardableResult
    public func ioctl(_ name: String, _ request: UInt, value: UInt = 0) throws(SystemError) -> Int32 {
        try systemCall32("ioctl(\(name))") { bh_ioctl_val(rawValue, request, value) }
    }
}

extension FileDescriptor {
    /// A new anonymous memory file (`memfd_create`) of `size` bytes, close-on-exec.
    public static func memfd(name: String, size: Int) throws(SystemError) -> FileDescriptor {
        let fd = FileDescriptor(owning: try systemCall32("memfd_create(\(name))") {
            bh_memfd_create(name, UInt32(MFD_CLOEXEC))
        })
        try fd.truncate(to: size)
        return fd
    }

    /// A new eventfd, close-on-exec.
    public static func eventfd(initialValue: UInt32 = 0, nonBlocking: Bool = false) throws(SystemError) -> FileDescriptor {
        var flags = Int32(EFD_CLOEXEC)
        if nonBlocking { flags |= Int32(EFD_NONBLOCK) }
        return FileDescriptor(owning: try systemCall32("eventfd") { bh_eventfd(initialValue, flags) })
    }

    /// A pidfd for `pid` (`pidfd_open`), readable when the process exits.
    public static func pidfd(for pid: Int32) throws(SystemError) -> FileDescriptor {
        FileDescriptor(owning: try systemCall32("pidfd_open(\(pid))") { bh_pidfd_open(pid, 0) })
    }
}

/// A `FileDescriptor` behind a reference, for collections and for sharing between owners that
/// live as long as each other. Closed when the last reference goes away.
public final class SharedFileDescriptor: @unchecked Sendable {
    public let descriptor: FileDescriptor
    public var rawValue: Int32 { descriptor.rawValue }

    public init(_ descriptor: consuming FileDescriptor) { self.descriptor = descriptor }
}

/// Adds 1 to the counter of the eventfd `fd`: rings a doorbell, raises an irqfd interrupt,
/// wakes a waiter. An eventfd write fails only when the counter would overflow, which leaves
/// it signalled anyway, so the result is not reported.
public func signalEventfd(_ fd: Int32) {
    var one: UInt64 = 1
    // SAFETY: 8 bytes from a local.
    _ = withUnsafeBytes(of: &one) { write(fd, $0.baseAddress, 8) }
}

/// Reads (and so clears) the counter of the eventfd `fd`: the count, or nil when the read
/// failed (EAGAIN on a non-blocking eventfd that was not signalled).
@discardableResult
public func readEventfd(_ fd: Int32) -> UInt64? {
    var value: UInt64 = 0
    // SAFETY: 8 bytes into a local.
    let n = withUnsafeMutableBytes(of: &value) { read(fd, $0.baseAddress, 8) }
    return n == 8 ? value : nil
}

extension FileDescriptor {
    /// The whole file at `path`, read to its end (so also /proc files, whose size reads as 0).
    /// A file longer than `limit` bytes is an error (EFBIG), not a truncation.
    public static func readContents(of path: String, limit: Int = .max) throws(SystemError) -> [UInt8] {
        let file = try FileDescriptor.open(path, flags: O_RDONLY)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(max(try file.size(), 0), limit))
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let result: Result<Int, SystemError> = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemError) in try file.read(into: buffer) }
            }
            let n = try result.get()
            if n == 0 { return bytes }
            guard n <= limit - bytes.count else {
                throw SystemError(call: "read(\(path)): longer than \(limit) bytes", errno: Errno(rawValue: EFBIG))
            }
            bytes += chunk[0..<n]
        }
    }
}
