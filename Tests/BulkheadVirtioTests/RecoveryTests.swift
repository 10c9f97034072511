@testable import BulkheadVirtio
import Testing

private let data = FakeGuest.dataArea

@Suite("Split virtqueue: crash recovery")
struct RecoveryTests {
    /// Runs `operation` on a fresh queue; at `step` (nil: before the operation) snapshots what
    /// outlives the domain, then restores that snapshot after the operation: as if the domain
    /// had died right after that store. Returns the recovered queue and its replay list.
    private func crash(_ guest: FakeGuest, _ queue: SplitVirtqueue, at step: SplitVirtqueue.RecoveryStep?,
                       during operation: () throws -> Void) throws -> (SplitVirtqueue, [UInt16]) {
        var snapshot = guest.snapshot()
        var seen = step == nil
        queue.stepObserver = { reached in
            if reached == step {
                snapshot = guest.snapshot()
                seen = true
            }
        }
        try operation()
        queue.stepObserver = nil
        #expect(seen, "step \(String(describing: step)) was not reached")
        guest.restore(snapshot)
        return try guest.queue()
    }

    @Test func freshBlockHasNothingInFlight() throws {
        let guest = try FakeGuest()
        let (queue, replay) = try guest.queue()
        #expect(replay.isEmpty && queue.lastAvailIndex == 0 && queue.usedIndex == 0)
        #expect(guest.recoveryBlock.load(fromByteOffset: QueueRecoveryLayout.magicOffset, as: UInt32.self) == QueueRecoveryLayout.magic)
        // A block recorded for another queue size is refused.
        let other = try SplitVirtqueue(memory: guest.memory, configuration: QueueConfiguration(
            size: 16, descriptorTable: FakeGuest.descriptorTable, availableRing: FakeGuest.availableRing,
            usedRing: FakeGuest.usedRing), recoveryBlock: guest.recoveryBlock)
        #expect(throws: VirtioError.self) { _ = try other.recover() }
    }

    @Test func crashAtEveryPointOfAPop() throws {
        let steps: [SplitVirtqueue.RecoveryStep?] = [nil, .popRecorded, .popCommitted]
        for step in steps {
            let guest = try FakeGuest()
            let (queue, _) = try guest.queue()
            guest.submit([(data, 8, false)], first: 5)
            let (recovered, replay) = try crash(guest, queue, at: step) { _ = try queue.popAvailable() }
            if step == .popCommitted {
                #expect(replay == [5], "\(String(describing: step))")
                #expect(try recovered.popAvailable() == nil)
                _ = try recovered.chain(head: 5)
            } else {
                #expect(replay.isEmpty, "\(String(describing: step))")
                #expect(recovered.lastAvailIndex == 0)
                #expect(try recovered.popAvailable()?.head == 5)
            }
            try recovered.pushUsed(head: 5, length: 0)
            #expect(guest.usedIndex == 1 && guest.usedElement(0).id == 5)
            #expect(recovered.inFlightCount == 0)
        }
    }

    @Test func crashAtEveryPointOfACompletion() throws {
        let steps: [SplitVirtqueue.RecoveryStep?] = [nil, .usedElementWritten, .usedIndexPublished, .inflightCleared, .usedIndexRecorded]
        for step in steps {
            let guest = try FakeGuest()
            let (queue, _) = try guest.queue()
            guest.submit([(data, 8, false)], first: 2)
            guest.submit([(data, 8, false)], first: 6)
            _ = try queue.popAvailable()
            _ = try queue.popAvailable()
            let (recovered, replay) = try crash(guest, queue, at: step) { try queue.pushUsed(head: 6, length: 77) }
            let published = step == .usedIndexPublished || step == .inflightCleared || step == .usedIndexRecorded
            if published {
                // The guest may have seen head 6 complete: it is never replayed.
                #expect(replay == [2], "\(String(describing: step))")
                #expect(recovered.usedIndex == 1)
            } else {
                #expect(replay == [2, 6], "\(String(describing: step))")  // submission order
                #expect(recovered.usedIndex == 0)
            }
            for head in replay { try recovered.pushUsed(head: head, length: 0) }
            #expect(guest.usedIndex == 2)
            let ids = [guest.usedElement(0).id, guest.usedElement(1).id]
            #expect(Set(ids) == [2, 6], "\(String(describing: step)): \(ids)")
            #expect(try recovered.popAvailable() == nil)
        }
    }

