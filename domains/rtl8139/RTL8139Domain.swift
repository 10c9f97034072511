import BulkheadChannel
import BulkheadEmulated
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem
import BulkheadVirtio
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// The RTL8139 driver domain: an emulated Realtek RTL8139C NIC that a stock guest drives with
/// its in-tree driver. The core owns PCI configuration space and forwards every access to the
/// NIC's registers (BAR 0) as a `RegisterRead`/`RegisterWrite`, waiting for the reply; this
/// process answers them with the register model (`BulkheadEmulated.RTL8139`), moves frames
/// between guest memory and the tap, and raises the guest's interrupt through a KVM irqfd.
///
/// Life of a domain process (the shared part is `VirtioDomain.run` and `VirtioDomainServer`):
/// 1. Map, enter the sandbox (seccomp allowlist in `SeccompPolicy+RTL8139.swift`), `Hello`,
///    wait for `Attach` (its `config` is the MAC, 6 bytes).
/// 2. Build the device over the control region's device-state area: a fresh area is a NIC at
///    power-on; an area a predecessor left is continued exactly (registers, ring position, the
///    last access applied and its reply), then the interrupt is raised once if pending.
/// 3. Serve: answer register accesses (an access already applied — re-sent by the core after a
///    restart — is answered with its recorded reply); move frames from the tap into the ring
///    while the receiver is on and the ring has room; spin on the control ring for a while
///    after the last piece of work (a vCPU waits on every access), then sleep on the control
///    doorbell and, only while the ring has room, the tap.
enum RTL8139Domain {
    /// How long the domain keeps polling after a register access before it sleeps. A driver's
    /// accesses come in bursts, one every ~75 µs from a ring-3 guest on this PVM host (a PIO
    /// exit), and the vCPU waits on each; a wake-up from sleep costs 50–250 µs more.
    static let accessSpinNanoseconds: UInt64 = 200_000
    /// After a received frame (no vCPU waits on it): as the net domain.
    static let frameSpinNanoseconds: UInt64 = 50_000
    static let batchLimit = 64

    static func main(id: String, arguments: [String]) -> Int32 {
        VirtioDomain.run(id: id, arguments: arguments, seccomp: .rtl8139) { RTL8139Server(context: $0).run() }
    }
}

/// The serving state of one rtl8139 domain process.
final class RTL8139Server: VirtioDomainServer {
    let context: DomainContext
    let tap = DomainFileDescriptors.backend

    var device: RTL8139?
    var brokenQueueStatus: Int32?
    var slowMicroseconds: UInt32 = 0
    var statsCadence = StatsCadence()
    /// Register accesses this process answered (applied or replayed).
    var accesses: UInt64 = 0
    /// Counters of devices this process served before its current one (a `Reset`).
    var earlier = RTL8139Counters()
    /// What the drops were when last logged, and when (at most one log line a second).
    var loggedDrops = RTL8139Drops()
    var dropsLoggedAt: UInt64 = 0

    init(context: DomainContext) {
        self.context = context
    }

    func run() -> Int32 {
        region.publish(.starting)
        send(.hello(.init(kind: "rtl8139", id: id, pid: getpid())))
        var spinUntil = ControlChannel.monotonicNanoseconds() + RTL8139Domain.accessSpinNanoseconds
        while true {
            if let status = brokenQueueStatus { return status }
            region.beat()
            let answered = accesses
            if let status = handleControlMessages() { return status }
            let accessed = accesses != answered
            var received = false
            if let device, device.receiverReady, device.receiveFromWire(limit: RTL8139Domain.batchLimit) > 0 {
                received = true
            }
            let now = ControlChannel.monotonicNanoseconds()
            if accessed || received {
                let spin = accessed ? RTL8139Domain.accessSpinNanoseconds : RTL8139Domain.frameSpinNanoseconds
                spinUntil = max(spinUntil, now + spin)
                reportProgress()
                continue
            }
            if now < spinUntil {
                bh_atomic_cpu_relax()
                continue
            }
            // Frames waiting in the tap wake us only when the ring has room for them.
            var fds: [pollfd] = []
            if device?.receiverReady == true { fds.append(pollfd(fd: tap, events: Int16(POLLIN), revents: 0)) }
            sleep(on: fds, milliseconds: 100)
        }
    }

