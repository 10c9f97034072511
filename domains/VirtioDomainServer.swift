import BulkheadChannel
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem
import BulkheadVirtio
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// What every virtio driver domain does around its data path: start (map, sandbox, standby),
/// speak the control protocol (`Hello`, `Attach`, `Reset`, `Shutdown`, `Ping`, the test hooks),
/// interrupt the guest, sleep on its eventfds. A kind (`BlockServer`, `NetServer`) adds its
/// queues: what `Attach` and `Reset` do to them, and its `Stats`.
protocol VirtioDomainServer: AnyObject {
    var context: DomainContext { get }
    /// Set when the queues cannot be served (a broken ring, a failed recovery): the domain
    /// reports the fault and exits with it, so that the supervisor restarts it (and, past the
    /// restart budget, fails the device visibly) rather than the guest waiting on a silent
    /// device.
    var brokenQueueStatus: Int32? { get set }
    /// Test hook `slow`: added to each request.
    var slowMicroseconds: UInt32 { get set }
    /// `Attach`: set up and recover the queues (the protocol version is already checked).
    func attachQueues(_ attach: ControlMessage.Attach) throws(VirtioError)
    /// `Reset`, or a failed `Attach`: forget the queues.
    func detachQueues()
    /// `Reset`: the device goes back to its power-on state. Default: `detachQueues()` (a virtio
    /// device's state is the transport's, which the core resets); an emulated device also
    /// forgets the state it keeps in the control region.
    func resetDevice()
    func sendStats()
    /// An emulated device's register access (`RegisterRead`/`RegisterWrite`, `value` nil for a
    /// read); returns what the `RegisterReadReply` carries (0 for a write). Virtio kinds have
    /// no forwarded registers: the default reports a protocol fault and answers all ones.
    func registerAccess(bar: UInt32, offset: UInt64, size: UInt32, write value: UInt64?, sequence: UInt64) -> UInt64
}

extension VirtioDomainServer {
    func resetDevice() { detachQueues() }

    func registerAccess(bar: UInt32, offset: UInt64, size: UInt32, write value: UInt64?, sequence: UInt64) -> UInt64 {
        send(.faultReport(.init(kind: "protocol", detail: "a \(value == nil ? "read" : "write") of register \(offset) of a device without registers")))
        return .max
    }
}

/// The exit status of a domain whose queue is broken (EX_TEMPFAIL).
let brokenQueueExitStatus: Int32 = 75

extension VirtioDomainServer {
    /// The queues cannot be served: reports why to the core (`FaultReport`) and on stderr (the
    /// domain exits before the core may read the report), and ends the domain with status 75.
    func breakQueues(kind: String, _ detail: String) {
        send(.faultReport(.init(kind: kind, detail: detail)))
        let line = "bulkhead-domain: \(id): \(kind): \(detail); exiting with status \(brokenQueueExitStatus)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        brokenQueueStatus = brokenQueueExitStatus
    }
}

enum VirtioDomain {
    /// Maps the control region (fd 3) and guest memory (fd 4), enters the sandbox with
    /// `seccomp`, waits for activation when started as a warm standby (`--standby`), then
    /// hands the context (channel, guest memory) to `serve`, whose status it returns.
    ///
    /// The name `ps -o comm` and /proc/<pid>/comm show: which of a device's processes serves
    /// it (`blk0`, set once sandboxed) and which waits (`blk0-standby`).
    static func run(
        id: String, arguments: [String], seccomp: SeccompPolicy, maxFileSize: UInt64? = nil,
        serve: (DomainContext) -> Int32
    ) -> Int32 {
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
        _ = (standby ? "\(id)-standby" : "\(id)-starting").withCString { bh_set_thread_name($0) }
        do {
            try Sandbox.enter(SandboxConfiguration(hostname: id, maxFileSize: maxFileSize, seccomp: seccomp))
        } catch {
            return fatal("\(id): cannot enter the sandbox: \(error)")
        }
        if !standby { _ = id.withCString { bh_set_thread_name($0) } }
        if standby {
            // A warm standby: started and sandboxed ahead of need, it waits for the core to
            // activate it (fd 9) when the serving domain dies. It has not touched the control
            // region yet: the core resets the rings before activating it.
            // Proceed only on a real activation (the eventfd counted a write): a wake-up for any
            // other reason keeps waiting, a broken fd ends this standby.
            while true {
                var activation = pollfd(fd: DomainFileDescriptors.standbyActivation, events: Int16(POLLIN), revents: 0)
                let ready = poll(&activation, 1, -1)
                if ready < 0 && errno == EINTR { continue }
                guard ready > 0, activation.revents & Int16(POLLNVAL | POLLERR | POLLHUP) == 0 else {
                    let line = "bulkhead-domain: \(id): standby activation fd failed (poll \(ready), revents \(activation.revents))\n"
                    _ = line.withCString { write(2, $0, strlen($0)) }
                    exit(70)
                }
                if let count = readEventfd(DomainFileDescriptors.standbyActivation), count > 0 { break }
                let line = "bulkhead-domain: \(id): standby woke without activation\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
            }
            _ = id.withCString { bh_set_thread_name($0) }
        }
        let channel = ControlChannel.domain(region: region)
        let status = serve(DomainContext(id: id, region: region, channel: channel, guestBase: guestMapping.base,
                                         guestSize: UInt64(guestSize)))
        _ = consume guestMapping
        return status
    }

