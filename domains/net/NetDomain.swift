import BulkheadChannel
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem
import BulkheadVirtio
#if canImport(Glibc)
import Glibc
#endif

/// The virtio-net driver domain: moves Ethernet frames between one NIC's queues, straight in
/// guest memory, and the tap device the core opened.
///
/// Life of a domain process (the shared part is `VirtioDomain.run` and `VirtioDomainServer`):
/// 1. Map, enter the sandbox (seccomp allowlist in `SeccompPolicy+Net.swift`), `Hello`, wait
///    for `Attach`.
/// 2. Recover both queues. transmitq (1): a chain the predecessor left in flight is completed
///    *without* sending it (it may have reached the wire already: a frame is lost, never
///    duplicated). receiveq (0): a chain left in flight was never completed, so the guest
///    never saw its contents; it is offered again for the next frame.
/// 3. Serve: transmit (one `writev` per frame, the virtio-net header stripped), receive (one
///    `readv` per frame into a posted buffer, behind a zeroed header with `num_buffers` = 1),
///    interrupt the guest only when EVENT_IDX asks for it; when idle, spin briefly, then
///    re-enable notifications and sleep on the tap (only while a receive buffer is posted),
///    both kick eventfds and the control doorbell.
enum NetDomain {
    static let idleSpinNanoseconds: UInt64 = 50_000
    static let batchLimit = 64
    /// struct virtio_net_hdr with VIRTIO_F_VERSION_1 (num_buffers included): 12 bytes.
    static let headerLength = 12
    /// The largest transmit chain accepted: the header and a 64 KiB frame (with VLAN tags).
    static let maximumTransmitChain: UInt64 = 65550
    /// IOV_MAX on Linux: the most iovecs one readv/writev takes.
    static let maximumVectors = 1024
    static let receiveQueue = 0
    static let transmitQueue = 1

    static func main(id: String, arguments: [String]) -> Int32 {
        VirtioDomain.run(id: id, arguments: arguments, seccomp: .net) { NetServer(context: $0).run() }
    }
}

/// The serving state of one net domain process.
final class NetServer: VirtioDomainServer {
    let context: DomainContext
    let tap = DomainFileDescriptors.backend
    let receiveKick = DomainFileDescriptors.queueNotify(NetDomain.receiveQueue)
    let transmitKick = DomainFileDescriptors.queueNotify(NetDomain.transmitQueue)

    var receive: SplitVirtqueue?
    var transmit: SplitVirtqueue?
    /// Receive chains popped (or recovered) and not yet filled, oldest first. They stay in
    /// flight in the recovery block; a successor offers them again.
    var receiveBuffers: [DescriptorChain] = []
    /// Where the part of a frame that does not fit the posted buffer lands (then dropped).
    let overflow: UnsafeMutableRawBufferPointer

    var brokenQueueStatus: Int32?
    var slowMicroseconds: UInt32 = 0
    var statsCadence = StatsCadence()

    // Counters of this process (the core adds them up across generations).
    var transmittedFrames: UInt64 = 0
    var transmittedBytes: UInt64 = 0
    var receivedFrames: UInt64 = 0
    var receivedBytes: UInt64 = 0
    var drops = NetDrops()
    /// What `drops` held when it was last logged, and when (at most one log line a second).
    var loggedDrops = NetDrops()
    var dropsLoggedAt: UInt64 = 0
    /// Transmit chains found in flight at attach, completed unsent; receive chains offered again.
    var recoveredTransmit: UInt64 = 0
    var recoveredReceive: UInt64 = 0

    init(context: DomainContext) {
        self.context = context
        overflow = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    }

    deinit { overflow.deallocate() }

    var attached: Bool { receive != nil && transmit != nil }

