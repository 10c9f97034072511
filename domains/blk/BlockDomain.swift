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
///    says it wants one; answer the control ring between batches; when idle, poll for an
///    adaptive window (`AdaptivePoll`), then re-enable notifications and sleep on the kick
///    eventfd and the control doorbell.
enum BlockDomain {
    static let batchLimit = 64

    static func main(id: String, arguments: [String]) -> Int32 {
        // RLIMIT_FSIZE at the disk's size: a compromised domain cannot grow the image and fill
        // the host's filesystem (a write past it is SIGXFSZ, and the domain is restarted).
        var disk = stat()
        let size: UInt64? = fstat(DomainFileDescriptors.backend, &disk) == 0 && disk.st_size > 0 ? UInt64(disk.st_size) : nil
        // O_DIRECT (`cache=none`) and its alignment are found now: `fcntl` is not in the allowlist.
        let directAlignment = FileBlockStorage.probeDirectAlignment(fd: DomainFileDescriptors.backend)
        // Its AIO context too: io_setup is not in the allowlist either.
        let aio = directAlignment.flatMap { alignment in
            size.flatMap { BlockAIO(fd: DomainFileDescriptors.backend, alignment: alignment, capacityBytes: $0) }
        }
        return VirtioDomain.run(id: id, arguments: arguments, seccomp: .block, maxFileSize: size) {
            BlockServer(context: $0, directAlignment: directAlignment, aio: aio).run()
        }
    }
}

/// The serving state of one blk domain process.
final class BlockServer: VirtioDomainServer {
    let context: DomainContext
    let kick = DomainFileDescriptors.queueNotify(0)

    var engine: BlockRequestEngine<FileBlockStorage>?
    var queue: SplitVirtqueue?
    var requests: UInt64 = 0
    var readBytes: UInt64 = 0
    var writtenBytes: UInt64 = 0
    var errors: UInt64 = 0
    var replayed: UInt64 = 0
    var statsCadence = StatsCadence()
    var idlePoll = AdaptivePoll()
    var slowMicroseconds: UInt32 = 0
    var brokenQueueStatus: Int32?

    /// nil: buffered I/O; otherwise the disk fd is O_DIRECT with this alignment.
    let directAlignment: Int?
    /// O_DIRECT disks: aligned reads and writes in flight together (`BlockAIO.swift`).
    let aio: BlockAIO?

    init(context: DomainContext, directAlignment: Int?, aio: BlockAIO?) {
        self.context = context
        self.directAlignment = directAlignment
        self.aio = aio
    }

    func run() -> Int32 {
        region.publish(.starting)
        send(.hello(.init(kind: "blk", id: id, pid: getpid())))
        while true {
            if let status = brokenQueueStatus { return status }
            region.beat()
            if queue != nil {
                if serveBatch() {
                    // A busy queue must not starve the control ring (Ping, InjectFault, Reset):
                    // one look per batch, a load of the ring's index when nothing waits.
                    if let status = handleControlMessages() { return status }
                    continue
                }
                if let aio, aio.inFlight > 0 {
                    // Requests in the device: wait for one to finish (new ones are taken on the
                    // next turn), and keep answering the control ring meanwhile. No polling
                    // here: measured, it gained nothing and took the CPU from the guest.
                    if reapCompletions(waitingNanoseconds: 100_000) > 0 { notifyGuest() }
                    if let status = handleControlMessages() { return status }
                    continue
                }
                if spinForWork() { continue }
                if queue?.enableNotifications() == true { continue } // work arrived meanwhile
            }
            sleep(on: [pollfd(fd: kick, events: Int16(POLLIN), revents: 0)], milliseconds: 100)
            VirtioDomain.drain(kick)
            queue?.disableNotifications()
            if let status = handleControlMessages() { return status }
        }
    }

    func detachQueues() {
        // A reset guest must see no more DMA: let the reads and writes in the device finish
        // and drop their completions (the queue they belonged to is gone).
        aio?.drain()
        queue = nil
    }

