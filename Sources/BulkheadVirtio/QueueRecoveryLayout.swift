import CBulkheadLinux

/// The layout of one queue's recovery block: the part of the control channel's recovery area
/// that survives the domain process and lets the next one pick up exactly where it stopped.
/// All fields little-endian (the host's order), naturally aligned; the block is zero at first
/// use (a device reset zeroes it again).
///
/// ```
/// offset  size  field
///      0     8  popWord: bits 0..15 lastAvailIndex (the next avail ring position to pop),
///               bits 16..63 popCounter (the submission counter of the last pop; 0 = none)
///      8     2  usedIndex (the used.idx this device last published and recorded)
///     10     2  queueSize (recorded at first use)
///     12     4  magic "BHVQ" (0 = fresh block)
///     16  8192  inflight[1024] u64, indexed by head: 0 = not in flight, else its popCounter
/// ```
///
/// `lastAvailIndex` and the counter share one 8-byte word so that a pop commits with a single
/// aligned store: before it the pop did not happen, after it the pop did.
///
/// # Invariants (between any two stores, i.e. at every crash point)
/// 1. **Committed pops are in flight.** For every head popped (counter ≤ popCounter) and not
///    yet published in the guest's used ring, `inflight[head]` holds its counter.
/// 2. **Uncommitted records are recognisable.** A pop writes `inflight[head] = popCounter + 1`
///    *before* committing `popWord`; a record whose counter is greater than `popCounter` is
///    from a pop that did not commit and is cleared by recovery (that avail entry is popped
///    again, since `lastAvailIndex` did not move).
/// 3. **Published means done.** A completion writes the used element, release-stores the
///    guest's used.idx, *then* clears `inflight[head]`, *then* stores `usedIndex`. So
///    `usedIndex ≤ guest used.idx ≤ usedIndex + 1` (+ batch size), and every head in the guest's
///    used slots `[usedIndex, used.idx)` is a completed request, whose in-flight record recovery
///    clears. A head whose used element the guest may have seen is never replayed.
/// 4. **No duplicates.** A head is recorded at most once (a pop of a head already in flight is
///    refused), a completion requires the head in flight, and the used.idx reconciliation
///    adopts the guest's value, so the next completion writes the next slot.
/// 5. **Order.** Counters grow by one per recorded pop; replay sorts by counter.
public enum QueueRecoveryLayout {
    /// The bytes a recovery block needs (the control channel reserves 16 KiB per queue).
    public static let size = 16 + 8 * Int(maximumQueueSize)
    /// The largest queue size recovery can track (one in-flight slot per head).
    public static let maximumQueueSize: UInt16 = 1024
    /// "BHVQ", little-endian.
    public static let magic: UInt32 = 0x5156_4842

    public static let popWordOffset = 0
    public static let usedIndexOffset = 8
    public static let queueSizeOffset = 10
    public static let magicOffset = 12
    public static let inflightOffset = 16

    /// The bits of `popWord` holding the counter.
    static let counterShift: UInt64 = 16
    /// The largest counter: 48 bits, 2^48 pops (about 9 years at a million requests a
    /// second). A queue whose counter runs out reports `recoveryBlockMismatch` until reset.
    static let maximumCounter: UInt64 = (1 << 48) - 1

    static func popWord(lastAvailIndex: UInt16, counter: UInt64) -> UInt64 {
        (counter << counterShift) | UInt64(lastAvailIndex)
    }
}

/// Typed access to a recovery block. The block is shared with the next domain process:
/// stores are plain aligned stores, ordered by the caller's fences.
struct RecoveryBlock {
    let base: UnsafeMutableRawPointer

    init(_ buffer: UnsafeMutableRawBufferPointer) throws(VirtioError) {
        guard let base = buffer.baseAddress, buffer.count >= QueueRecoveryLayout.size else {
            throw VirtioError(.invalidConfiguration, "recovery block of \(buffer.count) bytes (need \(QueueRecoveryLayout.size))")
        }
        guard UInt(bitPattern: base) % 8 == 0 else {
            throw VirtioError(.invalidConfiguration, "recovery block is not 8-byte aligned")
        }
        self.base = base
    }

    // SAFETY (all accessors): the block holds QueueRecoveryLayout.size bytes at an 8-byte
    // aligned base (checked in init); every offset below is inside it and naturally aligned;
    // inflight indices are < maximumQueueSize, checked by the callers. The core reads popWord
    // and usedIndex while the domain writes them (`workPending`): each field is one atomic
    // access, never a byte-wise copy.
    var popWord: UInt64 {
        get { bh_atomic_load_relaxed_u64(base + QueueRecoveryLayout.popWordOffset) }
        nonmutating set { bh_atomic_store_relaxed_u64(base + QueueRecoveryLayout.popWordOffset, newValue) }
    }
    var usedIndex: UInt16 {
        get { bh_atomic_load_relaxed_u16(base + QueueRecoveryLayout.usedIndexOffset) }
        nonmutating set { bh_atomic_store_relaxed_u16(base + QueueRecoveryLayout.usedIndexOffset, newValue) }
    }
    var queueSize: UInt16 {
        get { bh_atomic_load_relaxed_u16(base + QueueRecoveryLayout.queueSizeOffset) }
        nonmutating set { bh_atomic_store_relaxed_u16(base + QueueRecoveryLayout.queueSizeOffset, newValue) }
    }
    var magic: UInt32 {
        get { bh_atomic_load_relaxed_u32(base + QueueRecoveryLayout.magicOffset) }
        nonmutating set { bh_atomic_store_relaxed_u32(base + QueueRecoveryLayout.magicOffset, newValue) }
    }
    func inflight(_ head: UInt16) -> UInt64 {
        precondition(head < QueueRecoveryLayout.maximumQueueSize)
        return bh_atomic_load_relaxed_u64(base + QueueRecoveryLayout.inflightOffset + 8 * Int(head))
    }
    func setInflight(_ head: UInt16, _ counter: UInt64) {
        precondition(head < QueueRecoveryLayout.maximumQueueSize)
        bh_atomic_store_relaxed_u64(base + QueueRecoveryLayout.inflightOffset + 8 * Int(head), counter)
    }
}