    func run() -> Int32 {
        region.publish(.starting)
        send(.hello(.init(kind: "net", id: id, pid: getpid())))
        while true {
            if let status = brokenQueueStatus { return status }
            region.beat()
            if attached {
                if serveBatch() { continue }
                if spinForWork() { continue }
                if enableNotifications() { continue } // work arrived meanwhile
            }
            var fds = [pollfd(fd: receiveKick, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: transmitKick, events: Int16(POLLIN), revents: 0)]
            // Frames waiting in the tap wake us only when there is a buffer to put them in;
            // otherwise the guest's receive kick does.
            if attached && !receiveBuffers.isEmpty { fds.append(pollfd(fd: tap, events: Int16(POLLIN), revents: 0)) }
            sleep(on: fds, milliseconds: 100)
            VirtioDomain.drain(receiveKick)
            VirtioDomain.drain(transmitKick)
            receive?.disableNotifications()
            transmit?.disableNotifications()
            if let status = handleControlMessages() { return status }
        }
    }

    func detachQueues() {
        receive = nil
        transmit = nil
        receiveBuffers = []
    }

    func attachQueues(_ attach: ControlMessage.Attach) throws(VirtioError) {
        detachQueues()
        let memory = try GuestRAM(base: guestBase, memorySize: guestSize)
        func queue(_ index: Int) throws(VirtioError) -> SplitVirtqueue {
            guard let config = attach.queues.first(where: { $0.index == UInt32(index) }), config.ready,
                  config.size <= UInt32(UInt16.max) else {
                throw VirtioError(.invalidConfiguration, "Attach carries no ready queue \(index) (0 receiveq, 1 transmitq)")
            }
            let configuration = QueueConfiguration(
                size: UInt16(config.size), descriptorTable: config.descriptorAddress, availableRing: config.availableAddress,
                usedRing: config.usedAddress, features: attach.deviceFeatures)
            return try SplitVirtqueue(memory: memory, configuration: configuration, recoveryBlock: region.queueRecovery(index))
        }
        let receive = try queue(NetDomain.receiveQueue)
        let transmit = try queue(NetDomain.transmitQueue)

        // receiveq: in flight means popped and never completed: the guest never saw the
        // buffer's contents. Offer it again, for a new frame.
        let receiveHeads = try receive.recover()
        for head in receiveHeads {
            do {
                receiveBuffers.append(try receive.chain(head: head))
            } catch {
                completeMalformed(receive, error)
                drops.receiveMalformed += 1
            }
        }
        // transmitq: in flight means popped, perhaps written to the tap: complete it unsent, so
        // that no frame is ever sent twice (a frame lost in a crash, as on a real wire).
        let transmitHeads = try transmit.recover()
        for head in transmitHeads {
            try transmit.pushUsed(head: head, length: 0)
        }
        recoveredReceive += UInt64(receiveHeads.count)
        recoveredTransmit += UInt64(transmitHeads.count)
        receive.disableNotifications()
        transmit.disableNotifications()
        self.receive = receive
        self.transmit = transmit
        statsCadence.restart()
        region.publish(.running)
        send(.attached(.init(replayed: UInt32(receiveHeads.count + transmitHeads.count))))
        // Always interrupt once: a predecessor may have published used entries and died before
        // raising the irqfd (recover() then adopts them).
        interruptGuest()
    }

    /// Transmits and receives up to a batch each; true if any frame moved.
    func serveBatch() -> Bool {
        guard let receive, let transmit else { return false }
        let sent = transmitBatch(transmit)
        let received = receiveBatch(receive)
        guard brokenQueueStatus == nil else { return false }
        if sent > 0 || received > 0 {
            // needsNotification() on both queues: each records what it signalled.
            let wantTransmit = sent > 0 && transmit.needsNotification()
            let wantReceive = received > 0 && receive.needsNotification()
            if wantTransmit || wantReceive { interruptGuest() }
            if transmittedFrames + receivedFrames > 0, statsCadence.due() { sendStats() }
        }
        logDrops()
        return sent > 0 || received > 0
    }

