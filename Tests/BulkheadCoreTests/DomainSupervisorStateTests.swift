@testable import BulkheadCore
import BulkheadProtocol
import BulkheadSandbox
import Testing

/// The supervisor's state changes, driven as its thread drives them, without processes.
@Suite("Domain supervisor state")
struct DomainSupervisorStateTests {
    func handle(_ state: inout DomainSupervisor.State, _ message: ControlMessage, at now: Double = 1000) -> DomainSupervisor.State.Outcome {
        state.handle(message, kind: "blk", id: "blk0", now: now, nowNanoseconds: UInt64(now * 1e6))
    }

    @Test func handshakeAttachAndServe() {
        var state = DomainSupervisor.State()
        state.activate(VirtioActivation(driverFeatures: 1 << 32, queues: [VirtqueueConfiguration(size: 256, ready: true)]))
        _ = state.beginGeneration()
        state.started(pid: 42)
        #expect(state.phase == .starting)
        #expect(state.takeAttach() == nil) // no Hello yet
        #expect(handle(&state, .hello(.init(kind: "blk", id: "blk0", pid: 1))) == .helloAccepted)
        #expect(state.takeAttach()?.generation == 0)
        #expect(state.takeAttach() == nil) // once per generation
        #expect(handle(&state, .attached(.init(replayed: 0))) == .attached(replayed: 0))
        #expect(state.phase == .running)
        #expect(handle(&state, .stats(.init(requests: 5))) == .stats(recoveredAfterMilliseconds: nil))
        #expect(state.requestsTotal == 5)
    }

    @Test func protocolFaults() {
        var state = DomainSupervisor.State()
        for message: ControlMessage in [
            .hello(.init(kind: "net", id: "blk0", pid: 1)), .hello(.init(protocolVersion: 99, kind: "blk", id: "blk0", pid: 1)),
            .reset, .shutdown, .ping(.init(sequence: 1, sentNanoseconds: 0)), .injectFault(.init(kind: .crash)),
        ] {
            guard case .protocolFault = handle(&state, message) else {
                Issue.record("\(message) was accepted")
                continue
            }
        }
        #expect(!state.helloReceived)
    }

    /// Found by FuzzSupervisorMessages: a Stats with a lower count than the last one made
    /// requests_total (a Prometheus counter) go backwards.
    @Test func aLowerRequestCountDoesNotTurnTheTotalBack() {
        var state = DomainSupervisor.State()
        state.started(pid: 1)
        _ = handle(&state, .stats(.init(requests: 10)))
        _ = handle(&state, .stats(.init(requests: 3)))
        #expect(state.requestsTotal == 10)
        state.recordExit(.terminated(.signaled(signal: 9, coreDumped: false)))
        _ = handle(&state, .stats(.init(requests: 2)))
        #expect(state.requestsTotal == 12)
        _ = handle(&state, .stats(.init(requests: .max)))
        #expect(state.requestsTotal == .max) // saturates
        _ = handle(&state, .stats(.init(requests: 0)))
        #expect(state.requestsTotal == .max)
    }

    @Test func deathRecoveryAndBudget() {
        var state = DomainSupervisor.State()
        var policy = RestartPolicy()
        policy.budget = 1
        state.started(pid: 1)
        state.died(at: 1000)
        state.recordExit(.terminated(.signaled(signal: 9, coreDumped: false)))
        #expect(state.phase == .restarting)
        #expect(state.restartDelay(now: 1000, policy: policy) == 0)
        _ = state.beginGeneration()
        state.started(pid: 2)
        #expect(handle(&state, .stats(.init(requests: 1)), at: 1002) == .stats(recoveredAfterMilliseconds: 2))
        state.recordExit(.watchdog(milliseconds: 1500))
        #expect(state.restartDelay(now: 2000, policy: policy) == nil)
        #expect(state.phase == .failed)
        #expect(state.report(id: "blk0").summary.contains("restarts=2 failed=yes"))
    }
}
