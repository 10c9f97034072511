import CLibFuzzer
import BulkheadAPI
import BulkheadChannel
import BulkheadCore
import BulkheadProtocol
import BulkheadSandbox
import BulkheadSystem

#if canImport(Glibc)
import Glibc
#endif

/// Fuzzes the core's handling of what a hostile domain sends: every frame goes through a real
/// control channel (the domain side sends it, the core side receives and decodes it, as the
/// supervisor does) and then through `DomainSupervisor.State.handle`, the supervisor's own
/// handler, in whatever state the input has led the supervisor into: starting, running, with
/// a warm standby, restarting after a death or a protocol fault, backing off, failed, stopped.
/// Between frames the input drives the supervisor's lifecycle in the order its thread goes
/// through it (`beginGeneration`, `started`, `died`, `recordExit`, `restartDelay`,
/// `takeAttach`) and the driver's `activate`/`reset`.
///
/// Input: one configuration byte, then steps.
///   [0] bit 0: the device is `net0` (else `blk0`); bits 1-3: restart budget; bit 4: the
///       driver has activated the device before the first domain starts; bit 5: the status
///       shows the process's memory and CPU
///   step: an op byte, op % 8:
///     0-3  the domain sends a frame: u16 LE length (bounded by the rest), the frame's bytes
///     4    the serving domain ends: a byte for how (exit status, signal, the protocol fault the
///          core killed it for, the watchdog, its standby dying instead), a byte of detail, a
///          byte whose low bits say how many of the next spawns fail
///     5    the driver: a byte; even: DRIVER_OK with 1-4 queues, odd: a device reset
///     6    time passes: u16 LE milliseconds
///     7    the VM stops
///   Once the device has failed, ops 0-6 are requests the core fails itself.
///
/// After every step: nothing trapped; counters (restarts, exits, recoveries, requests, failed
/// requests, the generation) never went down; the status made only a legal transition; a
/// core-only message was a protocol fault and the right Hello was not; Attach came after
/// Hello, once per generation (again only after a reset). After every change of status, every
/// end of a domain, every 8th step and the last (rendering is the slow part): the status
/// renders as JSON that parses again and as Prometheus text that is well-formed, and the
/// closing report's summary renders.

private final class Rig: @unchecked Sendable {
    let region: ControlRegion
    let core: ControlChannel
    let toCore: FileDescriptor
    let toDomain: FileDescriptor

    init() {
        do {
            region = try ControlRegion.create(name: "fuzz-supervisor")
            toCore = try FileDescriptor.eventfd(nonBlocking: true)
            toDomain = try FileDescriptor.eventfd(nonBlocking: true)
            core = ControlChannel(region: region, side: .core, incomingDoorbell: try Self.duplicate(toCore),
                                  outgoingDoorbell: try Self.duplicate(toDomain), spinNanoseconds: 0)
        } catch {
            fatalError("fuzz rig: \(error)")
        }
    }

    static func duplicate(_ fd: borrowing FileDescriptor) throws -> FileDescriptor {
        FileDescriptor(owning: try systemCall32("dup") { dup(fd.rawValue) })
    }

    /// A new domain process's side of the channel after the core reset the rings.
    func domainChannel() -> ControlChannel {
        do {
            return ControlChannel(region: region, side: .domain, incomingDoorbell: try Self.duplicate(toDomain),
                                  outgoingDoorbell: try Self.duplicate(toCore), spinNanoseconds: 0)
        } catch {
            fatalError("fuzz rig: \(error)")
        }
    }
}

private let rig = Rig()
/// FUZZ_TRACE=1: each step and the state after it (to see what a seed reaches).
private let trace = getenv("FUZZ_TRACE") != nil

/// The input, consumed from the front.
private struct Reader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0
    var atEnd: Bool { offset >= bytes.count }
    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }
    mutating func u16() -> UInt16 { UInt16(byte()) | UInt16(byte()) << 8 }
    mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let n = min(count, bytes.count - offset)
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }
}

/// What must never go down, read off the state.
private struct Counters {
    var restarts: Int
    var exits: Int
    var recoveries: Int
    var requests: UInt64
    var failedRequests: UInt64
    var generation: UInt64

    init(_ s: DomainSupervisor.State) {
        restarts = s.restartTimes.count
        exits = s.exitReasons.count
        recoveries = s.recoveryMilliseconds.count
        requests = s.requestsTotal
        failedRequests = s.failedRequests
        generation = s.generation
    }

