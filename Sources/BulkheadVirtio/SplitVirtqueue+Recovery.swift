/// Crash recovery: rebuilding a queue's state from its recovery block and the guest's rings
/// after the domain process that drove it died. See `QueueRecoveryLayout` for the protocol
/// and its invariants.
extension SplitVirtqueue {
    /// Loads the queue's state from the recovery block and returns the heads still in flight,
    /// in submission order, for the caller to re-walk (`chain(head:)`), execute again and
    /// complete. Popping resumes at the recorded `lastAvailIndex`. Call it exactly once,
    /// right after `init`, on a fresh block too (it then initialises the block and returns []).
    ///
    /// Steps, each idempotent so that a crash during recovery is recovered from the same way:
    /// 1. Fresh block (magic 0): zero it, record the queue size, then the magic.
    /// 2. Clear in-flight records newer than the committed counter (a pop that did not commit;
    ///    its available entry will be popped again).
    /// 3. If the guest's used.idx is ahead of the recorded `usedIndex` (a crash after
    ///    publishing, before recording), the heads in those used slots are complete: clear
    ///    their records, then adopt the guest's value. Ahead by more than the queue size, or
    ///    behind, means the guest wrote the device's field: `usedIndexCorrupt`, nothing changed.
    /// 4. Return the remaining in-flight heads sorted by their counter.
    public func recover() throws(VirtioError) -> [UInt16] {
        let block = recovery
        if block.magic == 0 {
            // SAFETY: the block holds QueueRecoveryLayout.size bytes (checked in init).
            block.base.initializeMemory(as: UInt8.self, repeating: 0, count: QueueRecoveryLayout.size)
            block.queueSize = size
            releaseFence()
            block.magic = QueueRecoveryLayout.magic
        }
        guard block.magic == QueueRecoveryLayout.magic, block.queueSize == size else {
            throw VirtioError(.recoveryBlockMismatch,
                              "recovery block has magic \(hex(UInt64(block.magic))) and queue size \(block.queueSize), the queue has size \(size)")
        }
        let word = block.popWord
        let committedCounter = word >> QueueRecoveryLayout.counterShift
        let recordedUsed = block.usedIndex

        let guestUsed = loadUsedIndex()
        acquireFence()
        let published = guestUsed &- recordedUsed
        guard published <= size else {
            throw VirtioError(.usedIndexCorrupt, "used.idx \(guestUsed) is \(published) ahead of the recorded \(recordedUsed), queue size \(size)")
        }

        for head in 0..<QueueRecoveryLayout.maximumQueueSize {
            let counter = block.inflight(head)
            if counter != 0 && (counter > committedCounter || head >= size) { block.setInflight(head, 0) }
        }
        for offset in 0..<published {
            let id = loadUsedElementID(slot: recordedUsed &+ offset)
            if id < UInt32(size) { block.setInflight(UInt16(id), 0) }
        }
        releaseFence()
        block.usedIndex = guestUsed

        var inFlight: [(head: UInt16, counter: UInt64)] = []
        for head in 0..<size {
            let counter = block.inflight(head)
            if counter != 0 { inFlight.append((head, counter)) }
        }
        inFlight.sort { $0.counter < $1.counter }

        lastAvailIndex = UInt16(truncatingIfNeeded: word)
        popCounter = committedCounter
        usedIndex = guestUsed
        signalledUsed = nil
        recovered = true
        return inFlight.map(\.head)
    }
}
