import BulkheadChannel
import BulkheadKVM
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem
import BulkheadVirtio
import CBulkheadLinux
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Watches one driver domain process and restarts it when it dies, so that the guest never
/// notices. One supervisor per device; it runs on its own `DedicatedThread`.
///
/// It owns what must outlive the domain process: the control region (rings, heartbeat,
/// InterruptStatus, the recovery area with each queue's in-flight log), the doorbells, the
/// irqfd and ioeventfds, and the backend fd (disk file). A new domain gets the same objects at
/// the same fd numbers, receives `Attach` with the transport state the core kept, replays its
/// in-flight requests and resumes.
public final class DomainSupervisor: VirtioTransportBackend, @unchecked Sendable {
    /// What kind of domain, and what it serves.
    public struct Specification: Sendable {
        public var kind: String
        public var id: String
        public var executable: String
        public var queueCount: Int
        public var readOnly: Bool
        public var capacitySectors: UInt64
        public var config: [UInt8]
        public var policy: RestartPolicy
        /// A domain whose heartbeat stands still this long while work is pending is hung.
        public var watchdogMilliseconds: Double = 1000
    }

    /// Why a domain ended, as the operator sees it.
    public enum ExitReason: Sendable, Equatable, CustomStringConvertible {
        case terminated(DomainTermination)
        case protocolFault(String)
        case handshakeFailed(String)
        case watchdog(milliseconds: Double)

        public var description: String {
            switch self {
            case .terminated(let how): return "\(how)"
            case .protocolFault(let why): return "protocol fault: \(why)"
            case .handshakeFailed(let why): return "handshake failed: \(why)"
            case .watchdog(let ms): return "watchdog: no heartbeat for \(Int(ms)) ms while work was pending"
            }
        }
    }

    /// A summary for `bulkhead run`'s closing report and the tests.
    public struct Report: Sendable {
        public var id: String
        public var restarts: Int
        public var failed: Bool
        public var exitReasons: [String]
        /// Milliseconds from a domain's death to the first request its successor completed.
        public var recoveryMilliseconds: [Double]
        public var requests: UInt64
        /// Requests the core answered with an I/O error after the device failed.
        public var failedRequests: UInt64
        /// Register accesses forwarded to an emulated device's domain and answered, and the
        /// round trips (vCPU exit handled → answer seen) of the last 4096, in µs.
        public var registerAccesses: UInt64 = 0
        public var registerRoundTripMicroseconds: [Double] = []
    }

    let spec: Specification
    let logger: Logger
    let region: ControlRegion
    let channel: ControlChannel
    let irqfd: SharedFileDescriptor
    let kicks: [SharedFileDescriptor]
    let backend: FileDescriptor
    let guestMemory: GuestMemory
    var guestMemoryFD: Int32 { guestMemory.file.rawValue }
    var guestMemorySize: UInt64 { guestMemory.size }
    let onFailure: @Sendable () -> Void
    let events: DomainEventLog

    let state = Mutex(State())
    private let sendLock = Mutex(())
    private let wakeup: FileDescriptor
    /// Control-path probe (`ping(count:)`): the last sequence sent, and the last `Pong` seen
    /// (sequence, round trip in ns stamped by the supervisor thread when it handled the Pong).
    private let pingSequence = Mutex<UInt64>(0)
    private let lastPong = Mutex<(sequence: UInt64, nanoseconds: UInt64)?>(nil)
    private var thread: DedicatedThread?
    /// An emulated device's register access waiting for the domain's answer.
    let registers = RegisterForwarding()
    /// Held while a thread consumes the domain → core ring (`receiveMessages`).
    private let receiveLock = Mutex(())
    /// A protocol fault a vCPU thread met while taking messages; under `receiveLock`.
    nonisolated(unsafe) private var faultSeenOnVcpu: ExitReason?

