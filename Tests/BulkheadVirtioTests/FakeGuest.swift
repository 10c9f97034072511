@testable import BulkheadVirtio

/// A virtio driver written by hand, as a guest would: guest RAM is a host allocation, and the
/// descriptor table and rings are written field by field at fixed guest addresses.
final class FakeGuest {
    static let ramSize = 4 << 20
    static let descriptorTable: UInt64 = 0x1000
    static let availableRing: UInt64 = 0x8000
    static let usedRing: UInt64 = 0xA000
    static let dataArea: UInt64 = 0x10_0000

    let ram: UnsafeMutableRawBufferPointer
    let recoveryBlock: UnsafeMutableRawBufferPointer
    let memory: GuestRAM
    let size: UInt16
    let eventIndex: Bool
    let indirect: Bool
    /// The driver's avail.idx.
    var availIndex: UInt16 = 0
    /// Added to the three queue addresses (a second queue of a device, elsewhere).
    let queueOffset: UInt64
    var descriptorTable: UInt64 { Self.descriptorTable + queueOffset }
    var availableRing: UInt64 { Self.availableRing + queueOffset }
    var usedRing: UInt64 { Self.usedRing + queueOffset }

    init(size: UInt16 = 8, eventIndex: Bool = false, indirect: Bool = false, queueOffset: UInt64 = 0) throws {
        self.queueOffset = queueOffset
        ram = .allocate(byteCount: Self.ramSize, alignment: 4096)
        ram.initializeMemory(as: UInt8.self, repeating: 0)
        recoveryBlock = .allocate(byteCount: 16 << 10, alignment: 4096)
        recoveryBlock.initializeMemory(as: UInt8.self, repeating: 0)
        memory = try GuestRAM(base: ram.baseAddress!, mappingLength: ram.count,
                              regions: [.init(guestAddress: 0, size: UInt64(ram.count), offsetInMapping: 0)])
        self.size = size
        self.eventIndex = eventIndex
        self.indirect = indirect
    }

    deinit {
        ram.deallocate()
        recoveryBlock.deallocate()
    }

    var configuration: QueueConfiguration {
        QueueConfiguration(size: size, descriptorTable: descriptorTable, availableRing: availableRing,
                           usedRing: usedRing, eventIndex: eventIndex, indirectDescriptors: indirect)
    }

    /// A new device-side queue over this guest (a fresh domain), recovered.
    func queue() throws -> (SplitVirtqueue, [UInt16]) {
        let queue = try SplitVirtqueue(memory: memory, configuration: configuration, recoveryBlock: recoveryBlock)
        let replay = try queue.recover()
        return (queue, replay)
    }

    // MARK: raw access

    func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) {
        ram.baseAddress!.storeBytes(of: value.littleEndian, toByteOffset: Int(address), as: T.self)
    }

    func load<T: FixedWidthInteger>(_: T.Type, at address: UInt64) -> T {
        T(littleEndian: ram.baseAddress!.loadUnaligned(fromByteOffset: Int(address), as: T.self))
    }

    func bytes(at address: UInt64, count: Int) -> [UInt8] {
        Array(ram[Int(address)..<(Int(address) + count)])
    }

    func write(_ bytes: [UInt8], at address: UInt64) {
        for (index, byte) in bytes.enumerated() { ram[Int(address) + index] = byte }
    }

    // MARK: driver operations

    /// Writes descriptor `index` of the table at `table` (the queue's table by default).
    func setDescriptor(_ index: Int, address: UInt64, length: UInt32, flags: UInt16 = 0, next: UInt16 = 0,
                       table: UInt64? = nil) {
        let base = (table ?? descriptorTable) + UInt64(index) * 16
        store(address, at: base)
        store(length, at: base + 8)
        store(flags, at: base + 12)
        store(next, at: base + 14)
    }

    /// Puts `head` in the available ring and publishes it (`avail.idx += 1`).
    func makeAvailable(_ head: UInt16) {
        store(head, at: availableRing + 4 + 2 * UInt64(availIndex % size))
        availIndex &+= 1
        store(availIndex, at: availableRing + 2)
    }

    /// Sets avail.idx without writing ring entries (a hostile driver).
    func setAvailIndex(_ value: UInt16) {
        availIndex = value
        store(value, at: availableRing + 2)
    }

    /// Writes a chain of `buffers` at descriptors `first`, `first+1`, … and makes it available.
    @discardableResult
    func submit(_ buffers: [(address: UInt64, length: UInt32, writable: Bool)], first: UInt16 = 0) -> UInt16 {
        for (offset, buffer) in buffers.enumerated() {
            let index = Int(first) + offset
            var flags: UInt16 = buffer.writable ? Descriptor.flagWrite : 0
            if offset + 1 < buffers.count { flags |= Descriptor.flagNext }
            setDescriptor(index, address: buffer.address, length: buffer.length, flags: flags, next: UInt16(index + 1))
        }
        makeAvailable(first)
        return first
    }

    var usedIndex: UInt16 { load(UInt16.self, at: usedRing + 2) }
    var usedFlags: UInt16 { load(UInt16.self, at: usedRing) }
    var availEvent: UInt16 { load(UInt16.self, at: usedRing + 4 + 8 * UInt64(size)) }
    func setUsedEvent(_ value: UInt16) { store(value, at: availableRing + 4 + 2 * UInt64(size)) }
    func setAvailFlags(_ value: UInt16) { store(value, at: availableRing) }

    /// The used element at position `index` (mod size): (id, len).
    func usedElement(_ index: UInt16) -> (id: UInt32, length: UInt32) {
        let base = usedRing + 4 + 8 * UInt64(index % size)
        return (load(UInt32.self, at: base), load(UInt32.self, at: base + 4))
    }

    // MARK: crash snapshots

    /// Everything that outlives a domain process: guest RAM and the recovery block.
    struct Snapshot {
        let ram: [UInt8]
        let recovery: [UInt8]
    }

    func snapshot() -> Snapshot { Snapshot(ram: Array(ram), recovery: Array(recoveryBlock)) }

    func restore(_ snapshot: Snapshot) {
        ram.copyBytes(from: snapshot.ram)
        recoveryBlock.copyBytes(from: snapshot.recovery)
    }
}
