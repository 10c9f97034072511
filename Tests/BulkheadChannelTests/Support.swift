import BulkheadSystem
import CBulkheadLinux

@testable import BulkheadChannel

#if canImport(Glibc)
import Glibc
#endif

/// A second owned descriptor for the same open file, as a domain would inherit it.
func duplicate(_ fd: borrowing FileDescriptor) throws -> FileDescriptor {
    FileDescriptor(owning: try systemCall32("dup") { dup(fd.rawValue) })
}

/// Both ends of a control channel over two separate mappings of one memfd, with the doorbells
/// shared the way the core hands them to a domain.
struct ChannelPair {
    let core: ControlChannel
    let domain: ControlChannel

    init(spinNanoseconds: UInt64 = ControlChannel.defaultSpinNanoseconds) throws {
        let coreRegion = try ControlRegion.create(name: "test-control")
        let domainRegion = try ControlRegion(mapping: try duplicate(coreRegion.file))
        let coreToDomain = try FileDescriptor.eventfd(nonBlocking: true)
        let domainToCore = try FileDescriptor.eventfd(nonBlocking: true)
        let domainIncoming = try duplicate(coreToDomain)
        let domainOutgoing = try duplicate(domainToCore)
        core = ControlChannel(
            region: coreRegion, side: .core, incomingDoorbell: domainToCore, outgoingDoorbell: coreToDomain,
            spinNanoseconds: spinNanoseconds)
        domain = ControlChannel(
            region: domainRegion, side: .domain, incomingDoorbell: domainIncoming, outgoingDoorbell: domainOutgoing,
            spinNanoseconds: spinNanoseconds)
    }
}

/// A raw pointer into the region's header, for tests that play a hostile peer.
func headerField(_ region: ControlRegion, _ offset: Int) -> UnsafeMutableRawPointer { region.base + offset }

/// Runs `body` on a new POSIX thread (a real thread, not a task: it blocks in `poll`).
final class TestThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: @Sendable () -> Void

    init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let context = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, { context in
            let me = Unmanaged<TestThread>.fromOpaque(context!).takeRetainedValue()
            me.body()
            return nil
        }, context)
        precondition(result == 0, "pthread_create failed: \(result)")
    }

    func join() { pthread_join(thread, nil) }
}

/// A small deterministic generator, so that a failing input can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