    /// Tells the operator about dropped frames: at most one line a second, when counts moved.
    func logDrops() {
        guard drops != loggedDrops else { return }
        let now = ControlChannel.monotonicNanoseconds()
        guard now - dropsLoggedAt >= 1_000_000_000 else { return }
        dropsLoggedAt = now
        loggedDrops = drops
        send(.log(.init(level: .warning, message: "\(id): frames dropped: \(drops)")))
    }

    // MARK: transmitq

    /// Pops and sends up to a batch of transmit chains; returns how many were completed.
    func transmitBatch(_ queue: SplitVirtqueue) -> Int {
        var done = 0
        while done < NetDomain.batchLimit {
            let chain: DescriptorChain?
            do { chain = try queue.popAvailable() } catch {
                if error.head != nil { completeMalformed(queue, error); drops.transmitMalformed += 1; done += 1; continue }
                if !takeQueueError(error) { return done }
                continue
            }
            guard let chain else { break }
            if slowMicroseconds > 0 { usleep(slowMicroseconds) }
            if let length = send(chain) {
                transmittedFrames += 1
                transmittedBytes += UInt64(length)
            }
            guard complete(queue, head: chain.head, length: 0) else { return done }
            done += 1
        }
        return done
    }

    /// Writes the frame of a transmit chain to the tap (one `writev`, the header skipped);
    /// returns its length, or nil when it was dropped (and counted).
    func send(_ chain: DescriptorChain) -> Int? {
        let length = chain.readableLength
        guard length > UInt64(NetDomain.headerLength) else { drops.transmitShort += 1; return nil }
        guard length <= NetDomain.maximumTransmitChain else { drops.transmitOversize += 1; return nil }
        let vectors = Self.vectors(chain.readable, skipping: NetDomain.headerLength)
        guard chain.writable.isEmpty, vectors.count < NetDomain.maximumVectors else {
            drops.transmitMalformed += 1
            return nil
        }
        var written: Int
        repeat {
            written = vectors.withUnsafeBufferPointer { writev(tap, $0.baseAddress, Int32($0.count)) }
        } while written < 0 && errno == EINTR
        guard written == Int(length) - NetDomain.headerLength else {
            drops.transmitRefused += 1 // by the tap: shorter than an Ethernet header, queue full, link gone
            return nil
        }
        return written
    }

    // MARK: receiveq

    /// Fills posted receive buffers with frames from the tap, up to a batch; returns how many
    /// were completed.
    func receiveBatch(_ queue: SplitVirtqueue) -> Int {
        var done = 0
        var attempts = 0
        while done < NetDomain.batchLimit && attempts < 2 * NetDomain.batchLimit {
            attempts += 1
            guard let buffer = nextReceiveBuffer(queue) else { break }
            let vectors = Self.vectors(buffer.writable, skipping: NetDomain.headerLength)
            let capacity = Int(buffer.writableLength) - NetDomain.headerLength
            guard buffer.readable.isEmpty, capacity > 0, vectors.count < NetDomain.maximumVectors - 1 else {
                // Not a receive buffer (device-readable parts, no room for the header).
                receiveBuffers.removeFirst()
                drops.receiveMalformed += 1
                guard complete(queue, head: buffer.head, length: 0) else { return done }
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
            guard complete(queue, head: buffer.head, length: UInt32(NetDomain.headerLength + length)) else { return done }
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
                if error.head != nil { completeMalformed(queue, error); drops.receiveMalformed += 1; continue }
                if !takeQueueError(error) { return nil }
            }
        }
        return receiveBuffers.first
    }

