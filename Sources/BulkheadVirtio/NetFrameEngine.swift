#if canImport(Glibc)
import Glibc
#endif

/// Moves Ethernet frames between a virtio-net queue pair (virtio 1.2 5.1.6) in guest memory
/// and a tap: one `writev` per transmit chain, the `virtio_net_hdr` stripped; one `readv` per
/// received frame, into a posted receive buffer behind a zeroed header with `num_buffers` = 1.
/// No offloads, no mergeable receive buffers. Every malformed chain is completed (empty) and
/// counted in `drops`; a broken ring ends the batch and is left in `broken`, after which the
/// owner stops serving (the domain reports it and exits).
///
/// The net driver domain keeps one per process (its counters span `Attach`es); the
/// `FuzzNetFrames` fuzz target drives the same object over a memfd and a socketpair.
public final class NetFrameEngine: @unchecked Sendable {
    /// struct virtio_net_hdr with VIRTIO_F_VERSION_1 (num_buffers included): 12 bytes.
    public static let headerLength = 12
    /// The largest transmit chain accepted: the header and a 64 KiB frame (with VLAN tags).
    public static let maximumTransmitChain: UInt64 = 65550
    /// IOV_MAX on Linux: the most iovecs one readv/writev takes.
    public static let maximumVectors = 1024
    /// The most chains one batch completes on a queue.
    public static let batchLimit = 64
    public static let receiveQueue = 0
    public static let transmitQueue = 1

    /// The tap (a non-blocking fd that reads and writes whole frames).
    public let tap: Int32
    public private(set) var receive: SplitVirtqueue?
    public private(set) var transmit: SplitVirtqueue?
    /// Receive chains popped (or recovered) and not yet filled, oldest first. They stay in
    /// flight in the recovery block; a successor offers them again.
    public private(set) var receiveBuffers: [DescriptorChain] = []
    /// Where the part of a frame that does not fit the posted buffer lands (then dropped).
    private let overflow: UnsafeMutableRawBufferPointer

    /// Test hook `slow`: microseconds added to each frame.
    public var slowMicroseconds: UInt32 = 0
    /// The first error that broke a queue (a ring the driver corrupted, a completion refused).
    public private(set) var broken: VirtioError?

    // Counters of this engine (the core adds them up across domain generations).
    public private(set) var transmittedFrames: UInt64 = 0
    public private(set) var transmittedBytes: UInt64 = 0
    public private(set) var receivedFrames: UInt64 = 0
    public private(set) var receivedBytes: UInt64 = 0
    public private(set) var drops = NetDrops()

    /// Sees each completion before it is published: the queue (`receiveQueue`,
    /// `transmitQueue`), the head, its chain when the walk succeeded, the used length. Nil in
    /// the domain; the fuzz target checks its invariants here.
    public var completionObserver: ((_ queue: Int, _ head: UInt16, _ chain: DescriptorChain?, _ length: UInt32) -> Void)?

    public init(tap: Int32) {
        self.tap = tap
        overflow = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    }

    deinit { overflow.deallocate() }

    public var attached: Bool { receive != nil && transmit != nil }

    /// Serves `receive` and `transmit` (new queues, not yet recovered) after recovering them.
    /// transmitq: a chain left in flight may have reached the wire already; it is completed
    /// unsent, so that no frame is ever sent twice (a frame lost in a crash, as on a real
    /// wire). receiveq: a chain left in flight was never completed, so the guest never saw its
    /// contents; it is offered again for the next frame. Returns how many of each it found.
    /// Refused (`invalidConfiguration`, nothing changed) when either queue's used ring overlaps
    /// a part of the other: the device's stores on one queue must not make work on the other.
    public func attach(receive: SplitVirtqueue, transmit: SplitVirtqueue) throws(VirtioError) -> (receive: Int, transmit: Int) {
        detach()
        guard !receive.configuration.usedRingOverlaps(transmit.configuration),
              !transmit.configuration.usedRingOverlaps(receive.configuration) else {
            throw VirtioError(.invalidConfiguration, "a used ring of the queue pair overlaps a part of the other queue")
        }
        let receiveHeads = try receive.recover()
        for head in receiveHeads {
            do {
                receiveBuffers.append(try receive.chain(head: head))
            } catch {
                completeMalformed(receive, Self.receiveQueue, error)
                drops.receiveMalformed += 1
            }
        }
        let transmitHeads = try transmit.recover()
        for head in transmitHeads {
            completionObserver?(Self.transmitQueue, head, nil, 0)
            try transmit.pushUsed(head: head, length: 0)
        }
        self.receive = receive
        self.transmit = transmit
        return (receiveHeads.count, transmitHeads.count)
    }