    init(spec: Specification, guestMemory: GuestMemory, backend: consuming FileDescriptor, irqfd: SharedFileDescriptor,
         kicks: [SharedFileDescriptor], logger: Logger, events: DomainEventLog,
         onFailure: @escaping @Sendable () -> Void) throws(CoreError) {
        self.events = events
        self.spec = spec
        self.logger = logger
        self.backend = backend
        self.irqfd = irqfd
        self.kicks = kicks
        self.guestMemory = guestMemory
        self.onFailure = onFailure
        guard access(spec.executable, X_OK) == 0 else {
            throw CoreError(.domainSetup("cannot start the \(spec.kind) domain of \(spec.id): \(spec.executable) is missing or not "
                + "executable (it is built beside bulkhead; or set BULKHEAD_DOMAIN)"))
        }
        do {
            region = try ControlRegion.create(name: "bulkhead-\(spec.id)-control")
            wakeup = try FileDescriptor.eventfd(nonBlocking: true)
            channel = ControlChannel(region: region, side: .core,
                                     incomingDoorbell: try FileDescriptor.eventfd(nonBlocking: true),
                                     outgoingDoorbell: try FileDescriptor.eventfd(nonBlocking: true))
        } catch {
            throw CoreError(.domainSetup("cannot set up the control channel of \(spec.id): \(error)"), underlying: error as? any Error & Sendable)
        }
    }

    /// Starts the domain and the thread that watches it.
    func start() {
        thread = DedicatedThread.start(name: "sup-\(spec.id)") { [self] in self.superviseLoop() }
        if thread == nil { logger.error("cannot start the supervisor thread", metadata: ["domain.id": "\(spec.id)"]) }
    }

    /// Shuts the domain down and waits for the supervisor thread.
    func stop() {
        state.withLock { $0.stop() }
        signal(wakeup)
        thread?.join()
    }

    /// Asks the domain to run one of its test hooks (fault injection).
    /// `crash` is a SIGKILL from the core; every other kind is a test hook the domain runs.
    /// False when no domain serves the device right now.
    @discardableResult
    public func inject(_ fault: ControlMessage.InjectFault) -> Bool {
        guard let active = state.withLock({ $0.active }) else { return false }
        if fault.kind == .crash {
            try? active.process.kill()
        } else {
            send(.injectFault(fault))
        }
        return true
    }

    /// Control-path probe: sends `count` `Ping`s one at a time and returns each round trip
    /// core → domain → core in µs. Nil when no domain serves right now; a `Pong` not back
    /// within 1 s ends the probe early (fewer round trips than asked).
    public func ping(count: Int) -> [Double]? {
        guard state.withLock({ $0.active }) != nil else { return nil }
        return pingSequence.withLock { sequence in
            var roundTrips: [Double] = []
            for _ in 0..<max(count, 0) {
                sequence &+= 1
                let expected = sequence
                send(.ping(.init(sequence: expected, sentNanoseconds: ControlChannel.monotonicNanoseconds())))
                let deadline = ControlChannel.monotonicNanoseconds() + 1_000_000_000
                while true {
                    if let pong = lastPong.withLock({ $0 }), pong.sequence == expected {
                        roundTrips.append(Double(pong.nanoseconds) / 1000)
                        break
                    }
                    if ControlChannel.monotonicNanoseconds() > deadline { return roundTrips }
                    usleep(20)
                }
            }
            return roundTrips
        }
    }

    public var report: Report {
        var report = state.withLock { $0.report(id: spec.id) }
        (report.registerAccesses, report.registerRoundTripMicroseconds) = registers.roundTrips
        return report
    }

    // MARK: VirtioTransportBackend (called on vCPU threads)

    public func activate(_ activation: VirtioActivation) {
        state.withLock { $0.activate(activation) }
        signal(wakeup) // the supervisor thread sends Attach
    }

    public func reset() {
        state.withLock { $0.reset() }
        send(.reset)
    }

