import BulkheadChannel
import BulkheadProtocol

extension DomainSupervisor {
    /// What a supervisor knows of its device's domain: the generation and its handshake, the
    /// serving process, the restart history and the counters that status and `/metrics` show.
    ///
    /// A value the supervisor keeps behind its lock and changes only through the methods below.
    /// They take the time as an argument and do no I/O (the supervisor logs, records events and
    /// sends what they return), so the same code can be driven without processes: the
    /// `FuzzSupervisorMessages` fuzz target feeds it hostile messages in every state.
    public struct State: Sendable {
        public internal(set) var activation: VirtioActivation?
        public internal(set) var helloReceived = false
        /// The generation the last `Attach` was sent for; nil until then, and after a reset.
        public internal(set) var attachedGeneration: UInt64?
        public internal(set) var generation: UInt64 = 0
        public internal(set) var restartTimes: [Double] = []
        public internal(set) var consecutiveFailures = 0
        public internal(set) var failed = false
        public internal(set) var stopping = false
        public internal(set) var exitReasons: [String] = []
        public internal(set) var recoveryMilliseconds: [Double] = []
        public internal(set) var diedAt: Double?
        /// The serving generation's request count: the highest it reported.
        public internal(set) var requestsThisGeneration: UInt64 = 0
        public internal(set) var requestsTotal: UInt64 = 0
        public internal(set) var requestsBeforeThisGeneration: UInt64 = 0
        public internal(set) var failedRequests: UInt64 = 0
        /// The driver reset the device: the next Attach describes new queues, whose recovery
        /// blocks must start empty.
        public internal(set) var queuesNeedFreshRecovery = false
        /// For status: the serving process, when it started serving, the last counters.
        public internal(set) var pid: Int32?
        public internal(set) var servingSince: Double?
        public internal(set) var lastStats = ControlMessage.Stats()
        public internal(set) var lastExitReason: String?
        var active: DomainHandle?

        public init() {}

        // MARK: messages from the domain

        /// What handling one message asks of the supervisor besides the change of state.
        public enum Outcome: Sendable, Equatable {
            /// Nothing more to do.
            case handled
            /// The domain broke the protocol: kill it (the restart path takes over).
            case protocolFault(ExitReason)
            /// `Hello` from the expected domain, in the core's protocol version.
            case helloAccepted
            case attached(replayed: UInt32)
            /// `Stats`; `recoveredAfterMilliseconds` when it is the first progress since a death.
            case stats(recoveredAfterMilliseconds: Double?)
            case faultReported(ControlMessage.FaultReport)
            case log(ControlMessage.Log)
            /// A `Pong`, stamped with its round trip.
            case pong(sequence: UInt64, roundTripNanoseconds: UInt64)
            /// The answer to a forwarded register access (`RegisterForwarding` matches it).
            case registerReply(ControlMessage.RegisterReadReply)
        }

        /// Handles one message from the domain that should be the `kind` domain `id`, received
        /// at `now` (monotonic milliseconds; `nowNanoseconds` the same instant). Every field is
        /// the domain's word: checked, and counters combined so that none can trap.
        public mutating func handle(_ message: ControlMessage, kind: String, id: String, now: Double,
                                    nowNanoseconds: UInt64) -> Outcome {
            switch message {
            case .hello(let hello):
                guard hello.protocolVersion == ControlProtocol.version else {
                    return .protocolFault(.protocolFault(
                        "domain speaks protocol version \(hello.protocolVersion); the core speaks \(ControlProtocol.version)"))
                }
                guard hello.kind == kind, hello.id == id else {
                    return .protocolFault(.protocolFault("domain introduced itself as \(hello.kind) \(hello.id), expected \(kind) \(id)"))
                }
                helloReceived = true
                return .helloAccepted
            case .attached(let attached):
                servingSince = now
                return .attached(replayed: attached.replayed)
            case .stats(let stats):
                var recovered: Double?
                if stats.requests > 0, let died = diedAt {
                    recovered = now - died
                    recoveryMilliseconds.append(now - died)
                    diedAt = nil
                }
                // A generation's count only grows: a lower one (a lying domain) must not make the
                // total, a Prometheus counter, go backwards.
                requestsThisGeneration = max(requestsThisGeneration, stats.requests)
                lastStats = stats
                // A domain's counters are hostile: an absurd one saturates, it never traps the core.
                let (total, overflow) = requestsBeforeThisGeneration.addingReportingOverflow(requestsThisGeneration)
                requestsTotal = overflow ? .max : total
                if stats.requests > 0 { consecutiveFailures = 0 }
                return .stats(recoveredAfterMilliseconds: recovered)
            case .faultReport(let report):
                return .faultReported(report)
            case .log(let log):
                return .log(log)
            case .pong(let pong):
                return .pong(sequence: pong.sequence, roundTripNanoseconds: nowNanoseconds &- pong.sentNanoseconds)
            case .resetDone:
                return .handled
            case .registerReadReply(let reply):
                return .registerReply(reply)
            case .attach, .reset, .shutdown, .ping, .registerRead, .registerWrite, .injectFault:
                return .protocolFault(.protocolFault("domain sent a message only the core may send"))
            }
        }