    /// Forgets the queues (`Reset`, a failed `Attach`).
    public func detach() {
        receive = nil
        transmit = nil
        receiveBuffers = []
        broken = nil
    }

    // MARK: transmitq

    /// Pops and sends up to a batch of transmit chains; returns how many were completed.
    public func transmitBatch() -> Int {
        guard let queue = transmit else { return 0 }
        var done = 0
        while done < Self.batchLimit {
            let chain: DescriptorChain?
            do { chain = try queue.popAvailable() } catch {
                if error.head != nil { completeMalformed(queue, Self.transmitQueue, error); drops.transmitMalformed += 1; done += 1; continue }
                if !takeQueueError(error) { return done }
                continue
            }
            guard let chain else { break }
            if slowMicroseconds > 0 { usleep(slowMicroseconds) }
            if let length = send(chain) {
                transmittedFrames += 1
                transmittedBytes += UInt64(length)
            }
            guard complete(queue, Self.transmitQueue, chain, length: 0) else { return done }
            done += 1
        }
        return done
    }

    /// Writes the frame of a transmit chain to the tap (one `writev`, the header skipped);
    /// returns its length, or nil when it was dropped (and counted).
    func send(_ chain: DescriptorChain) -> Int? {
        let length = chain.readableLength
        guard length > UInt64(Self.headerLength) else { drops.transmitShort += 1; return nil }
        guard length <= Self.maximumTransmitChain else { drops.transmitOversize += 1; return nil }
        let vectors = Self.vectors(chain.readable, skipping: Self.headerLength)
        guard chain.writable.isEmpty, vectors.count < Self.maximumVectors else {
            drops.transmitMalformed += 1
            return nil
        }
        var written: Int
        repeat {
            written = vectors.withUnsafeBufferPointer { writev(tap, $0.baseAddress, Int32($0.count)) }
        } while written < 0 && errno == EINTR
        guard written == Int(length) - Self.headerLength else {
            drops.transmitRefused += 1 // by the tap: shorter than an Ethernet header, queue full, link gone
            return nil
        }
        return written
    }

    // MARK: receiveq

    /// Fills posted receive buffers with frames from the tap, up to a batch; returns how many
    /// were completed.
    public func receiveBatch() -> Int {
        guard let queue = receive else { return 0 }
        var done = 0
        var attempts = 0
        while done < Self.batchLimit && attempts < 2 * Self.batchLimit {
            attempts += 1
            guard let buffer = nextReceiveBuffer(queue) else { break }
            let vectors = Self.vectors(buffer.writable, skipping: Self.headerLength)
            let capacity = Int(buffer.writableLength) - Self.headerLength
            guard buffer.readable.isEmpty, capacity > 0, vectors.count < Self.maximumVectors - 1 else {
                // Not a receive buffer (device-readable parts, no room for the header).
                receiveBuffers.removeFirst()
                drops.receiveMalformed += 1
                guard complete(queue, Self.receiveQueue, buffer, length: 0) else { return done }
                done += 1
                continue
            }
            // The overflow area catches what does not fit, so that a frame too large for the
            // buffer is recognised by its length, whatever the kernel does with a short read.
            var all = vectors
            all.append(iovec(iov_base: overflow.baseAddress, iov_len: overflow.count))
            var length: Int
            repeat {
                length = all.withUnsafeBufferPointer { readv(tap, $0.baseAddress, Int32($0.count)) }
            } while length < 0 && errno == EINTR
            guard length > 0 else { break } // EAGAIN: nothing waiting; the buffer stays posted
            guard length <= capacity else {
                drops.receiveOversize += 1 // too large for this buffer: dropped, the buffer stays posted
                continue
            }
            Self.writeHeader(into: buffer.writable)
            receiveBuffers.removeFirst()
            if slowMicroseconds > 0 { usleep(slowMicroseconds) }
            guard complete(queue, Self.receiveQueue, buffer, length: UInt32(Self.headerLength + length)) else { return done }
            receivedFrames += 1
            receivedBytes += UInt64(length)
            done += 1
        }
        return done
    }