    /// `virtio_net_hdr` for a received frame: no flags, no GSO, `num_buffers` = 1 (u16 at 10).
    static func writeHeader(into buffers: [GuestBuffer]) {
        var offset = 0
        for buffer in buffers where offset < NetDomain.headerLength {
            let n = min(buffer.bytes.count, NetDomain.headerLength - offset)
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

    /// Publishes a completion; false (and the domain exits) when the queue is broken.
    func complete(_ queue: SplitVirtqueue, head: UInt16, length: UInt32) -> Bool {
        do { try queue.pushUsed(head: head, length: length) } catch {
            send(.faultReport(.init(kind: "queue", detail: "\(error)")))
            brokenQueueStatus = brokenQueueExitStatus
            return false
        }
        return true
    }

    func completeMalformed(_ queue: SplitVirtqueue, _ error: VirtioError) {
        guard let head = error.head else { return }
        try? queue.pushUsed(head: head, length: 0)
    }

    /// A pop error with no chain to complete: true to go on (the driver broke the spec for one
    /// entry), false when the queue is broken (reported; the domain exits).
    func takeQueueError(_ error: VirtioError) -> Bool {
        switch error.code {
        case .headOutOfRange, .headInFlight:
            drops.queueErrors += 1
            return true
        default:
            send(.faultReport(.init(kind: "queue", detail: "\(error)")))
            brokenQueueStatus = brokenQueueExitStatus
            return false
        }
    }

    // MARK: idle

    /// Polls for work for a short while: a transmit chain, a new receive buffer, or (with a
    /// buffer posted) a frame in the tap. True when work arrived.
    func spinForWork() -> Bool {
        guard let receive, let transmit else { return false }
        let deadline = ControlChannel.monotonicNanoseconds() + NetDomain.idleSpinNanoseconds
        while ControlChannel.monotonicNanoseconds() < deadline {
            if transmit.hasAvailable { return true }
            if receiveBuffers.isEmpty {
                if receive.hasAvailable { return true }
            } else if tapReadable() {
                return true
            }
        }
        return false
    }

    func tapReadable() -> Bool {
        var descriptor = pollfd(fd: tap, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    /// Asks for kicks before sleeping: always on transmitq; on receiveq only when no buffer is
    /// posted (a frame waiting in the tap then waits for one). True when work arrived before the
    /// request was visible.
    func enableNotifications() -> Bool {
        guard let receive, let transmit else { return false }
        var arrived = transmit.enableNotifications()
        if receiveBuffers.isEmpty && receive.enableNotifications() { arrived = true }
        return arrived
    }

    func sendStats() {
        let inFlight = (receive?.inFlightCount ?? 0) + (transmit?.inFlightCount ?? 0)
        send(.stats(.init(requests: transmittedFrames + receivedFrames, readBytes: receivedBytes,
                          writtenBytes: transmittedBytes, errors: drops.total,
                          inFlight: UInt64(inFlight), replayed: recoveredReceive + recoveredTransmit)))
    }
}

/// Frames and chains a net domain dropped, by why. Each is counted, none stops the domain.
struct NetDrops: Equatable, CustomStringConvertible {
    /// Transmit chains no longer than the virtio-net header (no frame).
    var transmitShort: UInt64 = 0
    /// Transmit chains larger than `NetDomain.maximumTransmitChain`.
    var transmitOversize: UInt64 = 0
    /// Transmit chains that are not transmit chains (device-writable parts, a broken walk).
    var transmitMalformed: UInt64 = 0
    /// Frames the tap refused (shorter than an Ethernet header, its queue full).
    var transmitRefused: UInt64 = 0
    /// Received frames larger than the posted buffer.
    var receiveOversize: UInt64 = 0
    /// Receive chains that are not receive buffers (device-readable parts, no room for the
    /// header, a broken walk): completed empty.
    var receiveMalformed: UInt64 = 0
    /// Available entries the driver filled wrongly (a head out of range or already in flight).
    var queueErrors: UInt64 = 0

    var total: UInt64 {
        transmitShort + transmitOversize + transmitMalformed + transmitRefused + receiveOversize + receiveMalformed + queueErrors
    }

    var description: String {
        "tx_short=\(transmitShort) tx_oversize=\(transmitOversize) tx_malformed=\(transmitMalformed) "
            + "tx_refused=\(transmitRefused) rx_oversize=\(receiveOversize) rx_malformed=\(receiveMalformed) "
            + "queue_errors=\(queueErrors)"
    }
}