    public func interruptStatus() -> UInt32 { region.interruptStatus }

    public func acknowledgeInterrupt(_ bits: UInt32) { region.acknowledgeInterrupt(bits) }

    // MARK: the supervisor thread

    private func superviseLoop() {
        // Spawned from this long-lived thread: PR_SET_PDEATHSIG follows the spawning thread.
        var standby: DomainHandle?
        while true {
            if state.withLock({ $0.stopping || $0.failed }) { break }
            let active: DomainHandle
            let generation = beginGeneration()
            if let warm = standby {
                // A warm standby has already started and entered its sandbox: let it take over.
                standby = nil
                warm.activate()
                active = warm
                logger.debug("standby domain activated", metadata: ["domain.id": "\(spec.id)", "domain.pid": "\(warm.pid)",
                                                                    "domain.generation": "\(generation)"])
            } else {
                do {
                    active = try spawn(standby: false)
                } catch {
                    recordExit(.handshakeFailed("\(error)"))
                    if !backOff() { break }
                    continue
                }
            }
            let reason = watch(active, standby: &standby)
            if state.withLock({ $0.stopping }) { break }
            recordExit(reason)
            if !backOff() { break }
        }
        if let standby {
            try? standby.process.kill()
            _ = try? standby.process.wait()
        }
        if state.withLock({ $0.failed && !$0.stopping }) { serveFailed() }
    }

    /// The device is past its restart budget: the core answers every request, those the last
    /// domain left in flight included, with VIRTIO_BLK_S_IOERR, so that the guest sees I/O
    /// errors and keeps running.
    ///
    /// A failed NIC is link down instead (its onFailure, `NetDevice.swift`): the core completes
    /// its transmit chains unsent, as frames sent on a pulled cable go nowhere, and leaves its
    /// receive buffers posted.
    private func serveFailed() {
        let index = spec.kind == "net" ? 1 : 0 // the queue the core answers: requests, or transmitq
        var queue: SplitVirtqueue?
        while !state.withLock({ $0.stopping }) {
            if queue == nil, let activation = state.withLock({ $0.activation }), index < activation.queues.count,
               case let config = activation.queues[index], config.ready {
                do {
                    let memory = try GuestRAM(base: guestMemory.mapping.base, memorySize: guestMemory.size)
                    let configuration = QueueConfiguration(
                        size: config.size, descriptorTable: config.descriptorTable, availableRing: config.driverArea,
                        usedRing: config.deviceArea, features: activation.driverFeatures)
                    let recovered = try SplitVirtqueue(memory: memory, configuration: configuration,
                                                       recoveryBlock: region.queueRecovery(index))
                    for head in try recovered.recover() {
                        failRequest(recovered, head: head, chain: try? recovered.chain(head: head))
                    }
                    queue = recovered
                } catch {
                    logger.error("cannot take over the queue of the failed device", metadata: ["domain.id": "\(spec.id)", "error": "\(error)"])
                    return
                }
            }
            if let queue {
                while true {
                    do {
                        guard let chain = try queue.popAvailable() else { break }
                        failRequest(queue, head: chain.head, chain: chain)
                    } catch {
                        guard let head = error.head else { break }
                        failRequest(queue, head: head, chain: nil)
                    }
                }
                region.raiseInterrupt(1)
                signalEventfd(irqfd.rawValue)
                if queue.enableNotifications() { continue } // ask for kicks (EVENT_IDX); more came meanwhile
            }
            var fds = [
                pollfd(fd: index < kicks.count ? kicks[index].rawValue : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeup.rawValue, events: Int16(POLLIN), revents: 0),
            ]
            _ = poll(&fds, nfds_t(fds.count), 100)
            if index < kicks.count { drain(kicks[index].descriptor) }
            drain(wakeup)
        }
    }

