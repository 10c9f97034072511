import BulkheadChannel
import BulkheadProtocol
import BulkheadSystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The register accesses of an emulated device in flight to its domain: at most one per
/// device (the vCPU that made it waits for the answer), kept until answered so that a
/// restarted domain gets it again (`DomainSupervisor.attachIfReady`).
final class RegisterForwarding: @unchecked Sendable {
    struct Pending {
        var message: ControlMessage
        var sequence: UInt64
        var reply: UInt64?
    }

    /// Held by the vCPU thread for the whole access: one access at a time per device.
    let accessLock = Mutex(())
    private let pending = Mutex<Pending?>(nil)
    private var sequence: UInt64 = 0  // under accessLock
    /// Written by the supervisor thread when the answer arrives; the waiting vCPU sleeps on it
    /// after a short spin.
    /// (-1 if it could not be created: then the vCPU only spins.)
    let answered: Int32 = (try? FileDescriptor.eventfd(nonBlocking: true))?.release() ?? -1
    /// Round trips in ns (send to answer seen by the vCPU), the last `historyLimit`.
    private let history = Mutex<(samples: [UInt64], next: Int, count: UInt64)>(([], 0, 0))
    static let historyLimit = 4096

    deinit { if answered >= 0 { close(answered) } }

    var hasPending: Bool { pending.withLock { $0 != nil && $0?.reply == nil } }

    /// The access to send, after `begin`; nil when none waits.
    var message: ControlMessage? { pending.withLock { $0?.reply == nil ? $0?.message : nil } }

    /// Starts an access (caller holds `accessLock`): returns the message to send.
    func begin(bar: UInt32, offset: UInt64, size: UInt32, write value: UInt64?) -> ControlMessage {
        sequence &+= 1
        let message: ControlMessage = if let value {
            .registerWrite(.init(bar: bar, offset: offset, size: size, value: value, sequence: sequence))
        } else {
            .registerRead(.init(bar: bar, offset: offset, size: size, sequence: sequence))
        }
        _ = readEventfd(answered)
        pending.withLock { $0 = Pending(message: message, sequence: sequence) }
        return message
    }

    /// The supervisor thread saw a `RegisterReadReply`; one for another access (a stale
    /// duplicate after a restart, or a hostile domain's invention) is ignored.
    func complete(_ reply: ControlMessage.RegisterReadReply) {
        let matched = pending.withLock { p -> Bool in
            guard p?.sequence == reply.sequence, p?.reply == nil else { return false }
            p?.reply = reply.value
            return true
        }
        if matched { signalEventfd(answered) }
    }

    /// The answer, once there (caller holds `accessLock`).
    var reply: UInt64? { pending.withLock { $0?.reply } }

    /// Ends the access (answered or abandoned) and records its round trip.
    func finish(roundTripNanoseconds: UInt64?) {
        pending.withLock { $0 = nil }
        guard let roundTrip = roundTripNanoseconds else { return }
        history.withLock { h in
            if h.samples.count < Self.historyLimit { h.samples.append(roundTrip) } else { h.samples[h.next] = roundTrip }
            h.next = (h.next + 1) % Self.historyLimit
            h.count &+= 1
        }
    }

    /// Answered accesses so far, and the last ones' round trips in µs.
    var roundTrips: (count: UInt64, microseconds: [Double]) {
        history.withLock { h in (h.count, h.samples.map { Double($0) / 1000 }) }
    }
}

extension DomainSupervisor {
    /// How long a vCPU polls for a register answer before it sleeps on the eventfd.
    static let registerSpinNanoseconds: UInt64 = 50_000
    /// A domain that has not answered within this long (restarts included) gets the access
    /// abandoned: a read answers all ones, like a PCI master abort.
    static let registerDeadlineNanoseconds: UInt64 = 10_000_000_000

    /// Forwards one guest access to a register of this emulated device (`value` nil: a read)
    /// to the domain and waits for the answer; called on a vCPU thread. If the domain dies
    /// meanwhile, its successor gets the same access after `Attach`. A failed device (past
    /// its restart budget) or a silent one reads as all ones and drops writes.
    public func accessRegister(bar: UInt32, offset: UInt64, size: UInt32, write value: UInt64?) -> UInt64 {
        let ones: UInt64 = size >= 8 ? .max : (1 << (UInt64(size) * 8)) - 1
        return registers.accessLock.withLock { _ in
            if state.withLock({ $0.failed || $0.stopping }) { return ones }
            let message = registers.begin(bar: bar, offset: offset, size: size, write: value)
            let start = ControlChannel.monotonicNanoseconds()
            // Sent now if a domain is attached; otherwise attachIfReady sends it after Attach.
            if state.withLock({ $0.attachedGeneration == $0.generation && $0.active != nil }) { send(message) }
            while true {
                if let reply = registers.reply {
                    registers.finish(roundTripNanoseconds: ControlChannel.monotonicNanoseconds() &- start)
                    return reply & ones
                }
                let now = ControlChannel.monotonicNanoseconds()
                if now &- start > Self.registerDeadlineNanoseconds || state.withLock({ $0.failed || $0.stopping }) {
                    registers.finish(roundTripNanoseconds: nil)
                    logger.warning("register access abandoned", metadata: [
                        "domain.id": "\(spec.id)", "register.offset": "\(offset)", "register.write": "\(value != nil)"])
                    return ones
                }
                takeMessagesOnVcpu()
                if registers.reply != nil || now &- start < Self.registerSpinNanoseconds || registers.answered < 0 { continue }
                // Sleep until the answer: on the eventfd the supervisor thread signals when it
                // takes the answer, and on the domain's doorbell, armed here so that the domain
                // rings it (it rings once per arming: the supervisor thread drains it, never
                // this thread, or the supervisor would sleep through the next ring).
                guard let armed = armDoorbell() else { continue } // a message is waiting: take it
                var fds = [pollfd(fd: registers.answered, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: armed ? channel.incomingDoorbell.rawValue : -1, events: Int16(POLLIN), revents: 0)]
                _ = poll(&fds, 2, 5)
                _ = readEventfd(registers.answered)
            }
        }
    }

    /// After `Attach` to a new domain: the access a vCPU still waits for, again (the domain
    /// answers a sequence number it has already applied without applying it twice).
    func resendPendingRegisterAccess() {
        if let message = registers.message { send(message) }
    }
}
