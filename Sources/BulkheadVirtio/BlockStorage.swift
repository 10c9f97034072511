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
///
/// When the core opened the file `O_DIRECT` (`--disk PATH,cache=none`), offsets, lengths and
/// memory addresses must be multiples of `directAlignment`. Guest buffers that are aligned go
/// straight to the file; others go through an aligned bounce buffer, and a write that covers
/// only part of an aligned block reads the block, patches it and writes it back (one domain
/// thread serves the queue, so nothing else writes that block in between).
public final class FileBlockStorage: BlockStorage, @unchecked Sendable {
    public let file: FileDescriptor
    public let byteCount: UInt64
    public let isReadOnly: Bool
    /// nil: buffered I/O. Otherwise the O_DIRECT alignment (512 or 4096).
    public let directAlignment: Int?
    /// Aligned scratch for unaligned O_DIRECT transfers; allocated on first use.
    private var bounce: UnsafeMutableRawBufferPointer?
    static let bounceBytes = 256 * 1024

    /// Takes ownership of `file`; its size is found with `lseek(SEEK_END)` (which also works
    /// for block devices, whose `st_size` is 0).
    public init(file: consuming FileDescriptor, readOnly: Bool, directAlignment: Int? = nil) throws(VirtioError) {
        let fd = file.rawValue
        let end: Int
        do {
            end = try systemCall("lseek(fd \(fd), SEEK_END)") { Int(lseek(fd, 0, SEEK_END)) }
        } catch {
            throw VirtioError(.io, "cannot find the size of the disk", underlying: error)
        }
        if let alignment = directAlignment {
            precondition(alignment > 0 && alignment & (alignment - 1) == 0 && alignment <= 4096, "O_DIRECT alignment \(alignment)")
        }
        self.file = file
        self.byteCount = UInt64(end)
        self.isReadOnly = readOnly
        self.directAlignment = directAlignment
    }

    deinit { bounce?.deallocate() }

    /// Finds the O_DIRECT alignment of an fd opened with it: 512 when a 512-byte read at 0 into
    /// a 512-aligned buffer works, else 4096. nil when the fd is not O_DIRECT. Called before
    /// the domain enters its sandbox (it uses `fcntl`).
    public static func probeDirectAlignment(fd: Int32) -> Int? {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, flags & BH_O_DIRECT != 0 else { return nil }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        // SAFETY: buffer holds 4096 bytes; a 512-byte read at offset 512 of it is inside.
        return Glibc.pread(fd, buffer + 512, 512, 0) >= 0 ? 512 : 4096
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(VirtioError) {
        guard let base = buffer.baseAddress else { return }
        guard let alignment = directAlignment, !isAligned(base, buffer.count, offset, alignment) else {
            return try readAll(base, buffer.count, at: offset)
        }
        try bounced(buffer.count, at: offset, alignment: alignment) { (window, windowOffset, head, done, chunk) throws(VirtioError) in
            try readAll(window.baseAddress!, window.count, at: windowOffset)
            // SAFETY: head + chunk <= window.count and done + chunk <= buffer.count (bounced's contract).
            (base + done).copyMemory(from: window.baseAddress! + head, byteCount: chunk)
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(VirtioError) {
        guard !isReadOnly else { throw VirtioError(.io, "write to a read-only disk") }
        guard let base = buffer.baseAddress else { return }
        guard let alignment = directAlignment, !isAligned(base, buffer.count, offset, alignment) else {
            return try writeAll(base, buffer.count, at: offset)
        }
        try bounced(buffer.count, at: offset, alignment: alignment) { (window, windowOffset, head, done, chunk) throws(VirtioError) in
            if head != 0 || chunk != window.count {
                try readAll(window.baseAddress!, window.count, at: windowOffset)  // read-modify-write
            }
            // SAFETY: head + chunk <= window.count and done + chunk <= buffer.count (bounced's contract).
            (window.baseAddress! + head).copyMemory(from: base + done, byteCount: chunk)
            try writeAll(window.baseAddress!, window.count, at: windowOffset)
        }
    }

    private func isAligned(_ base: UnsafeRawPointer, _ count: Int, _ offset: UInt64, _ alignment: Int) -> Bool {
        (Int(bitPattern: base) | count | Int(truncatingIfNeeded: offset)) & (alignment - 1) == 0
    }

    /// Walks `[offset, offset + count)` in pieces that fit the bounce buffer once widened to
    /// `alignment`: `body(window, windowOffset, head, done, chunk)` gets the aligned window
    /// (a prefix of the bounce buffer) covering the piece, the file offset of the window, where
    /// the piece starts inside it, how much of the caller's buffer came before, and its length.
    private func bounced(
        _ count: Int, at offset: UInt64, alignment: Int,
        _ body: (UnsafeMutableRawBufferPointer, UInt64, Int, Int, Int) throws(VirtioError) -> Void
    ) throws(VirtioError) {
        let scratch = bounce ?? UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bounceBytes, alignment: 4096)
        bounce = scratch
        let mask = UInt64(alignment - 1)
        var done = 0
        while done < count {
            let position = offset + UInt64(done)
            let windowOffset = position & ~mask
            let head = Int(position - windowOffset)
            let chunk = min(count - done, Self.bounceBytes - head)
            let windowBytes = Int((UInt64(head + chunk) + mask) & ~mask)
            try body(UnsafeMutableRawBufferPointer(rebasing: scratch[0..<windowBytes]), windowOffset, head, done, chunk)
            done += chunk
        }
    }

    /// `pread` until `count` bytes are in. (With O_DIRECT the core only accepts disks whose
    /// size is a multiple of 4096, so an aligned window never reaches past the end.)
    private func readAll(_ base: UnsafeMutableRawPointer, _ count: Int, at offset: UInt64) throws(VirtioError) {
        let fd = file.rawValue
        var done = 0
        while done < count {
            let n: Int
            do {
                // SAFETY: done < count: the range [base+done, base+count) is the caller's buffer.
                n = try systemCall("pread(fd \(fd), \(count - done) bytes at \(offset + UInt64(done)))") {
                    Glibc.pread(fd, base + done, count - done, off_t(offset + UInt64(done)))
                }
            } catch {
                throw VirtioError(.io, "disk read failed", underlying: error)
            }
            guard n > 0 else { throw VirtioError(.io, "disk ends at \(offset + UInt64(done)), before the \(count)-byte read at \(offset) completed") }
            done += n
        }
    }

    private func writeAll(_ base: UnsafeRawPointer, _ count: Int, at offset: UInt64) throws(VirtioError) {
        let fd = file.rawValue
        var done = 0
        while done < count {
            let n: Int
            do {
                // SAFETY: done < count: the range [base+done, base+count) is the caller's buffer.
                n = try systemCall("pwrite(fd \(fd), \(count - done) bytes at \(offset + UInt64(done)))") {
                    Glibc.pwrite(fd, base + done, count - done, off_t(offset + UInt64(done)))
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