    private func failRequest(_ queue: SplitVirtqueue, head: UInt16, chain: DescriptorChain?) {
        var length: UInt32 = 0
        if spec.kind == "blk", let chain, let status = VirtioBlockRequest.statusByte(of: chain) {
            // SAFETY: statusByte points at the chain's last device-writable byte, in guest RAM.
            status.storeBytes(of: 1, as: UInt8.self) // VIRTIO_BLK_S_IOERR
            length = 1
        }
        try? queue.pushUsed(head: head, length: length)
        state.withLock { $0.requestFailed() }
    }

    /// Empties the rings for the next domain generation.
    private func beginGeneration() -> UInt64 {
        let generation = state.withLock { $0.beginGeneration() }
        // Under the send lock: a vCPU thread may be sending (Reset) at this moment.
        receiveLock.withLock { _ in
            sendLock.withLock { _ in channel.resetRings(generation: generation) }
            faultSeenOnVcpu = nil
        }
        return generation
    }

    /// Starts a domain process. A standby enters its sandbox and then waits on its activation
    /// eventfd (fd 9) before it touches the control region.
    private func spawn(standby: Bool) throws(SandboxError) -> DomainHandle {
        let activation: SharedFileDescriptor?
        if standby {
            do { activation = SharedFileDescriptor(try FileDescriptor.eventfd(nonBlocking: true)) } catch {
                throw SandboxError(.spawn, "activation eventfd for \(spec.id)", underlyingError: error)
            }
        } else {
            activation = nil
        }
        // At 3, 4, ...: DomainFileDescriptors. Number 9 is the standby's activation eventfd
        // (the disk fd again when there is none).
        var fds: [Int32] = [region.file.rawValue, guestMemoryFD, channel.outgoingDoorbell.rawValue,
                            channel.incomingDoorbell.rawValue, irqfd.rawValue, backend.rawValue,
                            activation?.rawValue ?? backend.rawValue]
        for kick in kicks { fds.append(kick.rawValue) }
        let arguments = [spec.kind, spec.id] + (standby ? ["--standby"] : [])
        let process = try DomainProcess.spawn(executable: spec.executable, arguments: arguments, fds: fds)
        logger.debug("domain started", metadata: ["t.ms": "\(monotonicMilliseconds())", "domain.id": "\(spec.id)",
                                                  "domain.pid": "\(process.pid)", "standby": "\(standby)"])
        return DomainHandle(process: process, activation: activation)
    }