    func check(against old: Counters, after step: String) {
        require(restarts >= old.restarts, "restarts went down after \(step)")
        require(exits >= old.exits, "exits went down after \(step)")
        require(recoveries >= old.recoveries, "recoveries went down after \(step)")
        require(requests >= old.requests, "requests went down after \(step): \(old.requests) -> \(requests)")
        require(failedRequests >= old.failedRequests, "failed requests went down after \(step)")
        require(generation >= old.generation, "the generation went down after \(step)")
    }
}

private enum Step: CustomStringConvertible {
    case message, exit, standbyEnded, driver, time, failedRequest, stop
    var description: String {
        switch self {
        case .message: return "a message"
        case .exit: return "a domain's end and restart"
        case .standbyEnded: return "the standby's end"
        case .failedRequest: return "a request the core failed"
        case .driver: return "a driver activate/reset"
        case .time: return "time passing"
        case .stop: return "the VM stopping"
        }
    }
}

/// The transitions of `Status.State` each step may make.
private func checkTransition(from old: DomainSupervisor.Status.State, to new: DomainSupervisor.Status.State,
                             step: Step, restarts: Int) {
    if old == .failed { require(new == .failed, "left failed (to \(new)) after \(step)") }
    if new == .starting { require(restarts == 0, "starting after \(restarts) restarts") }
    switch step {
    case .message:
        require(new == old || (new == .running && (old == .starting || old == .restarting)),
                     "a message moved the status from \(old) to \(new)")
    case .exit:
        require(new == .restarting || new == .failed, "a domain's end left the status \(new)")
    case .standbyEnded, .driver, .time, .failedRequest:
        require(new == old, "\(step) moved the status from \(old) to \(new)")
    case .stop:
        require(new == .stopped || (old == .failed && new == .failed), "stopping left the status \(new)")
    }
}

/// Prometheus text format 0.0.4, as `GET /metrics` writes it: HELP and TYPE before each
/// family's samples, names and label names of the allowed characters, label values with only
/// the three escapes, a number for every value, counters never negative or NaN.
private func checkPrometheus(_ text: String) {
    let bytes = Array(text.utf8)
    require(bytes.last == UInt8(ascii: "\n"), "metrics do not end with a newline")
    func isName(_ name: ArraySlice<UInt8>, colon: Bool) -> Bool {
        guard let first = name.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return name.allSatisfy { c in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(c)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || c == UInt8(ascii: "_") || (colon && c == UInt8(ascii: ":"))
        }
    }
    var family: ArraySlice<UInt8> = []
    var type: ArraySlice<UInt8> = []
    for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast() {
        let show = String(decoding: line, as: UTF8.self)
        require(!line.isEmpty, "an empty line in the metrics")
        if line.starts(with: "# HELP ".utf8) {
            let rest = line.dropFirst(7)
            guard let space = rest.firstIndex(of: UInt8(ascii: " ")) else { fatalError("HELP without text: \(show)") }
            family = rest[..<space]
            require(isName(family, colon: true), "bad metric name in \(show)")
            continue
        }
        if line.starts(with: "# TYPE ".utf8) {
            let parts = line.split(separator: UInt8(ascii: " "))
            require(parts.count == 4 && parts[2].elementsEqual(family)
                        && (parts[3].elementsEqual("counter".utf8) || parts[3].elementsEqual("gauge".utf8)), "bad TYPE line \(show)")
            type = parts[3]
            continue
        }
        require(line.first != UInt8(ascii: "#"), "a comment that is neither HELP nor TYPE: \(show)")
        var rest = line[...]
        let nameEnd = rest.firstIndex { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: " ") } ?? rest.endIndex
        require(rest[..<nameEnd].elementsEqual(family), "a sample outside its family: \(show)")
        rest = rest[nameEnd...]
        if rest.first == UInt8(ascii: "{") {
            rest = rest.dropFirst()
            while true {
                guard let equals = rest.firstIndex(of: UInt8(ascii: "=")) else { fatalError("a label without a value in \(show)") }
                require(isName(rest[..<equals], colon: false), "bad label name in \(show)")
                rest = rest[equals...].dropFirst()
                require(rest.popFirst() == UInt8(ascii: "\""), "an unquoted label value in \(show)")
                while true {
                    guard let c = rest.popFirst() else { fatalError("an unterminated label value in \(show)") }
                    if c == UInt8(ascii: "\"") { break }
                    if c == UInt8(ascii: "\\") {
                        let escaped = rest.popFirst()
                        require(escaped == UInt8(ascii: "\\") || escaped == UInt8(ascii: "\"") || escaped == UInt8(ascii: "n"),
                                "a bad escape in \(show)")
                    }
                }
                let next = rest.popFirst()
                if next == UInt8(ascii: "}") { break }
                require(next == UInt8(ascii: ","), "a bad label separator in \(show)")
            }
        }
        require(rest.popFirst() == UInt8(ascii: " "), "no space before the value in \(show)")
        guard !rest.contains(UInt8(ascii: " ")), let value = Double(String(decoding: rest, as: UTF8.self)) else {
            fatalError("a bad value in \(show)")
        }
        if type.elementsEqual("counter".utf8) { require(value >= 0, "a negative or NaN counter: \(show)") }
    }
}

