import BulkheadSystem
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// Where a virtio-blk device keeps its bytes. Consumer-side: the request engine needs only
/// this. Each call does all of its I/O or throws (`VirtioError.io`).
public protocol BlockStorage: AnyObject {
    /// The size in bytes (the device's capacity is `byteCount / 512` sectors).
    var byteCount: UInt64 { get }
    var isReadOnly: Bool { get }
    /// Fills `buffer` from `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VirtioError)
    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VirtioError)
    /// Makes every completed write durable.
    func flush() throws(VirtioError)
    /// Forgets `[offset, offset + length)`; it reads as zeros afterwards. A hint: storage that
    /// cannot do it returns without error.
    func discard(at offset: UInt64, length: UInt64) throws(VirtioError)
}

/// A disk that is a raw file or block device, handed over by the core as an open fd:
/// `pread`/`pwrite` (short transfers continued, `EINTR` retried by the syscall funnel),
/// `fdatasync`, `fallocate(PUNCH_HOLE | KEEP_SIZE)`.
public final class FileBlockStorage: BlockStorage, @unchecked Sendable {
    public let file: FileDescriptor
    public let byteCount: UInt64
    public let isReadOnly: Bool

    /// Takes ownership of `file`; its size is found with `lseek(SEEK_END)` (which also works
    /// for block devices, whose `st_size` is 0).
    public init(file: consuming FileDescriptor, readOnly: Bool) throws(VirtioError) {
        let fd = file.rawValue
        let end: Int
        do {
            end = try systemCall("lseek(fd \(fd), SEEK_END)") { Int(lseek(fd, 0, SEEK_END)) }
        } catch {
            throw VirtioError(.io, "cannot find the size of the disk", underlying: error)
        }
        self.file = file
        self.byteCount = UInt64(end)
        self.isReadOnly = readOnly
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VirtioError) {
        guard let base = buffer.baseAddress else { return }
        let fd = file.rawValue
        var done = 0
        while done < buffer.count {
            let n: Int
            do {
                // SAFETY: done < buffer.count: the range [base+done, base+count) is the caller's buffer.
                n = try systemCall("pread(fd \(fd), \(buffer.count - done) bytes at \(offset + UInt64(done)))") {
                    Glibc.pread(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
                }
            } catch {
                throw VirtioError(.io, "disk read failed", underlying: error)
            }
            guard n > 0 else { throw VirtioError(.io, "disk ends at \(offset + UInt64(done)), before the \(buffer.count)-byte read at \(offset) completed") }
            done += n
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VirtioError) {
        guard !isReadOnly else { throw VirtioError(.io, "write to a read-only disk") }
        guard let base = buffer.baseAddress else { return }
        let fd = file.rawValue
        var done = 0
        while done < buffer.count {
            let n: Int
            do {
                // SAFETY: done < buffer.count: the range [base+done, base+count) is the caller's buffer.
                n = try systemCall("pwrite(fd \(fd), \(buffer.count - done) bytes at \(offset + UInt64(done)))") {
                    Glibc.pwrite(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
                }
            } catch {
                throw VirtioError(.io, "disk write failed", underlying: error)
            }
            guard n > 0 else { throw VirtioError(.io, "disk write at \(offset + UInt64(done)) made no progress") }
            done += n
        }
    }

    public func flush() throws(VirtioError) {
        let fd = file.rawValue
        do {
            try systemCall32("fdatasync(fd \(fd))") { fdatasync(fd) }
        } catch {
            throw VirtioError(.io, "disk flush failed", underlying: error)
        }
    }

    public func discard(at offset: UInt64, length: UInt64) throws(VirtioError) {
        guard !isReadOnly else { throw VirtioError(.io, "discard on a read-only disk") }
        let fd = file.rawValue
        do {
            try systemCall32("fallocate(fd \(fd), PUNCH_HOLE, \(length) bytes at \(offset))") {
                fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset), off_t(length))
            }
        } catch where error.errno.rawValue == EOPNOTSUPP {
            return  // a hint the file system cannot take
        } catch {
            throw VirtioError(.io, "disk discard failed", underlying: error)
        }
    }
}