    /// Serves one domain process until it ends (or is killed for a protocol fault). Keeps a
    /// warm standby ready once the active domain has attached.
    private func watch(_ active: DomainHandle, standby: inout DomainHandle?) -> ExitReason {
        var faultReason: ExitReason?
        var lastStandbySpawn = -1e9
        var lastBeat = region.heartbeat
        var lastBeatChange = monotonicMilliseconds()
        state.withLock { s in
            s.started(pid: active.pid)
            s.active = active
        }
        events.record(.started, domain: spec.id, detail: "pid \(active.pid)")
        while true {
            // Once the domain broke the protocol it is being killed and its messages are no
            // longer read: wait for its death alone. (Skipping the poll because frames it sent
            // after the bad one are waiting would spin here forever without seeing it die.)
            let reading = faultReason == nil
            var fds = [
                pollfd(fd: active.process.pidfd.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: reading ? channel.incomingDoorbell.rawValue : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: wakeup.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: standby?.process.pidfd.rawValue ?? -1, events: Int16(POLLIN), revents: 0),
            ]
            if !reading {
                _ = poll(&fds, nfds_t(fds.count), 100)
            } else if receiveLock.withLock({ _ in channel.prepareToSleep() }) {
                _ = poll(&fds, nfds_t(fds.count), 100)
                receiveLock.withLock { _ in channel.finishSleeping() }
            }
            drain(wakeup)

            if state.withLock({ $0.stopping }) {
                send(.shutdown)
                var ended = false
                for _ in 0..<50 where !ended {
                    if (try? active.process.poll()) ?? nil != nil { ended = true } else { usleep(2000) }
                }
                if !ended {
                    try? active.process.kill()
                    _ = try? active.process.wait()
                }
                // The domain's last Stats (sent on Shutdown) make the closing counters exact.
                _ = receiveMessages()
                return .terminated(.exited(status: 0))
            }

            if fds[0].revents != 0 {
                let died = monotonicMilliseconds()
                let termination: DomainTermination
                do { termination = try active.process.wait() } catch { return .protocolFault("cannot reap: \(error)") }
                state.withLock { $0.died(at: died) }
                return faultReason ?? .terminated(termination)
            }

            if fds[3].revents != 0, let dead = standby {
                let how = (try? dead.process.wait()).map { "\($0)" } ?? "unknown"
                logger.notice("standby domain ended", metadata: ["domain.id": "\(spec.id)", "reason": "\(how)"])
                standby = nil
            }

            // Messages from the domain (a vCPU waiting on a register answer may have taken some,
            // and a fault with them). A malformed frame is the domain's fault: kill it.
            if faultReason == nil, let fault = receiveMessages() {
                faultReason = fault
                try? active.process.kill()
            }
            if faultReason == nil { attachIfReady() }

            // Watchdog: a domain that stops heart-beating while the guest waits on it is hung
            // (stopped, spinning, deadlocked): kill it, and the restart path takes over.
            let beat = region.heartbeat
            let now = monotonicMilliseconds()
            if beat != lastBeat {
                lastBeat = beat
                lastBeatChange = now
            } else if faultReason == nil, now - lastBeatChange > spec.watchdogMilliseconds, workPending() {
                faultReason = .watchdog(milliseconds: now - lastBeatChange)
                events.record(.hung, domain: spec.id, detail: "no heartbeat for \(Int(now - lastBeatChange)) ms")
                logger.warning("domain hung; killing it", metadata: ["domain.id": "\(spec.id)", "domain.pid": "\(active.pid)"])
                try? active.process.kill()
            }

            // Once the active domain serves (attached, and its first request completed after a
            // restart), prepare its successor; at most once a second, so that a standby that
            // cannot start does not spin.
            if standby == nil, faultReason == nil, now - lastStandbySpawn > 1000,
               state.withLock({ $0.wantsStandby }) {
                lastStandbySpawn = now
                standby = try? spawn(standby: true)
            }
        }
    }

    /// Takes every waiting message off the domain → core ring and handles it; returns a
    /// protocol fault (a malformed frame, a message breaking the protocol), also one a vCPU
    /// thread met while taking messages (`takeMessagesOnVcpu`). Two threads consume the ring,
    /// one at a time: the supervisor thread and a vCPU waiting on a register access.
    private func receiveMessages() -> ExitReason? {
        receiveLock.withLock { _ -> ExitReason? in
            if let fault = faultSeenOnVcpu { return fault }
            do throws(ChannelError) {
                while let message = try channel.tryReceive() {
                    if let fault = handle(message) { return fault }
                }
            } catch {
                return State.fault(receiving: error)
            }
            return nil
        }
    }

    /// On a vCPU thread waiting on a register access: takes the domain's messages (the
    /// answer among them) off the ring itself, unless the supervisor thread is at it. One
    /// thread wake-up instead of two (domain → supervisor → vCPU) per access. A fault is left
    /// for the supervisor thread, which kills the domain.
    func takeMessagesOnVcpu() {
        let fault: ExitReason?? = receiveLock.withLockIfAvailable { _ -> ExitReason? in
            guard faultSeenOnVcpu == nil else { return nil }
            do throws(ChannelError) {
                while let message = try channel.tryReceive() {
                    if let fault = handle(message) { faultSeenOnVcpu = fault; return fault }
                }
            } catch {
                faultSeenOnVcpu = State.fault(receiving: error)
                return faultSeenOnVcpu
            }
            return nil
        }
        if case .some(.some) = fault { signal(wakeup) }
    }

