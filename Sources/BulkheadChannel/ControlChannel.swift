import BulkheadProtocol
import BulkheadSystem
import CBulkheadLinux

#if canImport(Glibc)
import Glibc
#endif

/// One side of a device's control channel: sends `ControlMessage`s on its outgoing ring of the
/// `ControlRegion`, receives them from the other, and rings the peer's doorbell (an eventfd)
/// only when the peer sleeps.
///
/// Waiting is spin-then-sleep: `receive(timeoutMilliseconds:)` polls the ring for
/// `spinNanoseconds`, then sets its sleeping flag, checks the ring once more and blocks in
/// `poll` on its incoming doorbell. `send` publishes the frame, then (after a full barrier)
/// writes the outgoing doorbell if the peer's sleeping flag is set, clearing it.
///
/// Threads: at most one thread sends and one thread receives at a time (they may differ).
/// `resetRings(generation:)` needs neither running.
public final class ControlChannel: @unchecked Sendable {
    public enum Side: Sendable, Equatable {
        case core
        case domain
    }

    public let region: ControlRegion
    public let side: Side
    /// The eventfd this side waits on (the core's: domain → core; the domain's: fd 5).
    public let incomingDoorbell: FileDescriptor
    /// The eventfd this side writes to wake the peer (the core's: core → domain; the domain's: fd 6).
    public let outgoingDoorbell: FileDescriptor
    /// How long `receive` polls the ring before sleeping on the doorbell.
    public let spinNanoseconds: UInt64

    private let outgoing: ByteRing
    let incoming: ByteRing
    /// Private copies of this side's own indices (the shared ones are only published).
    private var head: UInt64
    private(set) var tail: UInt64
    /// Scratch for encoding (sender) and for the copied-out payload (receiver).
    private let sendBuffer: UnsafeMutableRawBufferPointer
    private let receiveBuffer: UnsafeMutableRawBufferPointer

    /// The default spin before sleeping: long enough to catch a reply from a running peer,
    /// short enough not to matter when idle.
    public static let defaultSpinNanoseconds: UInt64 = 20_000

    public init(
        region: ControlRegion, side: Side, incomingDoorbell: consuming FileDescriptor,
        outgoingDoorbell: consuming FileDescriptor, spinNanoseconds: UInt64 = ControlChannel.defaultSpinNanoseconds
    ) {
        self.region = region
        self.side = side
        self.incomingDoorbell = incomingDoorbell
        self.outgoingDoorbell = outgoingDoorbell
        self.spinNanoseconds = spinNanoseconds
        let base = region.base
        typealias L = ControlRegionLayout
        // SAFETY: all offsets are inside the region's mapping, which `region` keeps alive.
        let coreToDomain = ByteRing(
            data: base + L.coreToDomainRingOffset, producerIndex: base + L.coreToDomainProducerOffset,
            consumerIndex: base + L.coreToDomainConsumerOffset, receiverSleeping: base + L.coreToDomainSleepingOffset,
            name: "core→domain ring")
        let domainToCore = ByteRing(
            data: base + L.domainToCoreRingOffset, producerIndex: base + L.domainToCoreProducerOffset,
            consumerIndex: base + L.domainToCoreConsumerOffset, receiverSleeping: base + L.domainToCoreSleepingOffset,
            name: "domain→core ring")
        (outgoing, incoming) = side == .core ? (coreToDomain, domainToCore) : (domainToCore, coreToDomain)
        // Resume from the published indices (0 after a reset). SAFETY: aligned u64s in the
        // header page; only this side ever writes them.
        head = bh_atomic_load_acquire_u64(outgoing.producerIndex)
        tail = bh_atomic_load_acquire_u64(incoming.consumerIndex)
        sendBuffer = .allocate(byteCount: L.maxFrameSize, alignment: 16)
        receiveBuffer = .allocate(byteCount: L.maxFrameSize, alignment: 16)
    }

    /// The domain's channel over its inherited descriptors: fd 5 (core → domain doorbell) and
    /// fd 6 (domain → core doorbell), which it takes ownership of.
    public static func domain(
        region: ControlRegion, spinNanoseconds: UInt64 = ControlChannel.defaultSpinNanoseconds
    ) -> ControlChannel {
        ControlChannel(
            region: region, side: .domain,
            incomingDoorbell: FileDescriptor(owning: DomainFileDescriptors.coreToDomainDoorbell),
            outgoingDoorbell: FileDescriptor(owning: DomainFileDescriptors.domainToCoreDoorbell),
            spinNanoseconds: spinNanoseconds)
    }

    deinit {
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
    }

    // MARK: sending