    // MARK: VirtioDomainServer

    func attachQueues(_ attach: ControlMessage.Attach) throws(VirtioError) {
        detachQueues()
        guard attach.config.count >= 6 else {
            throw VirtioError(.invalidConfiguration, "Attach carries \(attach.config.count) config bytes; the rtl8139 needs its MAC (6)")
        }
        let memory = try GuestRAM(base: guestBase, memorySize: guestSize)
        let device: RTL8139
        do {
            device = try RTL8139(
                stateArea: region.deviceState, memory: memory, stationAddress: Array(attach.config.prefix(6)),
                wire: FileDescriptorWire(fd: tap), interrupt: EventfdInterruptLine(fd: DomainFileDescriptors.irqfd))
        } catch {
            throw VirtioError(.invalidConfiguration, "\(error)")
        }
        self.device = device
        statsCadence.restart()
        region.publish(.running)
        send(.attached(.init(replayed: UInt32(truncatingIfNeeded: device.counters.republishedHeaders))))
        let mac = attach.config.prefix(6).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
        send(.log(.init(level: .debug, message: device.resumed
            ? "\(id): continuing the RTL8139 a predecessor left (CBR \(device.peek(offset: 0x3A, size: 2)), ISR 0x\(String(device.peek(offset: 0x3E, size: 2), radix: 16)))"
            : "\(id): RTL8139 at power-on, station address \(mac)")))
    }

    func detachQueues() {
        if let device { earlier.add(device.counters) }
        device = nil
    }

    /// `Reset`: the next `Attach` finds a NIC at power-on.
    func resetDevice() {
        detachQueues()
        RTL8139StateLayout.clear(region.deviceState)
    }

    func registerAccess(bar: UInt32, offset: UInt64, size: UInt32, write value: UInt64?, sequence: UInt64) -> UInt64 {
        guard let device else {
            send(.faultReport(.init(kind: "protocol", detail: "register access (seq \(sequence)) before Attach")))
            return .max
        }
        if slowMicroseconds > 0 { usleep(slowMicroseconds) }
        accesses += 1
        let stale = device.counters.staleAccesses
        let reply = device.registerAccess(bar: bar, offset: offset, size: size, write: value, sequence: sequence)
        if device.counters.staleAccesses != stale {
            send(.faultReport(.init(kind: "protocol", detail: "register access seq \(sequence) is older than the last one applied: answered with the last reply")))
        }
        return reply
    }

    var counters: RTL8139Counters {
        var total = earlier
        if let device { total.add(device.counters) }
        return total
    }

    func sendStats() {
        let counters = self.counters
        send(.stats(.init(
            requests: counters.transmittedFrames + counters.receivedFrames, readBytes: counters.receivedBytes,
            writtenBytes: counters.transmittedBytes, errors: counters.drops.total, inFlight: 0,
            replayed: counters.replayedAccesses + counters.republishedHeaders)))
    }

    /// Stats after the first frame of a generation and every 100 ms while frames move; drops
    /// logged at most once a second.
    func reportProgress() {
        let counters = self.counters
        if counters.transmittedFrames + counters.receivedFrames > 0, statsCadence.due() { sendStats() }
        guard counters.drops != loggedDrops else { return }
        let now = ControlChannel.monotonicNanoseconds()
        guard now &- dropsLoggedAt >= 1_000_000_000 else { return }
        dropsLoggedAt = now
        loggedDrops = counters.drops
        send(.log(.init(level: .warning, message: "\(id): frames dropped: \(counters.drops)")))
    }
}
