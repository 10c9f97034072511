import CBulkheadLinux

/// The device side of one split virtqueue (virtio 1.2 2.7) over guest RAM, with its in-flight
/// log kept in a recovery block that outlives the domain process.
///
/// Driving it (one thread at a time — the queue's worker):
/// 1. `init` over the guest RAM view, the transport's `QueueConfiguration` and the queue's
///    recovery block; then **always** `recover()` — on a fresh block it returns `[]`; after a
///    restart it returns the heads to execute again, oldest first. Re-walk each with
///    `chain(head:)`, execute it, `pushUsed` it. Then raise the interrupt once (a spurious
///    interrupt is harmless; a lost one is not) and read the kick eventfd.
/// 2. Loop: `disableNotifications()`, `popAvailable()` until nil, executing and `pushUsed`-ing,
///    `needsNotification()` → signal the irqfd; then `enableNotifications()`: true means more
///    buffers arrived meanwhile, go round again; false means wait on the kick eventfd.
/// 3. A `malformedChain` error from `popAvailable` carries the head: complete it
///    (`pushUsed(head:length: 0)`, after writing an error status for blk). Codes without a
///    head have nothing to complete; see `VirtioError`.
///
/// Everything read from guest memory is hostile: indices are bounded, descriptors are read
/// once into local copies, every buffer goes through `GuestRAM`.
public final class SplitVirtqueue: @unchecked Sendable {
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver asks for no interrupt (without EVENT_IDX).
    public static let availFlagNoInterrupt: UInt16 = 1
    /// `VIRTQ_USED_F_NO_NOTIFY`: the device asks for no kick (without EVENT_IDX).
    public static let usedFlagNoNotify: UInt16 = 1

    public let configuration: QueueConfiguration
    public let memory: GuestRAM
    let descriptorTable: UnsafeMutableRawPointer
    let availableRing: UnsafeMutableRawPointer
    let usedRing: UnsafeMutableRawPointer
    let recovery: RecoveryBlock
    var size: UInt16 { configuration.size }

    /// The next position of the available ring to pop (`last_avail_idx`).
    public internal(set) var lastAvailIndex: UInt16 = 0
    /// The used.idx this device published last.
    public internal(set) var usedIndex: UInt16 = 0
    /// The submission counter of the last recorded pop.
    var popCounter: UInt64 = 0
    /// used.idx at the last `needsNotification()`; nil when unknown (then notify).
    var signalledUsed: UInt16?
    var recovered = false

    /// Observes each store of the pop/complete protocol, after it is made. Tests snapshot the
    /// shared memory here to simulate a crash between any two stores.
    var stepObserver: ((RecoveryStep) -> Void)?

    /// The points of the protocol at which a crash leaves a distinct state.
    enum RecoveryStep: CaseIterable, Sendable {
        case popRecorded, popCommitted
        case usedElementWritten, usedIndexPublished, inflightCleared, usedIndexRecorded
    }

    /// A queue over `memory` as `configuration` describes it; `recoveryBlock` is this queue's
    /// block of the control channel's recovery area (`QueueRecoveryLayout.size` bytes, 8-byte
    /// aligned). Checks that the size is a power of two no larger than the recovery layout's
    /// maximum, that the three parts are aligned and inside guest RAM, and that the used ring
    /// overlaps neither of the other two. Call `recover()` next.
    public init(memory: GuestRAM, configuration: QueueConfiguration,
                recoveryBlock: UnsafeMutableRawBufferPointer) throws(VirtioError) {
        let size = configuration.size
        guard size > 0, size & (size - 1) == 0, size <= QueueRecoveryLayout.maximumQueueSize else {
            throw VirtioError(.invalidConfiguration, "queue size \(size) is not a power of two in 1...\(QueueRecoveryLayout.maximumQueueSize)")
        }
        guard configuration.descriptorTable % 16 == 0, configuration.availableRing % 2 == 0,
              configuration.usedRing % 4 == 0 else {
            throw VirtioError(.invalidConfiguration, "misaligned queue parts (descriptors \(hex(configuration.descriptorTable)), available \(hex(configuration.availableRing)), used \(hex(configuration.usedRing)))")
        }
        func locate(_ address: UInt64, _ length: UInt64, _ what: String) throws(VirtioError) -> UnsafeMutableRawPointer {
            guard let buffer = memory.buffer(at: address, length: length), let base = buffer.baseAddress else {
                throw VirtioError(.invalidConfiguration, "\(what) (\(length) bytes at \(hex(address))) is outside guest RAM")
            }
            return base
        }
        descriptorTable = try locate(configuration.descriptorTable, configuration.descriptorTableLength, "descriptor table")
        availableRing = try locate(configuration.availableRing, configuration.availableRingLength, "available ring")
        usedRing = try locate(configuration.usedRing, configuration.usedRingLength, "used ring")
        guard !configuration.usedRingOverlapsDriverParts else {
            throw VirtioError(.invalidConfiguration, "the used ring (\(configuration.usedRingLength) bytes at \(hex(configuration.usedRing))) overlaps the descriptor table or the available ring")
        }
        recovery = try RecoveryBlock(recoveryBlock)
        self.configuration = configuration
        self.memory = memory
    }

