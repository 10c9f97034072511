import BulkheadChannel
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem
import BulkheadVirtio
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// The virtio-blk driver domain: serves one disk's request queue straight from guest memory.
///
/// Life of a domain process:
/// 1. Map the control region (fd 3) and guest memory (fd 4), then enter the sandbox (empty
///    root, new namespaces from the spawn, uid 65534, no capabilities, seccomp allowlist in
///    `SeccompPolicy+Block.swift`). Nothing from the guest is read before this.
/// 2. `Hello`, then wait for `Attach` (negotiated features and queue addresses, which the
///    core kept across restarts).
/// 3. Recover the queue from its recovery block: re-execute the requests a predecessor left in
///    flight (reads and writes at fixed offsets are idempotent), then resume at its
///    `lastAvailIndex`; a guest kick that arrived while no domain ran is still counted in the
///    ioeventfd.
/// 4. Serve: pop, execute with pread/pwrite, push used, interrupt the guest only when EVENT_IDX
///    says it wants one; when idle, poll briefly, then re-enable notifications and sleep on the
///    kick eventfd and the control doorbell.
enum BlockDomain {
    /// How long the domain polls an idle queue before it sleeps (guest kicks cost ~26 µs each
    /// on this PVM host, a wake-up ~50 µs).
    static let idleSpinNanoseconds: UInt64 = 50_000
    static let statsIntervalNanoseconds: UInt64 = 100_000_000
    static let batchLimit = 64

    static func main(id: String, arguments: [String]) -> Int32 {
        let region: ControlRegion
        let guestMapping: MemoryMapping
        let guestSize: Int
        do {
            region = try ControlRegion(mapping: FileDescriptor(owning: DomainFileDescriptors.controlRegion))
            let guestFile = FileDescriptor(owning: DomainFileDescriptors.guestMemory)
            guestSize = try guestFile.size()
            guestMapping = try MemoryMapping(sharing: guestFile, length: guestSize)
        } catch {
            return fatal("\(id): cannot map the control region or guest memory: \(error)")
        }
        let standby = arguments.contains("--standby")
        // The name `ps -o comm` and /proc/<pid>/comm show: which of a device's processes
        // serves it (`blk0`, set once sandboxed) and which waits (`blk0-standby`).
        _ = (standby ? "\(id)-standby" : "\(id)-starting").withCString { bh_set_thread_name($0) }
        do {
            try Sandbox.enter(SandboxConfiguration(hostname: id, seccomp: .block))
        } catch {
            return fatal("\(id): cannot enter the sandbox: \(error)")
        }
        if !standby { _ = id.withCString { bh_set_thread_name($0) } }
        if standby {
            // A warm standby: started and sandboxed ahead of need, it waits for the core to
            // activate it (fd 9) when the serving domain dies. It has not touched the control
            // region yet: the core resets the rings before activating it.
            var activation = pollfd(fd: DomainFileDescriptors.standbyActivation, events: Int16(POLLIN), revents: 0)
            while poll(&activation, 1, -1) < 0 && errno == EINTR {}
            _ = id.withCString { bh_set_thread_name($0) }
        }
        let channel = ControlChannel.domain(region: region)
        let server = BlockServer(id: id, region: region, channel: channel, guestBase: guestMapping.base, guestSize: UInt64(guestSize))
        let status = server.run()
        _ = consume guestMapping
        return status
    }

    static func fatal(_ message: String) -> Int32 {
        let line = "bulkhead-domain: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        return 70
    }
}

/// The serving state of one blk domain process.
final class BlockServer {
    let id: String
    let region: ControlRegion
    let channel: ControlChannel
    let guestBase: UnsafeMutableRawPointer
    let guestSize: UInt64
    let kick = DomainFileDescriptors.queueNotify(0)
    let irqfd = DomainFileDescriptors.irqfd

    var engine: BlockRequestEngine<FileBlockStorage>?
    var queue: SplitVirtqueue?
    var requests: UInt64 = 0
    var readBytes: UInt64 = 0
    var writtenBytes: UInt64 = 0
    var errors: UInt64 = 0
    var replayed: UInt64 = 0
    var reportedFirstCompletion = false
    var lastStats: UInt64 = 0
    var slowMicroseconds: UInt32 = 0
    /// Set when the queue cannot be served (a broken ring, a failed recovery): the domain
    /// reports the fault and exits, so that the supervisor restarts it (and, past the restart
    /// budget, fails the device visibly) rather than the guest waiting on a silent device.
    var brokenQueueStatus: Int32?
    static let brokenQueueExitStatus: Int32 = 75