    @Test func replayIsInSubmissionOrderNotHeadOrder() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        for head: UInt16 in [7, 1, 4, 0, 3] {
            guest.submit([(data, 8, false)], first: head)
            _ = try queue.popAvailable()
        }
        try queue.pushUsed(head: 4, length: 0)
        let (_, replay) = try guest.queue()
        #expect(replay == [7, 1, 0, 3])
        // Recovering again (a crash during replay) gives the same answer.
        let (_, again) = try guest.queue()
        #expect(again == [7, 1, 0, 3])
    }

    @Test func usedIndexWrittenByAHostileGuestIsRefused() throws {
        let guest = try FakeGuest()
        _ = try guest.queue()
        guest.store(UInt16(100), at: FakeGuest.usedRing + 2)
        let queue = try SplitVirtqueue(memory: guest.memory, configuration: guest.configuration, recoveryBlock: guest.recoveryBlock)
        #expect(throws: VirtioError.self) { _ = try queue.recover() }
    }

    /// A driver model and a device model run random operations; the device crashes at random
    /// points of the protocol, and the guest keeps running (consuming and submitting) while
    /// the domain is dead. Checked: every request completes exactly once in the used ring (no
    /// loss, no duplicate), a request is never executed after the driver saw it complete, a
    /// replayed head carries the request that was popped, and replay is in submission order.
    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func randomOperationsWithCrashes(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let guest = try FakeGuest(size: 16, eventIndex: seed % 2 == 0)
        var (queue, _) = try guest.queue()

        // Driver state. Chains are two descriptors (head, head + 1), so heads are even.
        var nextToken: UInt64 = 1
        var free: [UInt16] = Array(stride(from: 0, to: 16, by: 2))
        var outstanding: [UInt16: UInt64] = [:]  // head → token
        var driverUsed: UInt16 = 0
        var completed = Set<UInt64>()
        // Device state (lost at a crash, rebuilt from recover()).
        var inFlight: [(head: UInt16, token: UInt64)] = []
        var popped = Set<UInt64>()
        var crashes = 0, replays = 0

        func execute(_ chain: DescriptorChain) -> UInt64 {
            let token = chain.readable[0].bytes.loadUnaligned(as: UInt64.self)
            let alreadyCompleted = completed.contains(token)
            #expect(!alreadyCompleted, "token \(token) executed after the driver saw it complete")
            #expect(outstanding[chain.head] == token, "head \(chain.head) does not carry token \(token)")
            return token
        }
        func driverConsume() {
            while driverUsed != guest.usedIndex {
                let head = UInt16(guest.usedElement(driverUsed).id)
                driverUsed &+= 1
                guard let token = outstanding.removeValue(forKey: head) else {
                    Issue.record("used element for head \(head), which is not outstanding (a duplicate)")
                    continue
                }
                #expect(completed.insert(token).inserted)
                free.append(head)
            }
        }
        func driverSubmit() {
            guard !free.isEmpty else { return }
            let head = free.remove(at: Int(random.next() % UInt64(free.count)))
            let address = data + UInt64(head) * 64
            guest.store(nextToken, at: address)
            outstanding[head] = nextToken
            nextToken += 1
            guest.submit([(address, 8, false), (address + 8, 8, true)], first: head)
        }

        for _ in 0..<4000 {
            let operation = random.next() % 4
            let device = operation == 1 || operation == 2
            var snapshot: FakeGuest.Snapshot?
            if device && random.next() % 8 == 0 {
                snapshot = guest.snapshot()  // a crash before the operation, unless the step is reached
                let step = SplitVirtqueue.RecoveryStep.allCases.randomElement(using: &random)
                queue.stepObserver = { if $0 == step { snapshot = guest.snapshot() } }
            }
            switch operation {
            case 0:
                driverSubmit()
            case 1:
                do {
                    if let chain = try queue.popAvailable() {
                        let token = execute(chain)
                        popped.insert(token)
                        inFlight.append((chain.head, token))
                    }
                } catch {
                    Issue.record("pop failed: \(error)")
                }
            case 2 where !inFlight.isEmpty:
                let index = Int(random.next() % UInt64(inFlight.count))  // out of order
                try queue.pushUsed(head: inFlight[index].head, length: 8)
                inFlight.remove(at: index)
            default:
                driverConsume()
            }
            queue.stepObserver = nil
            guard let snapshot else { continue }
            // The domain is dead: restore what outlives it. The guest runs on meanwhile.
            crashes += 1
            guest.restore(snapshot)
            for _ in 0..<(random.next() % 4) {
                if random.next() % 2 == 0 { driverConsume() } else { driverSubmit() }
            }
            let (recovered, replay) = try guest.queue()
            queue = recovered
            var tokens: [UInt64] = []
            for head in replay {
                let token = execute(try recovered.chain(head: head))
                #expect(popped.contains(token), "replayed head \(head) carries token \(token), never popped")
                tokens.append(token)
            }
            replays += replay.count
            #expect(tokens == tokens.sorted(), "replay not in submission order: \(tokens)")
            inFlight = Array(zip(replay, tokens)).map { (head: $0.0, token: $0.1) }
        }
        // Drain: everything submitted completes exactly once.
        for item in inFlight { try queue.pushUsed(head: item.head, length: 8) }
        while let chain = try queue.popAvailable() {
            _ = execute(chain)
            try queue.pushUsed(head: chain.head, length: 8)
        }
        driverConsume()
        #expect(outstanding.isEmpty, "lost: \(outstanding)")
        #expect(completed.count == Int(nextToken - 1))
        #expect(crashes > 100 && replays > 10, "crashes \(crashes), replays \(replays)")
    }
}

/// A small deterministic generator for reproducible property tests.
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