    static func fatal(_ message: String) -> Int32 {
        let line = "bulkhead-domain: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        return 70
    }

    /// Empties an eventfd (a kick counter, a doorbell); non-blocking fds only.
    static func drain(_ fd: Int32) { readEventfd(fd) }
}

/// What a serving domain works with: its device id, the control region and channel, and its
/// mapping of guest memory (valid while `VirtioDomain.run` runs).
struct DomainContext {
    let id: String
    let region: ControlRegion
    let channel: ControlChannel
    let guestBase: UnsafeMutableRawPointer
    let guestSize: UInt64
}

extension VirtioDomainServer {
    var id: String { context.id }
    var region: ControlRegion { context.region }
    var channel: ControlChannel { context.channel }
    var guestBase: UnsafeMutableRawPointer { context.guestBase }
    var guestSize: UInt64 { context.guestSize }

    func send(_ message: ControlMessage) {
        // A full ring means the core is not reading; dropping a stats or log message is fine.
        try? channel.send(message)
    }

    /// Raises the device's interrupt: VIRTIO_MMIO_INT_VRING in InterruptStatus, then the irqfd.
    func interruptGuest() {
        region.raiseInterrupt(1)
        signalEventfd(DomainFileDescriptors.irqfd)
    }

    /// Sleeps until one of `fds` or the control doorbell is ready, or `milliseconds` pass; not
    /// at all when a control message is already waiting.
    func sleep(on fds: [pollfd], milliseconds: Int32) {
        guard channel.prepareToSleep() else { return }
        var all = fds
        all.append(pollfd(fd: channel.incomingDoorbell.rawValue, events: Int16(POLLIN), revents: 0))
        _ = poll(&all, nfds_t(all.count), milliseconds)
        channel.finishSleeping()
    }

    /// Handles every waiting control message; returns an exit status when the domain should end.
    func handleControlMessages() -> Int32? {
        do {
            while let message = try channel.tryReceive() {
                if let status = handle(message) { return status }
            }
        } catch {
            return VirtioDomain.fatal("\(id): control channel: \(error)")
        }
        return nil
    }

    /// Handles a control message; returns an exit status when the domain should end.
    func handle(_ message: ControlMessage) -> Int32? {
        switch message {
        case .attach(let attach):
            do {
                guard attach.protocolVersion == ControlProtocol.version else {
                    throw VirtioError(.invalidConfiguration, "Attach speaks protocol \(attach.protocolVersion), this domain \(ControlProtocol.version)")
                }
                try attachQueues(attach)
            } catch {
                detachQueues()
                breakQueues(kind: "attach", "\(error)")
            }
        case .reset:
            resetDevice()
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
        case .registerRead(let read):
            let value = registerAccess(bar: read.bar, offset: read.offset, size: read.size, write: nil, sequence: read.sequence)
            send(.registerReadReply(.init(sequence: read.sequence, value: value)))
        case .registerWrite(let write):
            let value = registerAccess(bar: write.bar, offset: write.offset, size: write.size, write: write.value, sequence: write.sequence)
            send(.registerReadReply(.init(sequence: write.sequence, value: value)))
        default:
            send(.faultReport(.init(kind: "protocol", detail: "unexpected message from the core")))
        }
        return nil
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
            // protocol fault (kill and restart it), never crash. A valid message follows it
            // at once, as a domain that keeps running would send: the core must not read past
            // the bad frame, nor wait for the ring to empty before it sees the domain die.
            let garbage: [UInt8] = [0xff, 0xff, 0xff, 0x7f, 0x0a, 0xff, 0x01, 0x02]
            garbage.withUnsafeBytes { try? channel.send(frame: $0) }
            send(.log(.init(level: .warning, message: "sent a corrupt frame (test hook)")))
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

/// When a domain reports `Stats`: after the first completion of a generation (the core
/// measures recovery time with it), then every 100 ms while it works.
struct StatsCadence {
    static let intervalNanoseconds: UInt64 = 100_000_000
    private var reportedFirstCompletion = false
    private var last: UInt64 = 0

    /// A new generation (Attach): the next completion reports at once.
    mutating func restart() { reportedFirstCompletion = false }

    /// Whether to report now, after a completion.
    mutating func due() -> Bool {
        let now = ControlChannel.monotonicNanoseconds()
        guard !reportedFirstCompletion || now - last >= Self.intervalNanoseconds else { return false }
        reportedFirstCompletion = true
        last = now
        return true
    }
}
