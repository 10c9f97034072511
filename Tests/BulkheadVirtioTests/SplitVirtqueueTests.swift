@testable import BulkheadVirtio
import Testing

private let data = FakeGuest.dataArea

/// Pops and expects a malformed-chain error carrying `head`.
private func expectMalformed(_ queue: SplitVirtqueue, head: UInt16, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let chain = try queue.popAvailable()
        Issue.record("expected a malformed chain, got \(String(describing: chain))", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == .malformedChain, "\(error)", sourceLocation: sourceLocation)
        #expect(error.head == head, sourceLocation: sourceLocation)
    }
}

func expectCode(_ code: VirtioError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(code)", sourceLocation: sourceLocation)
    } catch let error as VirtioError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected a VirtioError, got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Split virtqueue: descriptor chains")
struct SplitVirtqueueTests {
    @Test func configurationIsChecked() throws {
        let guest = try FakeGuest()
        for bad in [
            QueueConfiguration(size: 0, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: 0xA000),
            QueueConfiguration(size: 12, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: 0xA000),
            QueueConfiguration(size: 2048, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: 0xA000),
            QueueConfiguration(size: 8, descriptorTable: 0x1008, availableRing: 0x8000, usedRing: 0xA000),
            QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x8001, usedRing: 0xA000),
            QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: 0xA002),
            QueueConfiguration(size: 8, descriptorTable: UInt64(FakeGuest.ramSize) - 64, availableRing: 0x8000, usedRing: 0xA000),
            QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: UInt64.max - 3),
            // The used ring over the available ring (used.idx on avail.idx: the device's own
            // completions would make work for it without end) or over the descriptor table.
            QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: 0x8000),
            QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x8010, usedRing: 0x8000),
            QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x8000, usedRing: 0x1070),
        ] {
            expectCode(.invalidConfiguration) { _ = try SplitVirtqueue(memory: guest.memory, configuration: bad, recoveryBlock: guest.recoveryBlock) }
        }
        // Adjacent parts, as a driver lays them out contiguously, are fine (EVENT_IDX included).
        let contiguous = QueueConfiguration(size: 8, descriptorTable: 0x1000, availableRing: 0x1080, usedRing: 0x1098, eventIndex: true)
        _ = try SplitVirtqueue(memory: guest.memory, configuration: contiguous, recoveryBlock: guest.recoveryBlock)
        let small = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { small.deallocate() }
        expectCode(.invalidConfiguration) { _ = try SplitVirtqueue(memory: guest.memory, configuration: guest.configuration, recoveryBlock: small) }
    }

    @Test func popBeforeRecoverIsRefused() throws {
        let guest = try FakeGuest()
        let queue = try SplitVirtqueue(memory: guest.memory, configuration: guest.configuration, recoveryBlock: guest.recoveryBlock)
        expectCode(.notRecovered) { _ = try queue.popAvailable() }
    }

    @Test func simpleChainReadableThenWritable() throws {
        let guest = try FakeGuest()
        let (queue, replay) = try guest.queue()
        #expect(replay.isEmpty)
        #expect(try queue.popAvailable() == nil)
        guest.write([1, 2, 3, 4], at: data)
        let head = guest.submit([(data, 16, false), (data + 0x100, 512, true), (data + 0x400, 1, true)], first: 3)
        let chain = try #require(try queue.popAvailable())
        #expect(chain.head == head)
        #expect(chain.readable.map(\.guestAddress) == [data])
        #expect(chain.writable.map(\.guestAddress) == [data + 0x100, data + 0x400])
        #expect(chain.readableLength == 16 && chain.writableLength == 513)
        #expect(Array(chain.readable[0].bytes.prefix(4)) == [1, 2, 3, 4])
        #expect(try queue.popAvailable() == nil)
        #expect(queue.inFlightCount == 1)
        try queue.pushUsed(head: head, length: 513)
        #expect(guest.usedIndex == 1)
        #expect(guest.usedElement(0) == (3, 513))
        #expect(queue.inFlightCount == 0)
        expectCode(.headNotInFlight) { try queue.pushUsed(head: head, length: 0) }
        #expect(guest.usedIndex == 1)
    }

    @Test func ringsWrapAroundTheSixteenBitIndex() throws {
        let guest = try FakeGuest(size: 4)
        let (queue, _) = try guest.queue()
        for round in 0..<70_000 {
            let head = UInt16(round % 4)
            guest.submit([(data, 8, false)], first: head)
            let chain = try #require(try queue.popAvailable())
            #expect(chain.head == head)
            try queue.pushUsed(head: head, length: 0)
        }
        #expect(guest.usedIndex == UInt16(truncatingIfNeeded: 70_000))
        #expect(queue.lastAvailIndex == UInt16(truncatingIfNeeded: 70_000))
    }

    @Test func loopsEndInAnError() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        // 0 → 1 → 0 → …
        guest.setDescriptor(0, address: data, length: 8, flags: Descriptor.flagNext, next: 1)
        guest.setDescriptor(1, address: data, length: 8, flags: Descriptor.flagNext, next: 0)
        guest.makeAvailable(0)
        expectMalformed(queue, head: 0)
        // a self-loop
        guest.setDescriptor(2, address: data, length: 8, flags: Descriptor.flagNext, next: 2)
        guest.makeAvailable(2)
        expectMalformed(queue, head: 2)
        // next beyond the table
        guest.setDescriptor(3, address: data, length: 8, flags: Descriptor.flagNext, next: 8)
        guest.makeAvailable(3)
        expectMalformed(queue, head: 3)
        // Malformed chains are consumed and in flight: the device completes them.
        #expect(queue.inFlightCount == 3)
        for head: UInt16 in [0, 2, 3] { try queue.pushUsed(head: head, length: 0) }
        #expect(guest.usedIndex == 3)
        #expect(try queue.popAvailable() == nil)
    }

    @Test func hostileAddressesAndLengths() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        let ramEnd = UInt64(FakeGuest.ramSize)
        let cases: [(UInt64, UInt32)] = [
            (ramEnd, 1),  // just past RAM
            (ramEnd - 4, 8),  // straddles the end
            (UInt64.max - 3, 8),  // wraps
            (0, UInt32.max),  // absurd length
        ]
        for (index, (address, length)) in cases.enumerated() {
            guest.setDescriptor(index, address: address, length: length)
            guest.makeAvailable(UInt16(index))
            expectMalformed(queue, head: UInt16(index))
        }
        // A chain whose buffers are each fine but whose total is over 64 MiB: not reachable in
        // 4 MiB of RAM with distinct buffers, but aliasing is allowed, so repeat one buffer.
        let guest2 = try FakeGuest(size: 32)
        let (queue2, _) = try guest2.queue()
        for index in 0..<32 {
            guest2.setDescriptor(index, address: 0, length: 3 << 20, flags: index < 31 ? Descriptor.flagNext : 0,
                                 next: UInt16(index + 1))
        }
        guest2.makeAvailable(0)
        expectMalformed(queue2, head: 0)
    }

    @Test func readableAfterWritableIsMalformed() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        guest.submit([(data, 8, true), (data + 8, 8, false)])
        expectMalformed(queue, head: 0)
    }

    @Test func availIndexJumpingBeyondTheQueueSize() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        guest.setAvailIndex(9)
        expectCode(.availIndexJump) { _ = try queue.popAvailable() }
        #expect(queue.lastAvailIndex == 0)  // nothing consumed
        guest.setAvailIndex(0xFFFF)  // "behind" is a jump too
        expectCode(.availIndexJump) { _ = try queue.popAvailable() }
        guest.setAvailIndex(0)
        #expect(try queue.popAvailable() == nil)
    }

    @Test func headOutOfRangeOrAlreadyInFlight() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        guest.makeAvailable(8)
        expectCode(.headOutOfRange) { _ = try queue.popAvailable() }
        guest.submit([(data, 8, false)], first: 1)
        _ = try #require(try queue.popAvailable())
        guest.makeAvailable(1)  // resubmitted while in flight
        expectCode(.headInFlight) { _ = try queue.popAvailable() }
        #expect(queue.lastAvailIndex == 3)
        try queue.pushUsed(head: 1, length: 0)
        expectCode(.headNotInFlight) { try queue.pushUsed(head: 1, length: 0) }
        expectCode(.headNotInFlight) { try queue.pushUsed(head: 9, length: 0) }
        #expect(guest.usedIndex == 1)
    }

    @Test func indirectTables() throws {
        let guest = try FakeGuest(indirect: true)
        let (queue, _) = try guest.queue()
        let table = data + 0x1000
        guest.setDescriptor(0, address: data, length: 16, flags: Descriptor.flagNext, next: 2, table: table)
        guest.setDescriptor(2, address: data + 0x100, length: 512, flags: Descriptor.flagWrite | Descriptor.flagNext, next: 1, table: table)
        guest.setDescriptor(1, address: data + 0x400, length: 1, flags: Descriptor.flagWrite, table: table)
        // A direct descriptor first, then the indirect one.
        guest.setDescriptor(4, address: data + 0x800, length: 4, flags: Descriptor.flagNext, next: 5)
        guest.setDescriptor(5, address: table, length: 48, flags: Descriptor.flagIndirect)
        guest.makeAvailable(4)
        let chain = try #require(try queue.popAvailable())
        #expect(chain.head == 4)
        #expect(chain.readable.map(\.guestAddress) == [data + 0x800, data])
        #expect(chain.writable.map(\.guestAddress) == [data + 0x100, data + 0x400])
        try queue.pushUsed(head: 4, length: 513)
    }

    @Test func malformedIndirectTables() throws {
        let guest = try FakeGuest(indirect: true)
        let (queue, _) = try guest.queue()
        let table = data + 0x1000
        guest.setDescriptor(0, address: data, length: 16, table: table)
        let ramEnd = UInt64(FakeGuest.ramSize)
        // (table address, table length, flags of the indirect descriptor)
        let cases: [(UInt64, UInt32, UInt16)] = [
            (table, 20, Descriptor.flagIndirect),  // not a multiple of 16
            (table, 0, Descriptor.flagIndirect),  // empty
            (ramEnd - 16, 32, Descriptor.flagIndirect),  // outside RAM
            (table, 16 * 2048, Descriptor.flagIndirect),  // too many entries
            (table, 16, Descriptor.flagIndirect | Descriptor.flagNext),  // indirect + next
        ]
        for (index, (address, length, flags)) in cases.enumerated() {
            guest.setDescriptor(index, address: address, length: length, flags: flags, next: 7)
            guest.makeAvailable(UInt16(index))
            expectMalformed(queue, head: UInt16(index))
        }
        // Nested indirect.
        let nested = data + 0x2000
        guest.setDescriptor(0, address: table, length: 16, flags: Descriptor.flagIndirect, table: nested)
        guest.setDescriptor(5, address: nested, length: 16, flags: Descriptor.flagIndirect)
        guest.makeAvailable(5)
        expectMalformed(queue, head: 5)
        // A loop inside the table.
        let looping = data + 0x3000
        guest.setDescriptor(0, address: data, length: 8, flags: Descriptor.flagNext, next: 1, table: looping)
        guest.setDescriptor(1, address: data, length: 8, flags: Descriptor.flagNext, next: 0, table: looping)
        guest.setDescriptor(6, address: looping, length: 32, flags: Descriptor.flagIndirect)
        guest.makeAvailable(6)
        expectMalformed(queue, head: 6)
        // next beyond the table.
        guest.setDescriptor(0, address: data, length: 8, flags: Descriptor.flagNext, next: 2, table: looping)
        guest.setDescriptor(7, address: looping, length: 32, flags: Descriptor.flagIndirect)
        guest.makeAvailable(7)
        expectMalformed(queue, head: 7)

        // Without VIRTIO_F_INDIRECT_DESC the flag is malformed.
        let plain = try FakeGuest(indirect: false)
        let (plainQueue, _) = try plain.queue()
        plain.setDescriptor(0, address: data, length: 16, table: table)
        plain.setDescriptor(0, address: table, length: 16, flags: Descriptor.flagIndirect)
        plain.makeAvailable(0)
        expectMalformed(plainQueue, head: 0)
    }

    @Test func descriptorsAreReadOnce() throws {
        // The chain keeps the addresses it saw, whatever the guest writes afterwards.
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        guest.submit([(data, 8, false)])
        let chain = try #require(try queue.popAvailable())
        guest.setDescriptor(0, address: UInt64.max - 1, length: UInt32.max)
        #expect(chain.readable[0].guestAddress == data && chain.readable[0].bytes.count == 8)
    }
}
