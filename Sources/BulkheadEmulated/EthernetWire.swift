import BulkheadSystem
#if canImport(Glibc)
import Glibc
#endif

/// Where an emulated NIC's frames go and come from: the tap device in a domain, a socket pair
/// in tests.
public protocol EthernetWire: AnyObject {
    /// Sends one frame; false when the wire refused it (full, gone).
    func send(_ frame: UnsafeRawBufferPointer) -> Bool
    /// Moves the next waiting frame into `buffer` and returns its length, or nil when none is
    /// waiting. A frame longer than `buffer` is cut short.
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int?
}

/// The line an emulated NIC raises to interrupt the guest.
public protocol InterruptLine: AnyObject {
    /// An edge: the device's interrupt condition went from false to true.
    func raise()
}

/// A wire over a file descriptor that reads and writes whole frames: a tap opened
/// `IFF_TAP | IFF_NO_PI`, or a `SOCK_SEQPACKET` socket. Non-blocking: `receive` returns nil
/// when nothing waits. One `readv`/`writev` per frame (the calls the rtl8139 domain's seccomp
/// policy allows, on the tap's fd only). The descriptor is borrowed, not owned.
public final class FileDescriptorWire: EthernetWire {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public func send(_ frame: UnsafeRawBufferPointer) -> Bool {
        var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count)
        var written: Int
        repeat {
            // SAFETY: one iovec over the caller's buffer, which the kernel only reads.
            written = writev(fd, &vector, 1)
        } while written < 0 && errno == EINTR
        return written == frame.count
    }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        var length: Int
        repeat {
            // SAFETY: one iovec over the caller's buffer of `buffer.count` bytes.
            length = readv(fd, &vector, 1)
        } while length < 0 && errno == EINTR
        return length > 0 ? min(length, buffer.count) : nil
    }
}

/// An interrupt line that is an eventfd: a KVM irqfd in a domain (fd 7).
public final class EventfdInterruptLine: InterruptLine {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    public func raise() { signalEventfd(fd) }
}