    /// Pops the next available descriptor chain, or nil when the driver has made none
    /// available. The pop is recorded in flight before it is committed (see
    /// `QueueRecoveryLayout`). Throws `malformedChain` with the head for a chain to complete
    /// with an error; `availIndexJump` (nothing consumed) when the driver's index moved more
    /// than the queue size; `headOutOfRange`/`headInFlight` (entry consumed, nothing to
    /// complete) when the driver broke the spec.
    public func popAvailable() throws(VirtioError) -> DescriptorChain? {
        guard recovered else { throw VirtioError(.notRecovered, "popAvailable before recover()") }
        let availIndex = loadAvailIndex()
        acquireFence()
        let pending = availIndex &- lastAvailIndex
        if pending == 0 { return nil }
        guard pending <= size else {
            throw VirtioError(.availIndexJump, "avail.idx \(availIndex) is \(pending) ahead of \(lastAvailIndex), queue size \(size)")
        }
        let position = lastAvailIndex
        // SAFETY: position % size < size: inside the available ring located in init.
        let head = loadAvailEntry(position)
        guard head < size else {
            commitPop(counter: popCounter)
            throw VirtioError(.headOutOfRange, "available entry \(position) names head \(head), queue size \(size)")
        }
        guard recovery.inflight(head) == 0 else {
            commitPop(counter: popCounter)
            throw VirtioError(.headInFlight, "available entry \(position) names head \(head), which is still in flight")
        }
        guard popCounter < QueueRecoveryLayout.maximumCounter else {
            throw VirtioError(.recoveryBlockMismatch, "the submission counter is exhausted; the queue needs a reset")
        }
        let walked = Result { () throws(VirtioError) -> DescriptorChain in try walk(head) }
        let counter = popCounter + 1
        recovery.setInflight(head, counter)
        stepObserver?(.popRecorded)
        commitPop(counter: counter)
        return try walked.get()
    }

    /// Advances `lastAvailIndex` by one and records it with `counter` in one store.
    private func commitPop(counter: UInt64) {
        releaseFence()  // the in-flight record is stored before the commit
        let next = lastAvailIndex &+ 1
        recovery.popWord = QueueRecoveryLayout.popWord(lastAvailIndex: next, counter: counter)
        stepObserver?(.popCommitted)
        lastAvailIndex = next
        popCounter = counter
    }

    /// Walks the chain at `head` again: the replay path after `recover()`. The head must be in
    /// flight.
    public func chain(head: UInt16) throws(VirtioError) -> DescriptorChain {
        guard recovered else { throw VirtioError(.notRecovered, "chain(head:) before recover()") }
        guard head < size, recovery.inflight(head) != 0 else {
            throw VirtioError(.headNotInFlight, "head \(head) is not in flight")
        }
        return try walk(head)
    }

    private func walk(_ head: UInt16) throws(VirtioError) -> DescriptorChain {
        try DescriptorChain.walk(head: head, table: descriptorTable, size: size, memory: memory,
                                 indirectAllowed: configuration.indirectDescriptors)
    }