private func checkRendering(_ state: DomainSupervisor.State, id: String, kind: String, now: Double, usage: Bool) {
    let status = state.status(id: id, kind: kind, now: now, heartbeat: UInt64(now),
                              usage: usage ? (rssBytes: 3 << 20, cpuSeconds: 0.25) : nil)
    for detailed in [false, true] {
        let text = APIServer.json(status, detailed: detailed).serialized
        guard let parsed = JSON.parse(text) else { fatalError("status JSON does not parse: \(text)") }
        require(parsed["state"]?.stringValue == status.state.rawValue, "status JSON lost the state: \(text)")
        require(parsed["requests"]?.numberValue == Double(status.requests), "status JSON lost the requests: \(text)")
    }
    checkPrometheus(PrometheusText.render(vcpus: 2, memoryBytes: 256 << 20, uptimeSeconds: now / 1000, statuses: [status]))
    _ = state.report(id: id).summary
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSupervisorMessages(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count >= 1 else { return 0 }
    var input = Reader(bytes: UnsafeRawBufferPointer(start: data, count: count))
    let configuration = input.byte()
    let (kind, id) = configuration & 1 != 0 ? ("net", "net0") : ("blk", "blk0")
    var policy = RestartPolicy()
    policy.budget = Int(configuration >> 1 & 7)
    policy.windowSeconds = 60
    let queueCount = kind == "net" ? 2 : 1
    func activation(_ queues: Int) -> VirtioActivation {
        VirtioActivation(driverFeatures: 1 << 32 | 1 << 29, queues: (0..<queues).map { index in
            VirtqueueConfiguration(size: 256, ready: true, descriptorTable: 0x10_0000 + UInt64(index) << 14,
                                   driverArea: 0x10_1000 + UInt64(index) << 14, deviceArea: 0x10_2000 + UInt64(index) << 14)
        })
    }

    var state = DomainSupervisor.State()
    if configuration & 0x10 != 0 { state.activate(activation(queueCount)) }
    var now = 10_000.0
    var nextPid: Int32 = 100
    var domain = rig.domainChannel()
    var pendingFault: DomainSupervisor.ExitReason?
    var hasStandby = false
    var lastStandbySpawn = -1e9
    var lastAttachedGeneration: UInt64?
    var resetSinceAttach = false

    /// The supervisor thread's start of a generation: reset the rings, start (or activate) a domain.
    func startGeneration() {
        let generation = state.beginGeneration()
        rig.core.resetRings(generation: generation)
        domain = rig.domainChannel()
        hasStandby = false
        pendingFault = nil
        state.started(pid: nextPid)
        nextPid &+= 1
    }
    startGeneration()

    var counters = Counters(state)
    var phase = state.phase
    var steps = 0
    let usage = configuration & 0x20 != 0
    while !state.stopping, !input.atEnd {
        now += 0.05
        let op = input.byte()
        let step: Step
        switch op % 8 {
        case 0...6 where state.failed:
            // Past the budget the core answers the guest itself.
            step = .failedRequest
            state.requestFailed()
        case 0...3:
            step = .message
            let length = Int(input.u16())
            let frame = input.take(length)
            // The domain's side refuses what no domain could send (empty, over 16 KiB).
            guard (try? domain.send(frame: frame)) != nil else { break }
            do throws(ChannelError) {
                while let message = try rig.core.tryReceive() {
                    let outcome = state.handle(message, kind: kind, id: id, now: now, nowNanoseconds: UInt64(now * 1e6))
                    switch message {
                    case .attach, .reset, .shutdown, .ping, .registerRead, .registerWrite, .injectFault:
                        guard case .protocolFault = outcome else { fatalError("a core-only message was accepted: \(message)") }
                    case .registerReadReply(let reply):
                        // Handed to the register forwarding, which ignores a reply nobody waits for.
                        require(outcome == .registerReply(reply), "a register reply was not passed on")
                    case .hello(let hello) where hello.kind == kind && hello.id == id && hello.protocolVersion == ControlProtocol.version:
                        require(outcome == .helloAccepted && state.helloReceived, "the right Hello was refused")
                    default:
                        break
                    }
                    if case .protocolFault(let reason) = outcome {
                        pendingFault = reason // the supervisor kills the domain
                        break
                    }
                }
            } catch {
                pendingFault = DomainSupervisor.State.fault(receiving: error)
            }
            if pendingFault == nil, let attach = state.takeAttach() {
                require(state.helloReceived && attach.generation == state.generation, "Attach sent before Hello")
                require(lastAttachedGeneration != attach.generation || resetSinceAttach, "Attach sent twice")
                lastAttachedGeneration = attach.generation
                resetSinceAttach = false
            }
            if !hasStandby, pendingFault == nil, now - lastStandbySpawn > 1000, state.wantsStandby {
                lastStandbySpawn = now
                hasStandby = true
            }
        case 4:
            let how = input.byte(), detail = input.byte(), spawnFailures = Int(input.byte() & 3)
            if how % 5 == 4 {
                step = .standbyEnded
                hasStandby = false // only the standby died: the supervisor forgets it
                break
            }
            step = .exit
            let reason: DomainSupervisor.ExitReason
            switch how % 5 {
            case 0: reason = pendingFault ?? .terminated(.exited(status: Int32(detail)))
            case 1: reason = pendingFault ?? .terminated(.signaled(signal: Int32(detail % 65), coreDumped: detail & 0x80 != 0))
            case 2: reason = .watchdog(milliseconds: 1000 + Double(detail))
            default: reason = pendingFault ?? .terminated(.signaled(signal: SIGKILL, coreDumped: false))
            }
            state.died(at: now)
            let warm = hasStandby
            state.recordExit(reason)
            guard let delay = state.restartDelay(now: now, policy: policy) else { break }
            now += delay
            if !warm {
                // Spawns that fail before the domain runs: each is an exit and a back-off too.
                var failures = spawnFailures
                while failures > 0 {
                    failures -= 1
                    _ = state.beginGeneration()
                    state.recordExit(.handshakeFailed("fuzz: spawn failed"))
                    guard let delay = state.restartDelay(now: now, policy: policy) else { break }
                    now += delay
                }
            }
            if !state.failed { startGeneration() }
        case 5:
            step = .driver
            let what = input.byte()
            if what & 1 == 0 {
                state.activate(activation(1 + Int(what >> 1 & 3)))
            } else {
                state.reset()
                resetSinceAttach = true
            }
        case 6:
            step = .time
            now += Double(input.u16())
        default:
            step = .stop
            state.stop()
            // The domain's last frames are read and handled; a fault no longer matters.
            while let message = try? rig.core.tryReceive() {
                _ = state.handle(message, kind: kind, id: id, now: now, nowNanoseconds: UInt64(now * 1e6))
            }
        }
        let newCounters = Counters(state)
        newCounters.check(against: counters, after: "\(step)")
        require(state.exitReasons.count == Int(state.generation), "one generation per exit")
        require(state.attachedGeneration.map { $0 <= state.generation } ?? true, "attached to a future generation")
        let newPhase = state.phase
        checkTransition(from: phase, to: newPhase, step: step, restarts: state.restartTimes.count)
        // Rendering is the slow part: after every change of phase and every end, every 8th
        // step, and at the end of the input.
        steps += 1
        if newPhase != phase || step == .exit || steps % 8 == 0 || input.atEnd || state.stopping {
            checkRendering(state, id: id, kind: kind, now: now, usage: usage)
        }
        if trace {
            print("\(step): \(newPhase) generation \(state.generation) requests \(state.requestsTotal) restarts \(state.restartTimes.count)"
                  + " recoveries \(state.recoveryMilliseconds.count) hello \(state.helloReceived) attached \(state.attachedGeneration.map { "\($0)" } ?? "-")"
                  + " fault \(pendingFault.map { "\($0)" } ?? "-")")
        }
        counters = newCounters
        phase = newPhase
    }
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzSupervisorMessages(data, size) })

/// An invariant. Its message is printed in a release build too (a precondition's is not).
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
