import CBulkheadLinux

/// One single-producer/single-consumer byte ring of the control region, seen from one side.
///
/// Indices are free-running `UInt64` byte counts; `producer - consumer` bytes are in the ring.
/// Each side keeps its own index privately (the shared copy is only published, never trusted
/// back) and reads the peer's with acquire. Everything read from the peer — its index, a frame
/// length, the payload — is hostile: checked, and the payload copied out before anyone parses it.
struct ByteRing {
    /// Ring data, `ControlRegionLayout.ringCapacity` bytes.
    let data: UnsafeMutableRawPointer
    let producerIndex: UnsafeMutableRawPointer
    let consumerIndex: UnsafeMutableRawPointer
    /// The receiver's "sleeping on the doorbell" flag.
    let receiverSleeping: UnsafeMutableRawPointer
    /// Which ring, for errors.
    let name: String

    static let capacity = UInt64(ControlRegionLayout.ringCapacity)
    static let alignment = UInt64(ControlRegionLayout.frameAlignment)

    /// Bytes a frame with `payload` bytes occupies.
    static func frameSize(payload: Int) -> UInt64 {
        (4 + UInt64(payload) + alignment - 1) & ~(alignment - 1)
    }

    // MARK: producer side

    /// Writes one frame at `head` (the producer's private index) and publishes it; returns the
    /// new head. Throws `ringFull` or `corruptFrame` (the consumer's index is impossible).
    func produce(_ payload: UnsafeRawBufferPointer, head: UInt64) throws(ChannelError) -> UInt64 {
        guard payload.count <= ControlRegionLayout.maxFrameSize else {
            throw ChannelError(
                .frameTooLarge,
                "sending on \(name): \(payload.count) bytes exceed the frame limit of \(ControlRegionLayout.maxFrameSize)")
        }
        // SAFETY: the index field is an aligned u64 in the header page.
        let tail = bh_atomic_load_acquire_u64(consumerIndex)
        let used = head &- tail
        guard used <= Self.capacity, used % Self.alignment == 0 else {
            throw ChannelError(
                .corruptFrame, "sending on \(name): consumer index \(tail) is inconsistent with producer index \(head)")
        }
        let frame = Self.frameSize(payload: payload.count)
        guard Self.capacity - used >= frame else {
            throw ChannelError(
                .ringFull, "sending on \(name): \(frame) bytes needed, \(Self.capacity - used) free")
        }
        let offset = Int(head % Self.capacity)
        // SAFETY: `offset` is 8-aligned and < capacity, so the 4-byte length fits before the end;
        // the payload is copied in at most two pieces that stay within the ring data; the
        // consumer does not read these bytes until the release store of the new head.
        bh_atomic_store_release_u32(data + offset, UInt32(payload.count))
        copyIn(payload, at: (offset + 4) % ControlRegionLayout.ringCapacity)
        let newHead = head &+ frame
        bh_atomic_store_release_u64(producerIndex, newHead)
        return newHead
    }

    private func copyIn(_ payload: UnsafeRawBufferPointer, at offset: Int) {
        guard let source = payload.baseAddress, payload.count > 0 else { return }
        let first = min(payload.count, ControlRegionLayout.ringCapacity - offset)
        // SAFETY: [offset, offset+first) and [0, count-first) are inside the ring data.
        (data + offset).copyMemory(from: source, byteCount: first)
        if first < payload.count {
            data.copyMemory(from: source + first, byteCount: payload.count - first)
        }
    }

    // MARK: consumer side

    /// Whether the producer has published bytes past `tail`.
    func hasData(tail: UInt64) -> Bool {
        // SAFETY: aligned u64 in the header page.
        bh_atomic_load_acquire_u64(producerIndex) != tail
    }

    /// Copies the next frame's payload into `buffer` (at least `maxFrameSize` bytes) and
    /// returns its length and the new tail, or nil when the ring is empty. The frame is consumed
    /// (the new tail published) before returning. Throws `corruptFrame` on an impossible index
    /// or length.
    func consume(into buffer: UnsafeMutableRawBufferPointer, tail: UInt64) throws(ChannelError) -> (
        count: Int, tail: UInt64
    )? {
        // SAFETY: aligned u64 in the header page.
        let head = bh_atomic_load_acquire_u64(producerIndex)
        if head == tail { return nil }
        let used = head &- tail
        guard used <= Self.capacity, used % Self.alignment == 0 else {
            throw ChannelError(
                .corruptFrame, "receiving on \(name): producer index \(head) is inconsistent with consumer index \(tail)")
        }
        let offset = Int(tail % Self.capacity)
        // SAFETY: `offset` is 8-aligned and < capacity: the length is inside the ring data.
        let length = Int(bh_atomic_load_relaxed_u32(data + offset))
        guard length > 0, length <= ControlRegionLayout.maxFrameSize, Self.frameSize(payload: length) <= used else {
            throw ChannelError(
                .corruptFrame, "receiving on \(name): frame length \(length) at index \(tail) (\(used) bytes published, "
                    + "frame limit \(ControlRegionLayout.maxFrameSize))")
        }
        precondition(buffer.count >= length, "receive buffer smaller than the frame limit")
        guard let destination = buffer.baseAddress else { return nil }
        let start = (offset + 4) % ControlRegionLayout.ringCapacity
        let first = min(length, ControlRegionLayout.ringCapacity - start)
        // SAFETY: both pieces lie inside the ring data and inside `buffer` (length ≤ its count).
        destination.copyMemory(from: data + start, byteCount: first)
        if first < length {
            (destination + first).copyMemory(from: data, byteCount: length - first)
        }
        let newTail = tail &+ Self.frameSize(payload: length)
        // SAFETY: aligned u64 in the header page; the payload was copied out before releasing it.
        bh_atomic_store_release_u64(consumerIndex, newTail)
        return (length, newTail)
    }
}
