#if canImport(Glibc)
import Glibc
#endif

/// An owned `mmap` region, unmapped exactly once when its owner goes away.
public struct MemoryMapping: ~Copyable, @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let length: Int

    /// Maps `length` bytes of `file` shared and read-write.
    public init(sharing file: borrowing FileDescriptor, length: Int, offset: Int = 0) throws(SystemError) {
        let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, file.rawValue, off_t(offset))
        guard let address, address != MAP_FAILED else {
            throw SystemError(call: "mmap(fd \(file.rawValue), \(length) bytes)", errno: .current)
        }
        self.base = address
        self.length = length
    }

    deinit { _ = munmap(base, length) }

    /// The mapping as a raw buffer.
    public var buffer: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: length)
    }
}