    /// Completes the chain `head`: writes the used element (`id` = head, `len` = `length`, the
    /// bytes written into its device-writable buffers), release-stores used.idx, then clears
    /// the in-flight record and records the used index. Throws `headNotInFlight` for a head
    /// that was not popped or was already completed: the used ring never holds a duplicate.
    public func pushUsed(head: UInt16, length: UInt32) throws(VirtioError) {
        guard recovered else { throw VirtioError(.notRecovered, "pushUsed before recover()") }
        guard head < size, recovery.inflight(head) != 0 else {
            throw VirtioError(.headNotInFlight, "completion of head \(head), which is not in flight")
        }
        storeUsedElement(slot: usedIndex, id: UInt32(head), length: length)
        stepObserver?(.usedElementWritten)
        let next = usedIndex &+ 1
        releaseFence()  // the element is visible before the index that publishes it
        storeUsedIndex(next)
        stepObserver?(.usedIndexPublished)
        releaseFence()  // the recovery stores follow the publication
        recovery.setInflight(head, 0)
        stepObserver?(.inflightCleared)
        releaseFence()
        recovery.usedIndex = next
        stepObserver?(.usedIndexRecorded)
        usedIndex = next
    }

    /// How many chains are in flight (popped, not yet completed).
    public var inFlightCount: Int {
        (0..<size).reduce(0) { $0 + (recovery.inflight($1) != 0 ? 1 : 0) }
    }

    // MARK: ring fields
    // SAFETY (all accessors): the rings were located inside guest RAM in init with their full
    // length for this configuration, their parts aligned as virtio requires (checked there), so
    // each field below is inside that length and naturally aligned. The guest writes these
    // concurrently: each is one atomic access (`CBulkheadLinux`), never a byte-wise copy that
    // could mix two of the guest's values; the callers' fences order them.

    @inline(__always) func loadAvailFlags() -> UInt16 {
        UInt16(littleEndian: bh_atomic_load_relaxed_u16(availableRing))
    }
    @inline(__always) func loadAvailIndex() -> UInt16 {
        UInt16(littleEndian: bh_atomic_load_relaxed_u16(availableRing + 2))
    }
    /// The head in the available ring's entry `position`.
    @inline(__always) func loadAvailEntry(_ position: UInt16) -> UInt16 {
        UInt16(littleEndian: bh_atomic_load_relaxed_u16(availableRing + 4 + 2 * Int(position % size)))
    }
    /// `used_event` (only with EVENT_IDX): the trailing field of the available ring.
    @inline(__always) func loadUsedEvent() -> UInt16 {
        UInt16(littleEndian: bh_atomic_load_relaxed_u16(availableRing + 4 + 2 * Int(size)))
    }
    @inline(__always) func loadUsedIndex() -> UInt16 {
        UInt16(littleEndian: bh_atomic_load_relaxed_u16(usedRing + 2))
    }
    @inline(__always) func storeUsedIndex(_ value: UInt16) {
        bh_atomic_store_relaxed_u16(usedRing + 2, value.littleEndian)
    }
    @inline(__always) func storeUsedFlags(_ value: UInt16) {
        bh_atomic_store_relaxed_u16(usedRing, value.littleEndian)
    }
    /// `avail_event` (only with EVENT_IDX): the trailing field of the used ring.
    @inline(__always) func storeAvailEvent(_ value: UInt16) {
        bh_atomic_store_relaxed_u16(usedRing + 4 + 8 * Int(size), value.littleEndian)
    }
    /// Writes the used ring's element `slot`: the head's id and the bytes written.
    @inline(__always) func storeUsedElement(slot: UInt16, id: UInt32, length: UInt32) {
        let element = usedRing + 4 + 8 * Int(slot % size)
        bh_atomic_store_relaxed_u32(element, id.littleEndian)
        bh_atomic_store_relaxed_u32(element + 4, length.littleEndian)
    }
    @inline(__always) func loadUsedElementID(slot: UInt16) -> UInt32 {
        UInt32(littleEndian: bh_atomic_load_relaxed_u32(usedRing + 4 + 8 * Int(slot % size)))
    }
}
