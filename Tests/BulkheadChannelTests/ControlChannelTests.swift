import BulkheadProtocol
import BulkheadSystem
import CBulkheadLinux
import Testing

@testable import BulkheadChannel

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ControlChannelTests {
    @Test func messagesCrossBothWays() throws {
        let pair = try ChannelPair()
        try pair.domain.send(.hello(.init(kind: "blk", id: "blk0", pid: 1)))
        #expect(try pair.core.tryReceive() == .hello(.init(kind: "blk", id: "blk0", pid: 1)))
        #expect(try pair.core.tryReceive() == nil)
        let attach = ControlMessage.attach(
            .init(generation: 1, deviceFeatures: 1 << 32, queues: [], guestMemorySize: 1 << 28, config: [9]))
        try pair.core.send(attach)
        try pair.core.send(.shutdown)
        #expect(try pair.domain.receive(timeoutMilliseconds: 0) == attach)
        #expect(try pair.domain.receive(timeoutMilliseconds: 0) == .shutdown)
        #expect(try pair.domain.receive(timeoutMilliseconds: 5) == nil)
    }

    /// Frames of random sizes, sent in random bursts and drained in random amounts, so that
    /// lengths and payloads land on every offset of the ring and wrap around it many times.
    @Test func wrapAroundWithRandomFrameSizes() throws {
        let pair = try ChannelPair()
        var rng = SplitMix64(seed: 42)
        var payload = [UInt8](repeating: 0, count: ControlRegionLayout.maxFrameSize)
        var sent = 0
        var received = 0
        var pendingSizes: [Int] = []
        var pendingStart = 0
        func fill(_ buffer: inout [UInt8], sequence: Int, count: Int) {
            for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: sequence &* 31 &+ i) }
        }
        while received < 150_000 {
            // Mostly small frames (like real messages), sometimes up to the limit.
            let burst = Int(rng.next() % 16) + 1
            for _ in 0..<burst {
                let size =
                    rng.next() % 8 == 0
                    ? Int(rng.next() % UInt64(ControlRegionLayout.maxFrameSize)) + 1
                    : Int(rng.next() % 200) + 1
                fill(&payload, sequence: sent, count: size)
                do {
                    try payload.withUnsafeBytes { try pair.core.send(frame: UnsafeRawBufferPointer(rebasing: $0[..<size])) }
                    pendingSizes.append(size)
                    sent += 1
                } catch let error as ChannelError where error.code == .ringFull {
                    break
                }
            }
            let drain = Int(rng.next() % 20)
            for _ in 0..<drain {
                guard let count = try pair.domain.receiveFrame() else { break }
                #expect(count == pendingSizes[pendingStart])
                fill(&payload, sequence: received, count: count)
                let frame = pair.domain.receivedFrame(count)
                if !frame.elementsEqual(payload[..<count]) {
                    Issue.record("frame \(received) differs")
                    return
                }
                pendingStart += 1
                received += 1
            }
            if pendingStart > 4096 {
                pendingSizes.removeFirst(pendingStart)
                pendingStart = 0
            }
        }
        #expect(received > 100_000)
    }

    @Test func fullRingRefusesThenAcceptsAfterDraining() throws {
        let pair = try ChannelPair()
        let frame = [UInt8](repeating: 7, count: 1020)  // 1024 bytes with the length
        var accepted = 0
        while true {
            do {
                try frame.withUnsafeBytes { try pair.domain.send(frame: $0) }
                accepted += 1
            } catch let error as ChannelError {
                #expect(error.code == .ringFull)
                break
            }
        }
        #expect(accepted == ControlRegionLayout.ringCapacity / 1024)
        #expect(try pair.core.receiveFrame() == 1020)
        try frame.withUnsafeBytes { try pair.domain.send(frame: $0) }
        let tooBig = [UInt8](repeating: 0, count: ControlRegionLayout.maxFrameSize + 1)
        #expect(throws: ChannelError.self) { try tooBig.withUnsafeBytes { try pair.domain.send(frame: $0) } }
    }

    /// A hostile domain writes impossible indices and lengths into the shared memory: the core
    /// gets `corruptFrame`, never a trap, and never reads outside the ring.
    @Test func corruptIndicesAndLengthsAreErrors() throws {
        typealias L = ControlRegionLayout
        let cases: [(String, (ControlRegion) -> Void)] = [
            ("producer far ahead", { bh_atomic_store_release_u64(headerField($0, L.domainToCoreProducerOffset), 1 << 40) }),
            ("producer behind consumer", { bh_atomic_store_release_u64(headerField($0, L.domainToCoreProducerOffset), .max - 7) }),
            ("producer unaligned", { bh_atomic_store_release_u64(headerField($0, L.domainToCoreProducerOffset), 12) }),
            ("length zero", { region in
                bh_atomic_store_release_u32(region.base + L.domainToCoreRingOffset, 0)
                bh_atomic_store_release_u64(headerField(region, L.domainToCoreProducerOffset), 8)
            }),
            ("length over the frame limit", { region in
                bh_atomic_store_release_u32(region.base + L.domainToCoreRingOffset, UInt32(L.maxFrameSize + 1))
                bh_atomic_store_release_u64(headerField(region, L.domainToCoreProducerOffset), UInt64(L.ringCapacity))
            }),
            ("length past the published bytes", { region in
                bh_atomic_store_release_u32(region.base + L.domainToCoreRingOffset, 100)
                bh_atomic_store_release_u64(headerField(region, L.domainToCoreProducerOffset), 64)
            }),
            ("length 0xFFFFFFFF", { region in
                bh_atomic_store_release_u32(region.base + L.domainToCoreRingOffset, .max)
                bh_atomic_store_release_u64(headerField(region, L.domainToCoreProducerOffset), UInt64(L.ringCapacity))
            }),
        ]
        for (name, corrupt) in cases {
            let pair = try ChannelPair()
            corrupt(pair.domain.region)
            do {
                _ = try pair.core.tryReceive()
                Issue.record("\(name): accepted")
            } catch {
                #expect(error.code == .corruptFrame, "\(name): \(error)")
            }
        }
        // The consumer index the core's sender reads, corrupted.
        let pair = try ChannelPair()
        bh_atomic_store_release_u64(headerField(pair.domain.region, L.coreToDomainConsumerOffset), 999)
        #expect(throws: ChannelError.self) { try pair.core.send(.ping(.init(sequence: 1, sentNanoseconds: 2))) }
    }

    @Test func garbageFrameIsAMalformedMessage() throws {
        let pair = try ChannelPair()
        let garbage: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
        try garbage.withUnsafeBytes { try pair.domain.send(frame: $0) }
        try pair.domain.send(.resetDone)
        do {
            _ = try pair.core.tryReceive()
            Issue.record("garbage accepted")
        } catch {
            #expect(error.code == .malformedMessage)
            #expect(error.underlying is ProtocolError)
        }
        // The bad frame was consumed; the channel itself is still consistent.
        #expect(try pair.core.tryReceive() == .resetDone)
    }

    @Test func doorbellRungOnlyWhenThePeerSleeps() throws {
        let pair = try ChannelPair()
        var counter: UInt64 = 0
        try pair.core.send(.reset)
        let unrung = try? withUnsafeMutableBytes(of: &counter) { try pair.domain.incomingDoorbell.read(into: $0) }
        #expect(unrung == nil, "doorbell rung while the domain was not sleeping")
        let sleeping = headerField(pair.core.region, ControlRegionLayout.coreToDomainSleepingOffset)
        bh_atomic_store_release_u32(sleeping, 1)
        try pair.core.send(.reset)
        #expect(try withUnsafeMutableBytes(of: &counter) { try pair.domain.incomingDoorbell.read(into: $0) } == 8)
        #expect(counter == 1)
        #expect(bh_atomic_load_acquire_u32(sleeping) == 0, "the sender clears the flag it acted on")
    }

    /// The multi-fd sleep of a domain (kicks + doorbell): prepare, poll, finish.
    @Test func prepareToSleepAndFinishSleeping() throws {
        let pair = try ChannelPair()
        let sleeping = headerField(pair.domain.region, ControlRegionLayout.coreToDomainSleepingOffset)
        #expect(pair.domain.prepareToSleep())
        #expect(bh_atomic_load_acquire_u32(sleeping) == 1)
        try pair.core.send(.ping(.init(sequence: 1, sentNanoseconds: 0)))
        var descriptor = pollfd(fd: pair.domain.incomingDoorbell.rawValue, events: Int16(POLLIN), revents: 0)
        #expect(poll(&descriptor, 1, 1000) == 1, "the doorbell was rung")
        pair.domain.finishSleeping()
        #expect(bh_atomic_load_acquire_u32(sleeping) == 0)
        #expect(poll(&descriptor, 1, 0) == 0, "the doorbell was drained")
        // A message is waiting: don't sleep.
        #expect(!pair.domain.prepareToSleep())
        #expect(bh_atomic_load_acquire_u32(sleeping) == 0)
        #expect(try pair.domain.tryReceive() == .ping(.init(sequence: 1, sentNanoseconds: 0)))
    }

    @Test func sleepingReceiverIsWokenByTheDoorbell() throws {
        let pair = try ChannelPair(spinNanoseconds: 0)
        let domain = pair.domain
        let thread = TestThread {
            // Let the core fall asleep first.
            usleep(20_000)
            _ = try? domain.send(.attached(.init(replayed: 3)))
        }
        let message = try pair.core.receive(timeoutMilliseconds: 10_000)
        thread.join()
        #expect(message == .attached(.init(replayed: 3)))
    }

    @Test func resetRingsEmptiesRingsAndKeepsRecovery() throws {
        let pair = try ChannelPair()
        pair.domain.region.queueRecovery(3)[0] = 0x42
        pair.domain.region.publish(.running)
        pair.domain.region.beat()
        pair.domain.region.raiseInterrupt(1)
        try pair.domain.send(.resetDone)
        try pair.core.send(.shutdown)
        pair.core.resetRings(generation: 5)
        #expect(try pair.core.tryReceive() == nil)
        #expect(pair.core.region.generation == 5)
        #expect(pair.core.region.domainState == .absent)
        #expect(pair.core.region.heartbeat == 0)
        #expect(pair.core.region.interruptStatus == 1)
        #expect(pair.core.region.queueRecovery(3)[0] == 0x42)
        // A new domain generation maps the same region and talks from index 0.
        let region = try ControlRegion(mapping: try duplicate(pair.core.region.file))
        let next = ControlChannel(
            region: region, side: .domain, incomingDoorbell: try duplicate(pair.core.outgoingDoorbell),
            outgoingDoorbell: try duplicate(pair.core.incomingDoorbell))
        try pair.core.send(.attach(.init(generation: 5, deviceFeatures: 0, queues: [], guestMemorySize: 0)))
        #expect(try next.tryReceive() == .attach(.init(generation: 5, deviceFeatures: 0, queues: [], guestMemorySize: 0)))
        try next.send(.attached(.init(replayed: 0)))
        #expect(try pair.core.tryReceive() == .attached(.init(replayed: 0)))
    }
}
