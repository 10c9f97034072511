import BulkheadSystem
@testable import BulkheadVirtio
import Glibc
import Testing

/// A socketpair standing in for the tap: whole frames each way (SOCK_SEQPACKET), the engine's
/// end non-blocking like the tap.
private final class FakeTap {
    let engineEnd: Int32
    let hostEnd: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        let status = socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        try #require(status == 0)
        (engineEnd, hostEnd) = (fds[0], fds[1])
    }

    deinit {
        close(engineEnd)
        close(hostEnd)
    }

    func hostSends(_ frame: [UInt8]) { _ = frame.withUnsafeBytes { send(hostEnd, $0.baseAddress, $0.count, 0) } }

    func hostReceives() -> [UInt8]? {
        var frame = [UInt8](repeating: 0, count: 70_000)
        let n = frame.withUnsafeMutableBytes { recv(hostEnd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        return n < 0 ? nil : Array(frame.prefix(n))
    }
}

/// Each queue has its own fake guest (its own RAM), its parts at other addresses than the
/// other's (the engine refuses a used ring over the other queue).
private func rig() throws -> (rx: FakeGuest, tx: FakeGuest, tap: FakeTap, engine: NetFrameEngine) {
    let rx = try FakeGuest(size: 8), tx = try FakeGuest(size: 8, queueOffset: 0x4000), tap = try FakeTap()
    let engine = NetFrameEngine(tap: tap.engineEnd)
    let receive = try SplitVirtqueue(memory: rx.memory, configuration: rx.configuration, recoveryBlock: rx.recoveryBlock)
    let transmit = try SplitVirtqueue(memory: tx.memory, configuration: tx.configuration, recoveryBlock: tx.recoveryBlock)
    let recovered = try engine.attach(receive: receive, transmit: transmit)
    #expect(recovered.receive == 0 && recovered.transmit == 0)
    return (rx, tx, tap, engine)
}

private let data = FakeGuest.dataArea

@Suite("virtio-net frame engine (a socketpair as the tap)")
struct NetFrameEngineTests {
    @Test func transmitStripsTheHeaderAndSendsOneFramePerChain() throws {
        let (_, tx, tap, engine) = try rig()
        let frame = (0..<60).map { UInt8($0) }
        tx.write([UInt8](repeating: 0xAA, count: 12), at: data)
        tx.write(Array(frame[..<20]), at: data + 0x100)
        tx.write(Array(frame[20...]), at: data + 0x200)
        tx.submit([(data, 12, false), (data + 0x100, 20, false), (data + 0x200, 40, false)])
        #expect(engine.transmitBatch() == 1)
        #expect(tap.hostReceives() == frame)
        #expect(tx.usedIndex == 1 && tx.usedElement(0).length == 0)
        #expect(engine.transmittedFrames == 1 && engine.transmittedBytes == 60)
    }

    @Test func malformedTransmitChainsAreCompletedUnsentAndCounted() throws {
        let (_, tx, tap, engine) = try rig()
        tx.submit([(data, 12, false)], first: 0)                      // header only
        tx.submit([(data, 12, false), (data + 0x100, 60, false), (data + 0x200, 60, true)], first: 1) // a device-writable part
        #expect(engine.transmitBatch() == 2)
        #expect(tap.hostReceives() == nil)
        #expect(tx.usedIndex == 2)
        #expect(engine.drops.transmitShort == 1 && engine.drops.transmitMalformed == 1 && engine.transmittedFrames == 0)
    }

    @Test func receiveWritesTheHeaderAndTheFrame() throws {
        let (rx, _, tap, engine) = try rig()
        rx.write([UInt8](repeating: 0xEE, count: 0x100), at: data)
        rx.submit([(data, 0x100, true)])
        let frame = (0..<64).map { UInt8(255 - $0) }
        tap.hostSends(frame)
        #expect(engine.receiveBatch() == 1)
        #expect(rx.usedElement(0).length == UInt32(12 + frame.count))
        #expect(rx.bytes(at: data, count: 12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        #expect(rx.bytes(at: data + 12, count: frame.count) == frame)
        #expect(rx.bytes(at: data + 12 + UInt64(frame.count), count: 1) == [0xEE])
        // Nothing more waiting: the next buffer stays posted.
        rx.submit([(data + 0x1000, 0x100, true)], first: 1)
        #expect(engine.receiveBatch() == 0)
        #expect(engine.receiveBuffers.count == 1)
    }

    @Test func anOversizeFrameIsDroppedAndTheBufferStaysPosted() throws {
        let (rx, _, tap, engine) = try rig()
        rx.submit([(data, 12 + 100, true)])
        tap.hostSends([UInt8](repeating: 7, count: 65_536))
        tap.hostSends([UInt8](repeating: 9, count: 100))
        #expect(engine.receiveBatch() == 1)
        #expect(engine.drops.receiveOversize == 1)
        #expect(rx.usedIndex == 1 && rx.usedElement(0).length == 112)
        #expect(rx.bytes(at: data + 12, count: 100) == [UInt8](repeating: 9, count: 100))
    }

    @Test func aUsedRingOverTheOtherQueueIsRefused() throws {
        let guest = try FakeGuest(size: 8)
        let other = UnsafeMutableRawBufferPointer.allocate(byteCount: QueueRecoveryLayout.size, alignment: 8)
        defer { other.deallocate() }
        other.initializeMemory(as: UInt8.self, repeating: 0)
        let receive = try SplitVirtqueue(memory: guest.memory, configuration: guest.configuration, recoveryBlock: guest.recoveryBlock)
        // transmitq's used ring lies on receiveq's available ring.
        let crossed = QueueConfiguration(size: 8, descriptorTable: 0x2000, availableRing: 0x3000, usedRing: FakeGuest.availableRing)
        let transmit = try SplitVirtqueue(memory: guest.memory, configuration: crossed, recoveryBlock: other)
        let tap = try FakeTap()
        expectCode(.invalidConfiguration) { _ = try NetFrameEngine(tap: tap.engineEnd).attach(receive: receive, transmit: transmit) }
    }

    @Test func aReceiveChainThatIsNoReceiveBufferIsCompletedEmpty() throws {
        let (rx, _, tap, engine) = try rig()
        rx.submit([(data, 12, true)], first: 0)                        // no room for a frame
        rx.submit([(data, 16, false), (data + 0x100, 64, true)], first: 1) // device-readable part
        tap.hostSends([1, 2, 3])
        var seen: [(UInt16, UInt32)] = []
        engine.completionObserver = { queue, head, _, length in
            #expect(queue == NetFrameEngine.receiveQueue)
            seen.append((head, length))
        }
        #expect(engine.receiveBatch() == 2)
        #expect(seen.map(\.0) == [0, 1] && seen.map(\.1) == [0, 0])
        #expect(engine.drops.receiveMalformed == 2)
        #expect(tap.hostReceives() == nil && engine.receivedFrames == 0)
    }
}