    func attachQueues(_ attach: ControlMessage.Attach) throws(VirtioError) {
        guard let config = attach.queues.first, config.ready, config.size <= UInt32(UInt16.max) else {
            throw VirtioError(.invalidConfiguration, "Attach carries no ready request queue")
        }
        if engine == nil {
            let storage = try FileBlockStorage(
                file: FileDescriptor(owning: DomainFileDescriptors.backend), readOnly: attach.readOnly, directAlignment: directAlignment)
            engine = BlockRequestEngine(storage: storage, id: "bulkhead-\(id)")
        }
        // Un-negotiated DISCARD / WRITE_ZEROES are answered UNSUPP, not executed.
        engine?.driverFeatures = attach.deviceFeatures
        aio?.readOnly = attach.readOnly
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
        statsCadence.restart()
        region.publish(.running)
        send(.attached(.init(replayed: UInt32(heads.count))))
        // Always interrupt once: a predecessor may have published used entries and died before
        // raising the irqfd (recover() then adopts them and replays nothing).
        interruptGuest()
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
                    self.queue = nil
                    breakQueues(kind: "queue", "\(error)")
                    return done > 0
                }
            }
            guard let chain else { break }
            if let aio, aio.prepare(chain) {
                done += 1
                continue
            }
            complete(head: chain.head, chain: chain)
            done += 1
        }
        aio?.submit { head, status in
            status?.storeBytes(of: VirtioBlockRequest.Status.ioError.rawValue, as: UInt8.self)
            finishAsync(head: head, usedLength: status == nil ? 0 : 1, ok: false, read: 0, written: 0)
        }
        let reaped = reapCompletions(waitingNanoseconds: 0)
        if done > 0 || reaped > 0 {
            notifyGuest()
            maybeSendStats()
        }
        return done > 0 || reaped > 0
    }

    /// Completes the AIO requests that finished (waiting up to `waitingNanoseconds` for one).
    func reapCompletions(waitingNanoseconds: Int) -> Int {
        guard let aio else { return 0 }
        return aio.reap(timeoutNanoseconds: waitingNanoseconds) { slot, ok in
            // SAFETY: the status byte lies in a device-writable buffer inside guest RAM.
            slot.status?.storeBytes(of: (ok ? VirtioBlockRequest.Status.ok : .ioError).rawValue, as: UInt8.self)
            let isRead = slot.usedLength > 1
            finishAsync(head: slot.head, usedLength: ok ? slot.usedLength : 1, ok: ok,
                        read: ok && isRead ? UInt64(slot.expected) : 0, written: ok && !isRead ? UInt64(slot.expected) : 0)
        }
    }

    private func finishAsync(head: UInt16, usedLength: UInt32, ok: Bool, read: UInt64, written: UInt64) {
        requests += 1
        if !ok { errors += 1 }
        readBytes += read
        writtenBytes += written
        do { try queue?.pushUsed(head: head, length: usedLength) } catch {
            breakQueues(kind: "queue", "\(error)")
        }
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
            breakQueues(kind: "queue", "\(error)")
        }
    }

    func completeMalformed(_ error: VirtioError) {
        errors += 1
        guard let head = error.head, let queue else { return }
        try? queue.pushUsed(head: head, length: 0)
    }

    func notifyGuest() {
        guard let queue, queue.needsNotification() else { return }
        interruptGuest()
    }

    /// Polls the available ring for the adaptive window (`AdaptivePoll`); true when work
    /// arrived.
    func spinForWork() -> Bool {
        guard let queue else { return false }
        let window = idlePoll.window()
        guard window > 0 else { return false }
        let deadline = ControlChannel.monotonicNanoseconds() + window
        while ControlChannel.monotonicNanoseconds() < deadline {
            if queue.hasAvailable {
                idlePoll.record(foundWork: true)
                return true
            }
        }
        idlePoll.record(foundWork: false)
        return false
    }

    func maybeSendStats() {
        if statsCadence.due() { sendStats() }
    }

    func sendStats() {
        send(.stats(.init(requests: requests, readBytes: readBytes, writtenBytes: writtenBytes, errors: errors,
                          inFlight: UInt64(queue?.inFlightCount ?? 0), replayed: replayed)))
    }
}
