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
/// 3. Serve: the frames move in `NetFrameEngine` (BulkheadVirtio): transmit (one `writev` per
///    frame, the virtio-net header stripped), receive (one `readv` per frame into a posted
///    buffer, behind a zeroed header with `num_buffers` = 1); interrupt the guest only when
///    EVENT_IDX asks for it; when idle, spin briefly, then
///    re-enable notifications and sleep on the tap (only while a receive buffer is posted),
///    both kick eventfds and the control doorbell.
enum NetDomain {
    static let idleSpinNanoseconds: UInt64 = 50_000
    static let receiveQueue = NetFrameEngine.receiveQueue
    static let transmitQueue = NetFrameEngine.transmitQueue

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
    /// The queues and the frames between them and the tap; its counters span the process.
    let engine: NetFrameEngine

    var brokenQueueStatus: Int32?
    var slowMicroseconds: UInt32 {
        get { engine.slowMicroseconds }
        set { engine.slowMicroseconds = newValue }
    }
    var statsCadence = StatsCadence()

    /// What `engine.drops` held when it was last logged, and when (at most one log line a second).
    var loggedDrops = NetDrops()
    var dropsLoggedAt: UInt64 = 0
    /// Transmit chains found in flight at attach, completed unsent; receive chains offered again.
    var recoveredTransmit: UInt64 = 0
    var recoveredReceive: UInt64 = 0

    init(context: DomainContext) {
        self.context = context
        engine = NetFrameEngine(tap: DomainFileDescriptors.backend)
    }

    var receive: SplitVirtqueue? { engine.receive }
    var transmit: SplitVirtqueue? { engine.transmit }
    var attached: Bool { engine.attached }

    func run() -> Int32 {
        region.publish(.starting)
        send(.hello(.init(kind: "net", id: id, pid: getpid())))
        while true {
            if let status = brokenQueueStatus { return status }
            region.beat()
            if attached {
                if serveBatch() {
                    // A busy queue must not starve the control ring (see BlockServer.run).
                    if let status = handleControlMessages() { return status }
                    continue
                }
                if spinForWork() { continue }
                if enableNotifications() { continue } // work arrived meanwhile
            }
            var fds = [pollfd(fd: receiveKick, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: transmitKick, events: Int16(POLLIN), revents: 0)]
            // Frames waiting in the tap wake us only when there is a buffer to put them in;
            // otherwise the guest's receive kick does.
            if attached && !engine.receiveBuffers.isEmpty { fds.append(pollfd(fd: tap, events: Int16(POLLIN), revents: 0)) }
            sleep(on: fds, milliseconds: 100)
            VirtioDomain.drain(receiveKick)
            VirtioDomain.drain(transmitKick)
            receive?.disableNotifications()
            transmit?.disableNotifications()
            if let status = handleControlMessages() { return status }
        }
    }

    func detachQueues() { engine.detach() }

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
        // Recovery: receive chains in flight are offered again, transmit chains completed unsent.
        let recovered = try engine.attach(receive: receive, transmit: transmit)
        recoveredReceive += UInt64(recovered.receive)
        recoveredTransmit += UInt64(recovered.transmit)
        receive.disableNotifications()
        transmit.disableNotifications()
        statsCadence.restart()
        region.publish(.running)
        send(.attached(.init(replayed: UInt32(recovered.receive + recovered.transmit))))
        // Always interrupt once: a predecessor may have published used entries and died before
        // raising the irqfd (recover() then adopts them).
        interruptGuest()
    }

    /// Transmits and receives up to a batch each; true if any frame moved.
    func serveBatch() -> Bool {
        guard let receive, let transmit else { return false }
        let sent = engine.transmitBatch()
        let received = engine.receiveBatch()
        if let error = engine.broken {
            breakQueues(kind: "queue", "\(error)")
            return false
        }
        if sent > 0 || received > 0 {
            // needsNotification() on both queues: each records what it signalled.
            let wantTransmit = sent > 0 && transmit.needsNotification()
            let wantReceive = received > 0 && receive.needsNotification()
            if wantTransmit || wantReceive { interruptGuest() }
            if engine.transmittedFrames + engine.receivedFrames > 0, statsCadence.due() { sendStats() }
        }
        logDrops()
        return sent > 0 || received > 0
    }

    /// Tells the operator about dropped frames: at most one line a second, when counts moved.
    func logDrops() {
        let drops = engine.drops
        guard drops != loggedDrops else { return }
        let now = ControlChannel.monotonicNanoseconds()
        guard now - dropsLoggedAt >= 1_000_000_000 else { return }
        dropsLoggedAt = now
        loggedDrops = drops
        send(.log(.init(level: .warning, message: "\(id): frames dropped: \(drops)")))
    }

    // MARK: idle

    /// Polls for work for a short while: a transmit chain, a new receive buffer, or (with a
    /// buffer posted) a frame in the tap. True when work arrived.
    func spinForWork() -> Bool {
        guard let receive, let transmit else { return false }
        let deadline = ControlChannel.monotonicNanoseconds() + NetDomain.idleSpinNanoseconds
        while ControlChannel.monotonicNanoseconds() < deadline {
            if transmit.hasAvailable { return true }
            if engine.receiveBuffers.isEmpty {
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
        if engine.receiveBuffers.isEmpty && receive.enableNotifications() { arrived = true }
        return arrived
    }

    func sendStats() {
        let inFlight = (receive?.inFlightCount ?? 0) + (transmit?.inFlightCount ?? 0)
        send(.stats(.init(requests: engine.transmittedFrames + engine.receivedFrames, readBytes: engine.receivedBytes,
                          writtenBytes: engine.transmittedBytes, errors: engine.drops.total,
                          inFlight: UInt64(inFlight), replayed: recoveredReceive + recoveredTransmit)))
    }
}
