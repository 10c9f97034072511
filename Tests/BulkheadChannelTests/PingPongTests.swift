import BulkheadProtocol
import Testing

@testable import BulkheadChannel

/// The core and a domain on two threads over two mappings of the same memfd, with real
/// doorbells: 100k ping/pong round trips. Prints the round-trip distribution (no timed
/// assertion: the machine may be loaded).
@Suite(.serialized) struct PingPongTests {
    static let roundTrips = 100_000

    @Test(arguments: [ControlChannel.defaultSpinNanoseconds, 0])
    func pingPong(spinNanoseconds: UInt64) throws {
        let pair = try ChannelPair(spinNanoseconds: spinNanoseconds)
        let domain = pair.domain
        let echo = TestThread {
            for _ in 0..<Self.roundTrips {
                guard case .ping(let ping)? = try? domain.receive(timeoutMilliseconds: 10_000) else { return }
                guard (try? domain.send(.pong(ping))) != nil else { return }
            }
        }
        var samples: [UInt64] = []
        samples.reserveCapacity(Self.roundTrips)
        for sequence in 0..<UInt64(Self.roundTrips) {
            let sent = ControlChannel.monotonicNanoseconds()
            try pair.core.send(.ping(.init(sequence: sequence, sentNanoseconds: sent)))
            let reply = try pair.core.receive(timeoutMilliseconds: 10_000)
            let now = ControlChannel.monotonicNanoseconds()
            guard reply == .pong(.init(sequence: sequence, sentNanoseconds: sent)) else {
                Issue.record("round trip \(sequence): got \(String(describing: reply))")
                break
            }
            samples.append(now - sent)
        }
        echo.join()
        #expect(samples.count == Self.roundTrips)
        samples.sort()
        func percentile(_ p: Double) -> Double {
            Double(samples[min(samples.count - 1, Int(Double(samples.count) * p))]) / 1000
        }
        print(
            "control channel ping-pong, spin \(spinNanoseconds / 1000) µs, \(samples.count) round trips: "
                + "median \(percentile(0.5)) µs, p90 \(percentile(0.9)) µs, p99 \(percentile(0.99)) µs, "
                + "max \(percentile(1.0)) µs")
    }
}