    /// On a vCPU thread about to sleep on a register answer: sets the core's sleeping flag so
    /// that the domain rings the doorbell with its next message. True: armed; false: the
    /// supervisor thread is taking messages (it signals the answer); nil: a message is already
    /// waiting.
    func armDoorbell() -> Bool? {
        let armed = receiveLock.withLockIfAvailable { _ in channel.prepareToSleep() }
        switch armed {
        case .some(true): return true
        case .some(false): return nil
        case .none: return false
        }
    }

    /// Handles one message (the state change is `State.handle`); returns a reason when the
    /// message is a protocol fault.
    private func handle(_ message: ControlMessage) -> ExitReason? {
        let outcome = state.withLock { s in
            s.handle(message, kind: spec.kind, id: spec.id, now: monotonicMilliseconds(),
                     nowNanoseconds: ControlChannel.monotonicNanoseconds())
        }
        switch outcome {
        case .handled:
            break
        case .protocolFault(let reason):
            return reason
        case .helloAccepted:
            logger.trace("hello", metadata: ["domain.id": "\(spec.id)", "t.ms": "\(monotonicMilliseconds())"])
        case .attached(let replayed):
            logger.trace("attached", metadata: ["domain.id": "\(spec.id)", "t.ms": "\(monotonicMilliseconds())"])
            if replayed > 0 {
                logger.debug("domain replayed in-flight requests", metadata: ["domain.id": "\(spec.id)", "replayed": "\(replayed)"])
            }
        case .stats(let recovered):
            if let recovered {
                events.record(.recovered, domain: spec.id, detail: "\(recovered) ms")
                logger.trace("recovered", metadata: ["domain.id": "\(spec.id)", "t.ms": "\(monotonicMilliseconds())",
                                                     "recovery.ms": "\(recovered)"])
            }
        case .faultReported(let report):
            logger.warning("domain reported a fault", metadata: ["domain.id": "\(spec.id)", "fault.kind": "\(report.kind)",
                                                                 "fault.detail": "\(report.detail)"])
        case .log(let log):
            logger.log(level: Logger.Level(log.level), "\(log.message)", metadata: ["domain.id": "\(spec.id)"])
        case .pong(let sequence, let roundTrip):
            lastPong.withLock { $0 = (sequence, roundTrip) }
        case .registerReply(let reply):
            registers.complete(reply)
        }
        return nil
    }

    private func attachIfReady() {
        let attach: ControlMessage? = state.withLock { s in
            guard let (generation, activation, freshRecovery) = s.takeAttach() else { return nil }
            if freshRecovery {
                for index in 0..<spec.queueCount { region.queueRecovery(index).initializeMemory(as: UInt8.self, repeating: 0) }
            }
            let queues = activation.queues.enumerated().map { index, queue in
                ControlMessage.QueueConfig(index: UInt32(index), size: UInt32(queue.size), descriptorAddress: queue.descriptorTable,
                                           availableAddress: queue.driverArea, usedAddress: queue.deviceArea, ready: queue.ready)
            }
            return .attach(.init(generation: generation, deviceFeatures: activation.driverFeatures, queues: queues,
                                 guestMemorySize: guestMemorySize, eventIndex: activation.driverFeatures & (1 << 29) != 0,
                                 readOnly: spec.readOnly, capacitySectors: spec.capacitySectors, config: spec.config))
        }
        if let attach {
            send(attach)
            resendPendingRegisterAccess()
        }
    }