    init(id: String, region: ControlRegion, channel: ControlChannel, guestBase: UnsafeMutableRawPointer, guestSize: UInt64) {
        self.id = id
        self.region = region
        self.channel = channel
        self.guestBase = guestBase
        self.guestSize = guestSize
    }

    func run() -> Int32 {
        region.publish(.starting)
        send(.hello(.init(kind: "blk", id: id, pid: getpid())))
        while true {
            if let status = brokenQueueStatus { return status }
            region.beat()
            if queue != nil {
                let worked = serveBatch()
                if worked { continue }
                if spinForWork() { continue }
                if queue?.enableNotifications() == true { continue } // work arrived meanwhile
            }
            wait(milliseconds: 100)
            drainKick()
            queue?.disableNotifications()
            do {
                while let message = try channel.tryReceive() {
                    if let status = handle(message) { return status }
                }
            } catch {
                return BlockDomain.fatal("\(id): control channel: \(error)")
            }
        }
    }

    /// Handles a control message; returns an exit status when the domain should end.
    func handle(_ message: ControlMessage) -> Int32? {
        switch message {
        case .attach(let attach):
            do { try attachQueue(attach) } catch {
                send(.faultReport(.init(kind: "attach", detail: "\(error)")))
                queue = nil
                brokenQueueStatus = Self.brokenQueueExitStatus
            }
        case .reset:
            queue = nil
            region.publish(.starting)
            send(.resetDone)
        case .shutdown:
            region.publish(.stopping)
            sendStats()
            return 0
        case .ping(let ping):
            send(.pong(.init(sequence: ping.sequence, sentNanoseconds: ping.sentNanoseconds)))
        case .injectFault(let fault):
            return inject(fault)
        default:
            send(.faultReport(.init(kind: "protocol", detail: "unexpected message from the core")))
        }
        return nil
    }