    /// Encodes `message` and sends it. Throws `frameTooLarge`, `ringFull` (the peer is not
    /// reading: the caller decides whether that is a fault), `corruptFrame` (the peer broke the
    /// ring), or `system` (the doorbell write failed).
    public func send(_ message: ControlMessage) throws(ChannelError) {
        let count: Int
        do throws(ProtocolError) {
            count = try message.encode(into: sendBuffer)
        } catch {
            throw ChannelError(
                .frameTooLarge, "sending \(message.name) on \(outgoing.name)", underlying: error)
        }
        try send(frame: UnsafeRawBufferPointer(rebasing: sendBuffer[..<count]))
    }

    /// Sends `frame` as one frame without encoding anything: for messages encoded elsewhere,
    /// and for `InjectFault.corruptMessage` (a frame that is not a valid message).
    public func send(frame: UnsafeRawBufferPointer) throws(ChannelError) {
        head = try outgoing.produce(frame, head: head)
        // The frame's release store, then a full barrier, then the peer's flag: with the
        // receiver's store-flag / barrier / check-ring, one of the two sides sees the other.
        bh_atomic_fence_seq_cst()
        // SAFETY: aligned u32 in the header page.
        if bh_atomic_load_relaxed_u32(outgoing.receiverSleeping) != 0,
            bh_atomic_exchange_u32(outgoing.receiverSleeping, 0) != 0
        {
            try ring(outgoingDoorbell)
        }
    }

    private func ring(_ doorbell: borrowing FileDescriptor) throws(ChannelError) {
        var one: UInt64 = 1
        do throws(SystemError) {
            // SAFETY: 8 bytes from a local.
            try withUnsafeBytes(of: &one) { (bytes) throws(SystemError) in try doorbell.writeAll(bytes) }
        } catch {
            throw ChannelError(.system, "ringing the doorbell of \(outgoing.name)", underlying: error)
        }
    }

    // MARK: receiving

    /// The next message if one is waiting, without blocking.
    public func tryReceive() throws(ChannelError) -> ControlMessage? {
        guard let count = try receiveFrame() else { return nil }
        do throws(ProtocolError) {
            return try ControlMessage.decode(UnsafeRawBufferPointer(rebasing: receiveBuffer[..<count]))
        } catch {
            throw ChannelError(.malformedMessage, "receiving on \(incoming.name)", underlying: error)
        }
    }

    /// Copies the next frame into the receive buffer and returns its length (nil: ring empty).
    func receiveFrame() throws(ChannelError) -> Int? {
        guard let (count, newTail) = try incoming.consume(into: receiveBuffer, tail: tail) else { return nil }
        tail = newTail
        return count
    }

    /// The payload of the frame `receiveFrame` just returned.
    func receivedFrame(_ count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: receiveBuffer[..<count])
    }

    /// Waits up to `timeoutMilliseconds` (negative: forever) for the next message; nil on
    /// timeout. Spins for `spinNanoseconds` first, then sleeps on the incoming doorbell.
    public func receive(timeoutMilliseconds: Int) throws(ChannelError) -> ControlMessage? {
        guard try waitForData(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        return try tryReceive()
    }

    /// Waits until the incoming ring has data (true) or the timeout passes (false).
    func waitForData(timeoutMilliseconds: Int) throws(ChannelError) -> Bool {
        if incoming.hasData(tail: tail) { return true }
        let start = Self.monotonicNanoseconds()
        let deadline: UInt64? =
            timeoutMilliseconds < 0 ? nil : start &+ UInt64(timeoutMilliseconds) &* 1_000_000
        // Spin.
        let spinEnd = start &+ min(spinNanoseconds, deadline.map { $0 &- start } ?? .max)
        var spins = 0
        while true {
            if incoming.hasData(tail: tail) { return true }
            bh_atomic_cpu_relax()
            spins &+= 1
            if spins & 31 == 0, Self.monotonicNanoseconds() >= spinEnd { break }
        }
        // Sleep.
        while true {
            guard prepareToSleep() else { return true }
            var pollTimeout: Int32 = -1
            if let deadline {
                let now = Self.monotonicNanoseconds()
                if now >= deadline {
                    finishSleeping()
                    return incoming.hasData(tail: tail)
                }
                pollTimeout = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            }
            do throws(ChannelError) {
                try sleepOnDoorbell(timeoutMilliseconds: pollTimeout)
            } catch {
                finishSleeping()
                throw error
            }
            finishSleeping()
            if incoming.hasData(tail: tail) { return true }
        }
    }

    // MARK: generations

    /// Core side, between domain generations (the old domain is dead, the new one not yet
    /// spawned): empties both rings, clears the doorbell flags, domain state and heartbeat, and
    /// records `generation`. InterruptStatus, the recovery and device-state areas are kept.
    public func resetRings(generation: UInt64) {
        region.resetHeader(generation: generation)
        head = 0
        tail = 0
    }

    /// `CLOCK_MONOTONIC` in nanoseconds (for `Ping.sentNanoseconds`).
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