    private func recordExit(_ reason: ExitReason) {
        logger.notice("domain ended; restarting", metadata: ["domain.id": "\(spec.id)", "reason": "\(reason)"])
        events.record(.exited, domain: spec.id, detail: reason.description)
        let (index, pid) = state.withLock { s in
            let pid = s.pid
            return (s.recordExit(reason), pid)
        }
        if case .terminated(let how) = reason, how.isSeccompViolation, let pid {
            // Which call broke the policy: from the kernel's audit record, off the restart path.
            _ = DedicatedThread.start(name: "seccomp-name") { [self] in
                guard let name = SeccompViolation.syscallName(pid: pid) else { return }
                let named = "\(reason.description): \(name)"
                state.withLock { s in
                    guard index < s.exitReasons.count else { return }
                    if s.lastExitReason == s.exitReasons[index] && s.exitReasons.count == index + 1 { s.lastExitReason = named }
                    s.exitReasons[index] = named
                }
                logger.notice("seccomp violation", metadata: ["domain.id": "\(spec.id)", "syscall": "\(name)"])
            }
        }
    }

    /// Applies the restart policy: waits the backoff and returns true to restart, or marks the
    /// device failed and returns false when the budget is spent.
    private func backOff() -> Bool {
        let now = monotonicMilliseconds()
        let delay = state.withLock { $0.restartDelay(now: now, policy: spec.policy) }
        guard let delay else {
            logger.error("domain exceeded its restart budget; the device has failed",
                         metadata: ["domain.id": "\(spec.id)", "budget": "\(spec.policy.budget)",
                                    "window.seconds": "\(spec.policy.windowSeconds)"])
            events.record(.failed, domain: spec.id, detail: "more than \(spec.policy.budget) restarts in \(spec.policy.windowSeconds) s")
            onFailure()
            return false
        }
        if delay > 0 { usleep(useconds_t(delay * 1000)) }
        events.record(.restarted, domain: spec.id, detail: delay > 0 ? "after \(delay) ms backoff" : "at once")
        return true
    }

    func send(_ message: ControlMessage) {
        sendLock.withLock { _ in
            do { try channel.send(message) } catch {
                logger.debug("cannot send to domain", metadata: ["domain.id": "\(spec.id)", "error": "\(error)"])
            }
        }
    }

    private func signal(_ fd: borrowing FileDescriptor) { signalEventfd(fd.rawValue) }

    private func drain(_ fd: borrowing FileDescriptor) { readEventfd(fd.rawValue) }
}

func monotonicMilliseconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) * 1000 + Double(now.tv_nsec) / 1_000_000
}

extension Logger.Level {
    init(_ level: ControlMessage.Log.Level) {
        switch level {
        case .trace: self = .trace
        case .debug: self = .debug
        case .info: self = .info
        case .notice: self = .notice
        case .warning: self = .warning
        case .error: self = .error
        case .critical: self = .critical
        }
    }
}

