/// What the driver configured for one split virtqueue (virtio 1.2 2.7, "Split Virtqueues"),
/// as the transport hands it to the device: the queue size, the guest-physical addresses of
/// the three parts, and the negotiated features that change how the queue is driven.
public struct QueueConfiguration: Sendable, Equatable {
    /// `VIRTIO_F_INDIRECT_DESC` (feature bit 28).
    public static let featureIndirectDescriptors: UInt64 = 1 << 28
    /// `VIRTIO_F_EVENT_IDX` (feature bit 29).
    public static let featureEventIndex: UInt64 = 1 << 29

    /// Queue Size: a power of two, at most `QueueRecoveryLayout.maximumQueueSize`.
    public var size: UInt16
    public var descriptorTable: UInt64
    /// The driver area (`struct virtq_avail`).
    public var availableRing: UInt64
    /// The device area (`struct virtq_used`).
    public var usedRing: UInt64
    /// `VIRTIO_F_EVENT_IDX` was negotiated: used_event/avail_event replace the flags.
    public var eventIndex: Bool
    /// `VIRTIO_F_INDIRECT_DESC` was negotiated.
    public var indirectDescriptors: Bool

    public init(size: UInt16, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64,
                eventIndex: Bool = false, indirectDescriptors: Bool = false) {
        self.size = size
        self.descriptorTable = descriptorTable
        self.availableRing = availableRing
        self.usedRing = usedRing
        self.eventIndex = eventIndex
        self.indirectDescriptors = indirectDescriptors
    }

    /// The configuration with the queue features taken from the negotiated feature bits.
    public init(size: UInt16, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64, features: UInt64) {
        self.init(size: size, descriptorTable: descriptorTable, availableRing: availableRing, usedRing: usedRing,
                  eventIndex: features & Self.featureEventIndex != 0,
                  indirectDescriptors: features & Self.featureIndirectDescriptors != 0)
    }

    /// Bytes of the descriptor table: 16 × size.
    public var descriptorTableLength: UInt64 { 16 * UInt64(size) }
    /// Bytes of the available ring: flags, idx, ring[size], and used_event with EVENT_IDX.
    public var availableRingLength: UInt64 { 4 + 2 * UInt64(size) + (eventIndex ? 2 : 0) }
    /// Bytes of the used ring: flags, idx, ring[size] of (id, len), and avail_event with EVENT_IDX.
    public var usedRingLength: UInt64 { 4 + 8 * UInt64(size) + (eventIndex ? 2 : 0) }

    /// Whether this queue's used ring (written by the device) shares a byte with its
    /// descriptor table or available ring (written by the driver). No driver lays a queue out
    /// so; a hostile one does it to make the device's own stores (used.idx over avail.idx)
    /// hand it work without end.
    public var usedRingOverlapsDriverParts: Bool {
        Self.overlap(usedRing, usedRingLength, descriptorTable, descriptorTableLength)
            || Self.overlap(usedRing, usedRingLength, availableRing, availableRingLength)
    }

    /// Whether this queue's used ring shares a byte with any part of `other` (another queue of
    /// the same device).
    public func usedRingOverlaps(_ other: QueueConfiguration) -> Bool {
        Self.overlap(usedRing, usedRingLength, other.descriptorTable, other.descriptorTableLength)
            || Self.overlap(usedRing, usedRingLength, other.availableRing, other.availableRingLength)
            || Self.overlap(usedRing, usedRingLength, other.usedRing, other.usedRingLength)
    }

    /// Whether `[a, a + aLength)` and `[b, b + bLength)` share a byte; a range that would wrap
    /// around the address space counts as overlapping.
    static func overlap(_ a: UInt64, _ aLength: UInt64, _ b: UInt64, _ bLength: UInt64) -> Bool {
        let (aEnd, aWraps) = a.addingReportingOverflow(aLength)
        let (bEnd, bWraps) = b.addingReportingOverflow(bLength)
        if aWraps || bWraps { return true }
        return aLength > 0 && bLength > 0 && a < bEnd && b < aEnd
    }
}
