import BulkheadChannel
import BulkheadSystem
import BulkheadVirtio
import Testing

@testable import BulkheadEmulated

#if canImport(Glibc)
import Glibc
#endif

/// An RTL8139 over real objects, the way a domain has them: guest memory is a memfd mapping
/// (with a canary area after the part the guest owns), the device state lives in a real
/// control region, the tap is one end of a `SOCK_SEQPACKET` socket pair (the test holds the
/// other: the host side), the interrupt is an eventfd. The test plays the guest driver through
/// `read`/`write` (each access numbered like the core's) and guest memory.
final class NICHarness {
    static let guestSize = 4 << 20
    /// Bytes after guest memory in the same mapping, filled with `canaryByte`: no DMA may touch them.
    static let canarySize = 1 << 20
    static let canaryByte: UInt8 = 0xA5
    static let mac: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]

    let memoryFile: FileDescriptor
    let mapping: MemoryMapping
    let memory: GuestRAM
    let region: ControlRegion
    /// The device's end of the "tap", and the host's.
    let tapFD: Int32
    let hostFD: Int32
    let irq: FileDescriptor
    private(set) var nic: RTL8139
    /// The core's sequence numbers.
    var sequence: UInt64 = 0

    init() throws {
        memoryFile = try FileDescriptor.memfd(name: "rtl8139-test-guest", size: Self.guestSize + Self.canarySize)
        mapping = try MemoryMapping(sharing: memoryFile, length: Self.guestSize + Self.canarySize)
        UnsafeMutableRawBufferPointer(start: mapping.base + Self.guestSize, count: Self.canarySize)
            .initializeMemory(as: UInt8.self, repeating: Self.canaryByte)
        memory = try GuestRAM(base: mapping.base, mappingLength: Self.guestSize,
                              regions: [.init(guestAddress: 0, size: UInt64(Self.guestSize), offsetInMapping: 0)])
        region = try ControlRegion.create(name: "rtl8139-test-control")
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw SystemError(call: "socketpair", errno: .current)
        }
        tapFD = pair[0]
        hostFD = pair[1]
        irq = try FileDescriptor.eventfd(nonBlocking: true)
        nic = try RTL8139(stateArea: region.deviceState, memory: memory, stationAddress: Self.mac,
                          wire: FileDescriptorWire(fd: pair[0]), interrupt: EventfdInterruptLine(fd: irq.rawValue))
    }

    deinit {
        close(tapFD)
        close(hostFD)
    }

    /// A new device on the same state area, guest memory and fds: what a restarted domain builds.
    func restart() throws {
        nic = try RTL8139(stateArea: region.deviceState, memory: memory, stationAddress: Self.mac,
                          wire: FileDescriptorWire(fd: tapFD), interrupt: EventfdInterruptLine(fd: irq.rawValue))
    }

    // MARK: register accesses, numbered like the core's

    @discardableResult
    func access(_ offset: Int, size: UInt32, write value: UInt64? = nil, bar: UInt32 = 0) -> UInt64 {
        sequence += 1
        return nic.registerAccess(bar: bar, offset: UInt64(offset), size: size, write: value, sequence: sequence)
    }

    func read8(_ offset: Int) -> UInt8 { UInt8(truncatingIfNeeded: access(offset, size: 1)) }
    func read16(_ offset: Int) -> UInt16 { UInt16(truncatingIfNeeded: access(offset, size: 2)) }
    func read32(_ offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: access(offset, size: 4)) }
    func write8(_ offset: Int, _ value: UInt8) { access(offset, size: 1, write: UInt64(value)) }
    func write16(_ offset: Int, _ value: UInt16) { access(offset, size: 2, write: UInt64(value)) }
    func write32(_ offset: Int, _ value: UInt32) { access(offset, size: 4, write: UInt64(value)) }

    /// Interrupt edges raised since the last call (the eventfd's counter).
    func interrupts() -> UInt64 { readEventfd(irq.rawValue) ?? 0 }

    // MARK: guest memory

    func store(_ bytes: [UInt8], at address: Int) {
        UnsafeMutableRawBufferPointer(start: mapping.base + address, count: bytes.count).copyBytes(from: bytes)
    }

    func fill(_ byte: UInt8, at address: Int, count: Int) {
        UnsafeMutableRawBufferPointer(start: mapping.base + address, count: count).initializeMemory(as: UInt8.self, repeating: byte)
    }

    func bytes(at address: Int, count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: mapping.base + address, count: count))
    }

    func load32(at address: Int) -> UInt32 {
        UInt32(littleEndian: mapping.base.loadUnaligned(fromByteOffset: address, as: UInt32.self))
    }

    var canaryIntact: Bool {
        UnsafeRawBufferPointer(start: mapping.base + Self.guestSize, count: Self.canarySize).allSatisfy { $0 == Self.canaryByte }
    }

    // MARK: the host side of the tap

    func hostSend(_ frame: [UInt8]) throws {
        let n = frame.withUnsafeBytes { Glibc.send(hostFD, $0.baseAddress, $0.count, 0) }
        guard n == frame.count else { throw SystemError(call: "send", errno: .current) }
    }

    /// The next frame the device sent, waiting up to `milliseconds`.
    func hostReceive(milliseconds: Int32 = 1000) -> [UInt8]? {
        var entry = pollfd(fd: hostFD, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, milliseconds) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(hostFD, $0.baseAddress, $0.count, 0) }
        return n >= 0 ? Array(buffer[0..<n]) : nil
    }

    // MARK: a driver's steps

    /// What Linux's 8139too does to start the chip: reset, station address, ring, RE | TE,
    /// RCR, transmit buffers, all interrupts enabled.
    func start(ring: Int, receiveConfiguration: UInt32, transmitBuffers: [Int] = [0x1_0000, 0x1_1000, 0x1_2000, 0x1_3000],
               interruptMask: UInt16 = 0xE07F) {
        write8(RTL8139Register.cr, RTL8139Command.reset)
        write32(RTL8139Register.rbstart, UInt32(ring))
        write8(RTL8139Register.cr, RTL8139Command.receiverEnable | RTL8139Command.transmitterEnable)
        write32(RTL8139Register.rcr, receiveConfiguration)
        for (n, address) in transmitBuffers.enumerated() { write32(RTL8139Register.tsad0 + 4 * n, UInt32(address)) }
        write16(RTL8139Register.imr, interruptMask)
    }

    /// A frame to `destination` from a fixed source, with a recognisable payload.
    static func frame(to destination: [UInt8], length: Int, seed: UInt8 = 0) -> [UInt8] {
        var frame = destination + [0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00]
        while frame.count < length { frame.append(UInt8(truncatingIfNeeded: frame.count) &+ seed) }
        return Array(frame.prefix(length))
    }
}

/// A small deterministic generator, so that a failing input can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