    /// The oldest posted receive buffer, popping one from the ring when none is held.
    func nextReceiveBuffer(_ queue: SplitVirtqueue) -> DescriptorChain? {
        while receiveBuffers.isEmpty {
            do {
                guard let chain = try queue.popAvailable() else { return nil }
                receiveBuffers.append(chain)
            } catch {
                if error.head != nil { completeMalformed(queue, Self.receiveQueue, error); drops.receiveMalformed += 1; continue }
                if !takeQueueError(error) { return nil }
            }
        }
        return receiveBuffers.first
    }

    /// `virtio_net_hdr` for a received frame: no flags, no GSO, `num_buffers` = 1 (u16 at 10).
    static func writeHeader(into buffers: [GuestBuffer]) {
        var offset = 0
        for buffer in buffers where offset < Self.headerLength {
            let n = min(buffer.bytes.count, Self.headerLength - offset)
            for i in 0..<n {
                // SAFETY: i < buffer.bytes.count: inside the guest buffer the chain walk checked.
                buffer.bytes[i] = offset + i == 10 ? 1 : 0
            }
            offset += n
        }
    }

    // MARK: both queues

    /// iovecs over `buffers` after their first `skip` bytes.
    static func vectors(_ buffers: [GuestBuffer], skipping skip: Int) -> [iovec] {
        var remaining = skip
        var result: [iovec] = []
        for buffer in buffers {
            let count = buffer.bytes.count
            if remaining >= count { remaining -= count; continue }
            // SAFETY: remaining < count: the start stays inside the guest buffer the walk checked.
            result.append(iovec(iov_base: buffer.bytes.baseAddress.map { $0 + remaining }, iov_len: count - remaining))
            remaining = 0
        }
        return result
    }

    /// Publishes a completion on `queue` (number `index`); false when the queue is broken (left in `broken`).
    func complete(_ queue: SplitVirtqueue, _ index: Int, _ chain: DescriptorChain, length: UInt32) -> Bool {
        completionObserver?(index, chain.head, chain, length)
        do { try queue.pushUsed(head: chain.head, length: length) } catch {
            broken = broken ?? error
            return false
        }
        return true
    }

    /// Completes, empty, a chain whose walk failed.
    func completeMalformed(_ queue: SplitVirtqueue, _ index: Int, _ error: VirtioError) {
        guard let head = error.head else { return }
        completionObserver?(index, head, nil, 0)
        try? queue.pushUsed(head: head, length: 0)
    }

    /// A pop error with no chain to complete: true to go on (the driver broke the spec for one
    /// entry), false when the queue is broken (left in `broken`).
    func takeQueueError(_ error: VirtioError) -> Bool {
        switch error.code {
        case .headOutOfRange, .headInFlight:
            drops.queueErrors += 1
            return true
        default:
            broken = broken ?? error
            return false
        }
    }
}

/// Frames and chains a net device dropped, by why. Each is counted, none stops the device.
public struct NetDrops: Sendable, Equatable, CustomStringConvertible {
    /// Transmit chains no longer than the virtio-net header (no frame).
    public var transmitShort: UInt64 = 0
    /// Transmit chains larger than `NetFrameEngine.maximumTransmitChain`.
    public var transmitOversize: UInt64 = 0
    /// Transmit chains that are not transmit chains (device-writable parts, a broken walk).
    public var transmitMalformed: UInt64 = 0
    /// Frames the tap refused (shorter than an Ethernet header, its queue full).
    public var transmitRefused: UInt64 = 0
    /// Received frames larger than the posted buffer.
    public var receiveOversize: UInt64 = 0
    /// Receive chains that are not receive buffers (device-readable parts, no room for the
    /// header, a broken walk): completed empty.
    public var receiveMalformed: UInt64 = 0
    /// Available entries the driver filled wrongly (a head out of range or already in flight).
    public var queueErrors: UInt64 = 0

    public init() {}

    public var total: UInt64 {
        transmitShort + transmitOversize + transmitMalformed + transmitRefused + receiveOversize + receiveMalformed + queueErrors
    }

    public var description: String {
        "tx_short=\(transmitShort) tx_oversize=\(transmitOversize) tx_malformed=\(transmitMalformed) "
            + "tx_refused=\(transmitRefused) rx_oversize=\(receiveOversize) rx_malformed=\(receiveMalformed) "
            + "queue_errors=\(queueErrors)"
    }
}