extension DomainSupervisor.Report {
    /// One line: `domain blk0 restarts=3 failed=no requests=1200 recovery_ms_median=1.20
    /// recovery_ms_p99=2.31 reasons="killed by SIGKILL" x3`.
    static func medianAndP99(_ values: [Double]) -> (Double, Double)? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)])
    }

    public var summary: String {
        var line = "domain \(id) restarts=\(restarts) failed=\(failed ? "yes" : "no") requests=\(requests)"
        if failed { line += " failed_requests=\(failedRequests)" }
        if let (median, p99) = Self.medianAndP99(recoveryMilliseconds) {
            line += " recoveries=\(recoveryMilliseconds.count) recovery_ms_median=\(format(median)) recovery_ms_p99=\(format(p99))"
        }
        if let (median, p99) = Self.medianAndP99(registerRoundTripMicroseconds) {
            line += " register_accesses=\(registerAccesses) register_rtt_us_median=\(format(median)) register_rtt_us_p99=\(format(p99))"
        }
        let counts = exitReasons.occurrenceCounts()
        if !counts.isEmpty {
            line += " reasons=" + counts.map { "\"\($0.0)\" x\($0.1)" }.joined(separator: ",")
        }
        return line
    }

    private func format(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

/// A domain process and, for a standby, the eventfd that activates it.
final class DomainHandle: @unchecked Sendable {
    let process: SpawnedDomain
    let activation: SharedFileDescriptor?
    var pid: Int32 { process.pid }

    init(process: consuming SpawnedDomain, activation: SharedFileDescriptor?) {
        self.process = process
        self.activation = activation
    }

    /// Lets a standby proceed (it waits on this eventfd before touching the control region).
    func activate() {
        guard let activation else { return }
        signalEventfd(activation.rawValue)
    }
}

extension DomainSupervisor {
    /// True when the guest has made requests the domain has not taken, or the domain holds
    /// requests it has not completed (read from guest memory and the recovery area).
    func workPending() -> Bool {
        if registers.hasPending { return true } // a vCPU waits on a register access
        guard let activation = state.withLock({ $0.activation }) else { return false }
        for (index, queue) in activation.queues.enumerated() where queue.ready && index < ControlRegionLayout.maxQueues {
            guard let block = region.queueRecovery(index).baseAddress else { continue }
            // SAFETY: the recovery block is 16 KiB, 8-byte aligned, the fields lie at its start.
            // The domain writes them meanwhile: one atomic load each (see CBulkheadLinux).
            let lastAvail = UInt16(truncatingIfNeeded: bh_atomic_load_relaxed_u64(block + QueueRecoveryLayout.popWordOffset))
            let used = bh_atomic_load_relaxed_u16(block + QueueRecoveryLayout.usedIndexOffset)
            if lastAvail != used { return true } // popped, not completed
            // A misaligned ring is refused by the domain; the guest's avail.idx, one atomic load.
            guard queue.driverArea % 2 == 0,
                  let avail = guestMemory.buffer(at: GuestAddress(queue.driverArea + 2), length: 2)?.baseAddress else { continue }
            if bh_atomic_load_relaxed_u16(avail) != lastAvail { return true } // made available, not taken
        }
        return false
    }

    /// What an operator sees of this domain.
    public struct Status: Sendable {
        public enum State: String, Sendable { case starting, running, restarting, failed, stopped }
        public var id: String
        public var kind: String
        public var state: State
        public var pid: Int32?
        public var restarts: Int
        public var lastExitReason: String?
        public var uptimeSeconds: Double?
        public var lastRecoveryMilliseconds: Double?
        public var requests: UInt64
        public var readBytes: UInt64
        public var writtenBytes: UInt64
        public var inFlight: UInt64
        public var errors: UInt64
        public var replayed: UInt64
        public var failedRequests: UInt64
        public var recoveryMilliseconds: [Double]
        public var exitReasons: [String]
        public var rssBytes: UInt64?
        public var cpuSeconds: Double?
        public var heartbeat: UInt64
    }

    public var status: Status {
        let now = monotonicMilliseconds()
        let heartbeat = region.heartbeat
        return state.withLock { s in
            let usage = s.pid.flatMap(ProcessUsage.init(pid:)).map { (rssBytes: $0.rssBytes, cpuSeconds: $0.cpuSeconds) }
            return s.status(id: spec.id, kind: spec.kind, now: now, heartbeat: heartbeat, usage: usage)
        }
    }
}

/// Resident memory and CPU time of a process, from /proc.
struct ProcessUsage {
    var rssBytes: UInt64
    var cpuSeconds: Double

    init?(pid: Int32) {
        guard let statm = readProcFile("/proc/\(pid)/statm"), let stat = readProcFile("/proc/\(pid)/stat") else { return nil }
        let pages = statm.split(separator: " ")
        guard pages.count > 1, let resident = UInt64(pages[1]) else { return nil }
        rssBytes = resident * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        cpuSeconds = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// A small /proc file, read whole; nil when it cannot be read.
func readProcFile(_ path: String) -> String? {
    (try? FileDescriptor.readContents(of: path, limit: 64 << 10)).map { String(decoding: $0, as: UTF8.self) }
}