    func attachQueue(_ attach: ControlMessage.Attach) throws(VirtioError) {
        guard attach.protocolVersion == ControlProtocol.version else {
            throw VirtioError(.invalidConfiguration, "Attach speaks protocol \(attach.protocolVersion), this domain \(ControlProtocol.version)")
        }
        guard let config = attach.queues.first, config.ready, config.size <= UInt32(UInt16.max) else {
            throw VirtioError(.invalidConfiguration, "Attach carries no ready request queue")
        }
        if engine == nil {
            let storage = try FileBlockStorage(file: FileDescriptor(owning: DomainFileDescriptors.backend), readOnly: attach.readOnly)
            engine = BlockRequestEngine(storage: storage, id: "bulkhead-\(id)")
        }
        let memory = try GuestRAM(base: guestBase, memorySize: guestSize)
        let configuration = QueueConfiguration(
            size: UInt16(config.size), descriptorTable: config.descriptorAddress, availableRing: config.availableAddress,
            usedRing: config.usedAddress, features: attach.deviceFeatures)
        let queue = try SplitVirtqueue(memory: memory, configuration: configuration, recoveryBlock: region.queueRecovery(0))
        let heads = try queue.recover()
        self.queue = queue
        for head in heads {
            do {
                complete(head: head, chain: try queue.chain(head: head))
            } catch {
                completeMalformed(error)
            }
        }
        replayed += UInt64(heads.count)
        queue.disableNotifications()
        reportedFirstCompletion = false
        region.publish(.running)
        send(.attached(.init(replayed: UInt32(heads.count))))
        // Always interrupt once: a predecessor may have published used entries and died before
        // raising the irqfd (recover() then adopts them and replays nothing).
        region.raiseInterrupt(1)
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(irqfd, $0.baseAddress, 8) }
    }

    /// Pops and executes up to a batch of requests; true if any was done.
    func serveBatch() -> Bool {
        guard let queue else { return false }
        var done = 0
        while done < BlockDomain.batchLimit {
            let chain: DescriptorChain?
            do { chain = try queue.popAvailable() } catch {
                if error.head != nil { completeMalformed(error); done += 1; continue }
                switch error.code {
                case .headOutOfRange, .headInFlight:
                    errors += 1
                    continue
                default:
                    send(.faultReport(.init(kind: "queue", detail: "\(error)")))
                    self.queue = nil
                    brokenQueueStatus = Self.brokenQueueExitStatus
                    return done > 0
                }
            }
            guard let chain else { break }
            complete(head: chain.head, chain: chain)
            done += 1
        }
        if done > 0 {
            notifyGuest()
            maybeSendStats()
        }
        return done > 0
    }

    func complete(head: UInt16, chain: DescriptorChain) {
        guard let engine, let queue else { return }
        if slowMicroseconds > 0 { usleep(slowMicroseconds) }
        let completion = engine.execute(chain)
        requests += 1
        if completion.status != .ok { errors += 1 }
        readBytes += UInt64(completion.usedLength)
        writtenBytes += chain.readableLength > 16 ? chain.readableLength - 16 : 0
        do { try queue.pushUsed(head: head, length: completion.usedLength) } catch {
            send(.faultReport(.init(kind: "queue", detail: "\(error)")))
            brokenQueueStatus = Self.brokenQueueExitStatus
        }
    }

    func completeMalformed(_ error: VirtioError) {
        errors += 1
        guard let head = error.head, let queue else { return }
        try? queue.pushUsed(head: head, length: 0)
    }

    func notifyGuest() {
        guard let queue, queue.needsNotification() else { return }
        region.raiseInterrupt(1) // VIRTIO_MMIO_INT_VRING
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(irqfd, $0.baseAddress, 8) }
    }

    /// Polls the available ring for a short while; true when work arrived.
    func spinForWork() -> Bool {
        guard let queue else { return false }
        let deadline = ControlChannel.monotonicNanoseconds() + BlockDomain.idleSpinNanoseconds
        while ControlChannel.monotonicNanoseconds() < deadline {
            if queue.hasAvailable { return true }
        }
        return false
    }

    func wait(milliseconds: Int32) {
        guard channel.prepareToSleep() else { return } // a control message is waiting
        var fds = [
            pollfd(fd: kick, events: Int16(POLLIN), revents: 0),
            pollfd(fd: channel.incomingDoorbell.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        _ = poll(&fds, nfds_t(fds.count), milliseconds)
        channel.finishSleeping()
    }

    func drainKick() {
        var value: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &value) { read(kick, $0.baseAddress, 8) }
    }

    func maybeSendStats() {
        let now = ControlChannel.monotonicNanoseconds()
        if !reportedFirstCompletion || now - lastStats >= BlockDomain.statsIntervalNanoseconds {
            reportedFirstCompletion = true
            lastStats = now
            sendStats()
        }
    }

    func sendStats() {
        send(.stats(.init(requests: requests, readBytes: readBytes, writtenBytes: writtenBytes, errors: errors,
                          inFlight: UInt64(queue?.inFlightCount ?? 0), replayed: replayed)))
    }

    func send(_ message: ControlMessage) {
        // A full ring means the core is not reading; dropping a stats or log message is fine.
        try? channel.send(message)
    }

    /// Test hooks, reached only through the core (InjectFault).
    func inject(_ fault: ControlMessage.InjectFault) -> Int32? {
        switch fault.kind {
        case .crash, .segv:
            // A wild write: the kernel delivers SIGSEGV (kill(2) is not in the allowlist).
            let wild = UnsafeMutablePointer<UInt64>(bitPattern: 0x8)
            wild?.pointee = 0xdead
            return 139
        case .hang:
            while true { pause() }
        case .slow:
            slowMicroseconds = UInt32(truncatingIfNeeded: min(fault.argument, 1_000_000))
            return nil
        case .corruptMessage:
            // A frame that is no protobuf message: the core must treat it as this domain's
            // protocol fault (kill and restart it), never crash.
            let garbage: [UInt8] = [0xff, 0xff, 0xff, 0x7f, 0x0a, 0xff, 0x01, 0x02]
            garbage.withUnsafeBytes { try? channel.send(frame: $0) }
            return nil
        case .seccomp:
            // Not in the allowlist: seccomp kills the process with SIGSYS.
            _ = open("/etc/passwd", O_RDONLY)
            return 71
        case .exit:
            return 3
        }
    }
}