        /// A frame the core could not receive or decode: the domain broke the channel.
        public static func fault(receiving error: ChannelError) -> ExitReason { .protocolFault("\(error)") }

        // MARK: the lifecycle, in the order the supervisor thread goes through it

        /// A new generation: no `Hello` or `Attach` yet. Returns its number.
        public mutating func beginGeneration() -> UInt64 {
            helloReceived = false
            attachedGeneration = nil
            return generation
        }

        /// The process `pid` (started, or a standby activated) now serves this generation.
        public mutating func started(pid: Int32) {
            self.pid = pid
            servingSince = nil
        }

        /// The serving process died at `time`: its successor's first progress is the recovery.
        public mutating func died(at time: Double) { diedAt = time }

        /// Records why the serving process ended and starts counting the next generation.
        /// Returns where the reason lies in `exitReasons`.
        @discardableResult
        public mutating func recordExit(_ reason: ExitReason) -> Int {
            let index = exitReasons.count
            exitReasons.append(reason.description)
            lastExitReason = reason.description
            pid = nil
            active = nil
            servingSince = nil
            requestsBeforeThisGeneration = requestsTotal
            requestsThisGeneration = 0
            consecutiveFailures += 1
            generation += 1
            return index
        }

        /// Applies the restart policy at `now`: the delay before the next start, or nil when the
        /// budget is spent and the device has failed.
        public mutating func restartDelay(now: Double, policy: RestartPolicy) -> Double? {
            let windowStart = now - policy.windowSeconds * 1000
            restartTimes.append(now)
            let recent = restartTimes.filter { $0 >= windowStart }.count
            if recent > policy.budget {
                failed = true
                return nil
            }
            // The first failure after progress restarts at once; repeated ones back off.
            guard consecutiveFailures > 1 else { return 0 }
            let exponent = Double(min(consecutiveFailures - 2, 16))
            return min(policy.initialBackoffMilliseconds * pow2(exponent), policy.maximumBackoffMilliseconds)
        }

        /// The `Attach` due now: once the domain has said `Hello` in a generation it has not been
        /// attached in, while the driver has the device active. `freshRecovery`: the driver reset
        /// the device since the last one, so the queues' recovery blocks must be zeroed first.
        public mutating func takeAttach() -> (generation: UInt64, activation: VirtioActivation, freshRecovery: Bool)? {
            guard helloReceived, attachedGeneration != generation, let activation else { return nil }
            attachedGeneration = generation
            let fresh = queuesNeedFreshRecovery
            queuesNeedFreshRecovery = false
            return (generation, activation, fresh)
        }

        /// Whether to keep a warm standby: the serving domain is attached and has made progress
        /// since the last death.
        public var wantsStandby: Bool { attachedGeneration == generation && diedAt == nil }

        /// The driver set DRIVER_OK.
        public mutating func activate(_ activation: VirtioActivation) { self.activation = activation }

        /// The driver reset the device.
        public mutating func reset() {
            activation = nil
            attachedGeneration = nil
            queuesNeedFreshRecovery = true
        }

        /// The VM is shutting down.
        public mutating func stop() { stopping = true }

        /// The core answered a request itself (the device failed).
        public mutating func requestFailed() { failedRequests &+= 1 }

        // MARK: what the operator sees

        public var phase: Status.State {
            if failed { return .failed }
            if stopping { return .stopped }
            if pid == nil { return .restarting }
            if servingSince == nil { return restartTimes.isEmpty ? .starting : .restarting }
            return .running
        }

        /// The status of device `id` at `now`, with the heartbeat and the process's resource use.
        public func status(id: String, kind: String, now: Double, heartbeat: UInt64,
                           usage: (rssBytes: UInt64, cpuSeconds: Double)?) -> Status {
            Status(
                id: id, kind: kind, state: phase, pid: pid, restarts: restartTimes.count,
                lastExitReason: lastExitReason, uptimeSeconds: servingSince.map { (now - $0) / 1000 },
                lastRecoveryMilliseconds: recoveryMilliseconds.last, requests: requestsTotal,
                readBytes: lastStats.readBytes, writtenBytes: lastStats.writtenBytes, inFlight: lastStats.inFlight,
                errors: lastStats.errors, replayed: lastStats.replayed, failedRequests: failedRequests,
                recoveryMilliseconds: recoveryMilliseconds, exitReasons: exitReasons,
                rssBytes: usage?.rssBytes, cpuSeconds: usage?.cpuSeconds, heartbeat: heartbeat)
        }

        /// The closing report of device `id`.
        public func report(id: String) -> Report {
            Report(id: id, restarts: restartTimes.count, failed: failed, exitReasons: exitReasons,
                   recoveryMilliseconds: recoveryMilliseconds, requests: requestsTotal, failedRequests: failedRequests)
        }
    }
}

private func pow2(_ exponent: Double) -> Double {
    var result = 1.0
    for _ in 0..<Int(exponent) { result *= 2 }
    return result
}
