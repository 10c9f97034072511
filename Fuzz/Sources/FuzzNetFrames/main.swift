import CLibFuzzer
import BulkheadSystem
import BulkheadVirtio

#if canImport(Glibc)
import Glibc
#endif

/// Fuzzes the net domain's frame path, `NetFrameEngine` (what `bulkhead-domain net` runs), as
/// a hostile guest and a hostile network shape it: guest RAM is a memfd mapped as the domain
/// maps it, holding descriptor tables, available rings and indirect tables from the input
/// (loops, out-of-bounds buffers, absurd lengths, write-only where read-only is expected and
/// the reverse); the tap is one end of a `socketpair(AF_UNIX, SOCK_SEQPACKET)` (whole frames,
/// non-blocking, as a tap), and the input's frames arrive on it: empty, runts, up to 66 KiB.
/// The engine recovers both queues (from recovery blocks a predecessor left, when the input
/// says so), serves rounds of transmit and receive batches, may be restarted midway (a new
/// domain over the same memory, recovery blocks and tap), and finally drains transmitq.
///
/// Input: a 21-byte header, frame specifications, then guest RAM from address 0 (128 KiB, the
/// rest zero).
///   [0] receiveq size, [1] transmitq size: 1 << (byte % 9)
///   [2] bit 0 EVENT_IDX, bit 1 indirect descriptors, bits 2/3 receiveq/transmitq recovery
///       block copied from RAM (a predecessor's leftovers)
///   [3] low nibble: rounds - 1; high nibble: the round at which the domain restarts (0: never)
///   [4..<10] receiveq descriptor table, available ring, used ring (u16 LE guest addresses,
///       aligned down), [10..<16] the same for transmitq
///   [16..<18], [18..<20] where in RAM the two recovery blocks are copied from
///   [20] frames (low nibble), then 4 bytes each: round (low nibble), bit 4: 1 KiB longer;
///       u16 LE length; a seed for the contents
///
/// Checked: nothing traps or touches memory outside guest RAM (ASan); every byte of guest RAM
/// the engine changed lies in a used ring or in a device-writable buffer of a receive chain it
/// popped; a transmit completion is 0 and each frame on the wire is the chain's bytes after the
/// header, once, and only when counted as sent; a receive completion is never longer than the
/// chain's writable buffers and holds the header and the next frame that fit; every chain
/// popped is completed or held (receive buffers), unless the engine reported a broken queue;
/// transmitq ends with nothing available left (or a broken queue).
private let ramSize = 128 << 10
private let headerSize = 21

private final class Rig: @unchecked Sendable {
    let file: FileDescriptor
    let mapping: MemoryMapping
    let ram: UnsafeMutableRawBufferPointer
    let shadow: UnsafeMutableRawBufferPointer
    let recovery: [UnsafeMutableRawBufferPointer]
    let memory: GuestRAM
    /// Where a frame from the wire is read to.
    let frame: UnsafeMutableRawBufferPointer
    /// Frame contents: the frame with seed s is `pattern[s..<s + length]`.
    let pattern: UnsafeMutableRawBufferPointer

    init() {
        do {
            file = try FileDescriptor.memfd(name: "fuzz-guest", size: ramSize)
            mapping = try MemoryMapping(sharing: file, length: ramSize)
            ram = mapping.buffer
            memory = try GuestRAM(base: mapping.base, memorySize: UInt64(ramSize))
        } catch {
            fatalError("fuzz rig: \(error)")
        }
        shadow = .allocate(byteCount: ramSize, alignment: 4096)
        recovery = (0..<2).map { _ in .allocate(byteCount: QueueRecoveryLayout.size, alignment: 4096) }
        frame = .allocate(byteCount: 128 << 10, alignment: 16)
        pattern = .allocate(byteCount: 70 << 10, alignment: 16)
        for index in 0..<pattern.count { pattern[index] = UInt8(truncatingIfNeeded: index &* 7 &+ index >> 8) }
    }
}

private let rig = Rig()
/// FUZZ_TRACE=1: one line per input with what the engine did (to see what a seed reaches).
private let trace = getenv("FUZZ_TRACE") != nil

/// A frame the host side sent: its length and the seed of its contents.
private struct SentFrame {
    var length: Int
    var seed: UInt8
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: rig.pattern[Int(seed)..<(Int(seed) + length)]) }
}

/// The state of one input's run, seen by the completion observer.
private final class Run {
    let tap: (engine: Int32, host: Int32)
    var sentFrames: [SentFrame] = []
    var transmittedSeen: UInt64 = 0
    var receiveOversizeSeen: UInt64 = 0
    var receivedCompletions: UInt64 = 0
    var usedRings: [Range<Int>] = []
    /// Where the engine may write in this round.
    var allowed: [Range<Int>] = []

    init(tap: (engine: Int32, host: Int32)) { self.tap = tap }

    deinit {
        close(tap.engine)
        close(tap.host)
    }

    /// Where a guest buffer lies in RAM; it must lie wholly inside it.
    func range(of buffer: GuestBuffer) -> Range<Int> {
        guard let base = buffer.bytes.baseAddress, buffer.bytes.count > 0 else { return 0..<0 }
        let offset = base - rig.ram.baseAddress!
        require(offset >= 0 && offset + buffer.bytes.count <= ramSize, "a guest buffer outside guest RAM")
        require(UInt64(offset) == buffer.guestAddress, "a guest buffer not where the guest put it")
        return offset..<(offset + buffer.bytes.count)
    }

    func allow(_ chain: DescriptorChain) {
        for buffer in chain.writable { allowed.append(range(of: buffer)) }
    }

    /// A new round: only the used rings and the buffers the engine holds may change.
    func beginRound(_ engine: NetFrameEngine) {
        allowed = usedRings
        for chain in engine.receiveBuffers { allow(chain) }
        rig.shadow.copyMemory(from: UnsafeRawBufferPointer(rig.ram))
    }

    /// Every byte that changed since the round began lies where the engine may write.
    func endRound(_ engine: NetFrameEngine) {
        for chain in engine.receiveBuffers { allow(chain) }
        let words = ramSize / 8
        let now = UnsafeRawPointer(rig.ram.baseAddress!).assumingMemoryBound(to: UInt64.self)
        let before = UnsafeRawPointer(rig.shadow.baseAddress!).assumingMemoryBound(to: UInt64.self)
        for word in 0..<words where now[word] != before[word] {
            for index in (8 * word)..<(8 * word + 8) where rig.ram[index] != rig.shadow[index] {
                require(allowed.contains { $0.contains(index) },
                             "guest RAM at \(index) changed outside the used rings and receive buffers")
            }
        }
    }

    /// The next frame waiting on the host side, if any.
    func hostReceive() -> Int? {
        let n = recv(tap.host, rig.frame.baseAddress, rig.frame.count, Int32(MSG_DONTWAIT))
        return n < 0 ? nil : n
    }

    /// The next non-empty frame sent (empty frames are read as "nothing waiting").
    func nextFrame() -> SentFrame? {
        while !sentFrames.isEmpty {
            let next = sentFrames.removeFirst()
            if next.length > 0 { return next }
        }
        return nil
    }

    /// Forgets the frames `engine` dropped as too large since the last call.
    func consumeDropped(_ engine: NetFrameEngine) {
        let oversize = engine.drops.receiveOversize - receiveOversizeSeen
        receiveOversizeSeen = engine.drops.receiveOversize
        for _ in 0..<oversize {
            require(nextFrame() != nil, "a frame dropped that was never sent")
        }
    }

    func observe(_ engine: NetFrameEngine, queue: Int, head: UInt16, chain: DescriptorChain?, length: UInt32) {
        if queue == NetFrameEngine.transmitQueue {
            require(length == 0, "a transmit completion of \(length) bytes")
            let sent = engine.transmittedFrames > transmittedSeen
            transmittedSeen = engine.transmittedFrames
            guard let chain, sent else {
                require(hostReceive() == nil, "a frame on the wire from a chain not counted as sent")
                return
            }
            guard let count = hostReceive() else { fatalError("a frame counted as sent is not on the wire") }
            require(UInt64(count) + UInt64(NetFrameEngine.headerLength) == chain.readableLength,
                         "\(count) bytes on the wire from a \(chain.readableLength)-byte chain")
            var skip = NetFrameEngine.headerLength
            var at = 0
            for buffer in chain.readable {
                let from = min(skip, buffer.bytes.count)
                skip -= from
                let n = buffer.bytes.count - from
                require(memcmp(rig.frame.baseAddress! + at, buffer.bytes.baseAddress! + from, n) == 0,
                             "the frame on the wire differs from the chain near byte \(at)")
                at += n
            }
            return
        }
        guard let chain else {
            require(length == 0, "a malformed receive chain completed with \(length) bytes")
            return
        }
        require(UInt64(length) <= chain.writableLength, "used length \(length) beyond \(chain.writableLength) writable bytes")
        allow(chain)
        guard length > 0 else { return }
        receivedCompletions += 1
        require(length > UInt32(NetFrameEngine.headerLength), "a received frame of no bytes")
        // Which frame: the next one, after those dropped as too large and the empty ones.
        consumeDropped(engine)
        guard let frame = nextFrame() else { fatalError("a frame received that was never sent") }
        require(Int(length) - NetFrameEngine.headerLength == frame.length,
                     "received \(Int(length) - NetFrameEngine.headerLength) bytes of a \(frame.length)-byte frame")
        // The contents, unless the guest gave overlapping buffers (then it sees what it asked for).
        let ranges = chain.writable.map(range(of:)).filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        guard zip(ranges, ranges.dropFirst()).allSatisfy({ $0.upperBound <= $1.lowerBound }) else { return }
        var expected = [UInt8](repeating: 0, count: NetFrameEngine.headerLength)
        expected[10] = 1
        expected += frame.bytes
        var at = 0
        for buffer in chain.writable where at < expected.count {
            let n = min(buffer.bytes.count, expected.count - at)
            let same = expected.withUnsafeBytes { memcmp($0.baseAddress! + at, buffer.bytes.baseAddress!, n) == 0 }
            require(same, "the received frame differs from the one sent near byte \(at)")
            at += n
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNetFrames(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count >= headerSize else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: count)
    func u16(_ offset: Int) -> UInt16 { input.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian }
    let flags = input[2]
    let rounds = Int(input[3] & 15) + 1
    let restartRound = Int(input[3] >> 4)
    func configuration(_ queue: Int) -> QueueConfiguration {
        let at = 4 + 6 * queue
        return QueueConfiguration(
            size: 1 << (UInt16(input[queue]) % 9), descriptorTable: UInt64(u16(at) & ~15),
            availableRing: UInt64(u16(at + 2) & ~1), usedRing: UInt64(u16(at + 4) & ~3),
            eventIndex: flags & 1 != 0, indirectDescriptors: flags & 2 != 0)
    }
    var frames: [(round: Int, frame: SentFrame)] = []
    var offset = headerSize
    for _ in 0..<Int(input[20] & 15) where offset + 4 <= count {
        let spec = input[offset]
        let length = Int(u16(offset + 1)) + (spec & 0x10 != 0 ? 1024 : 0)
        frames.append((Int(spec & 15), SentFrame(length: length, seed: input[offset + 3])))
        offset += 4
    }

    rig.ram.initializeMemory(as: UInt8.self, repeating: 0)
    let image = UnsafeRawBufferPointer(rebasing: input[offset...].prefix(ramSize))
    UnsafeMutableRawBufferPointer(rebasing: rig.ram[..<image.count]).copyMemory(from: image)
    for queue in 0..<2 {
        let block = rig.recovery[queue]
        if flags & (4 << queue) != 0 {
            let from = Int(u16(16 + 2 * queue))
            for index in 0..<QueueRecoveryLayout.size { block[index] = rig.ram[(from + index) % ramSize] }
        } else {
            block.initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    var fds: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
        fatalError("socketpair: \(errno)")
    }
    let run = Run(tap: (fds[0], fds[1]))
    let configurations = [configuration(NetFrameEngine.receiveQueue), configuration(NetFrameEngine.transmitQueue)]
    run.usedRings = configurations.map { c in
        let start = Int(c.usedRing)
        return start..<(start + 6 + 8 * Int(c.size))
    }

    /// A domain process: new queues over the same memory and recovery blocks, recovered.
    func startDomain() -> NetFrameEngine? {
        let engine = NetFrameEngine(tap: run.tap.engine)
        engine.completionObserver = { [unowned run, unowned engine] queue, head, chain, length in
            run.observe(engine, queue: queue, head: head, chain: chain, length: length)
        }
        run.transmittedSeen = 0
        run.receiveOversizeSeen = 0
        do throws(VirtioError) {
            let receive = try SplitVirtqueue(memory: rig.memory, configuration: configurations[0], recoveryBlock: rig.recovery[0])
            let transmit = try SplitVirtqueue(memory: rig.memory, configuration: configurations[1], recoveryBlock: rig.recovery[1])
            run.beginRound(engine)
            _ = try engine.attach(receive: receive, transmit: transmit)
            run.endRound(engine)
            receive.disableNotifications()
            transmit.disableNotifications()
        } catch {
            _ = error.description // a queue the domain refuses (reported to the core)
            return nil
        }
        return engine
    }

    guard var engine = startDomain() else { return 0 }
    for round in 0..<rounds {
        if round > 0 && round == restartRound {
            run.consumeDropped(engine) // the dying domain's drops
            guard let next = startDomain() else { return 0 }
            engine = next
        }
        for (at, frame) in frames where at == round {
            let sent = send(run.tap.host, frame.bytes.baseAddress, frame.length, Int32(MSG_DONTWAIT))
            if sent == frame.length { run.sentFrames.append(frame) }
        }
        run.beginRound(engine)
        let received = engine.receivedFrames
        let sent = engine.transmitBatch()
        let filled = engine.receiveBatch()
        require(sent <= NetFrameEngine.batchLimit && filled <= NetFrameEngine.batchLimit, "a batch beyond its limit")
        require(engine.receivedFrames - received <= UInt64(filled), "frames received without completions")
        run.endRound(engine)
        if engine.broken != nil { return 0 } // reported; the domain exits
        // What the domain does around a batch: interrupt decisions, asking for kicks.
        run.beginRound(engine)
        _ = engine.transmit?.needsNotification()
        _ = engine.receive?.needsNotification()
        _ = engine.transmit?.enableNotifications()
        if engine.receiveBuffers.isEmpty { _ = engine.receive?.enableNotifications() }
        engine.transmit?.disableNotifications()
        engine.receive?.disableNotifications()
        run.endRound(engine)
    }

    defer {
        if trace {
            print("tx \(engine.transmittedFrames) frames \(engine.transmittedBytes) B, rx \(engine.receivedFrames) frames "
                  + "\(engine.receivedBytes) B, held \(engine.receiveBuffers.count), drops \(engine.drops), broken \(engine.broken.map { "\($0)" } ?? "no")")
        }
    }
    // The end: transmitq drained, every popped chain completed or held.
    run.beginRound(engine)
    var drains = 0
    while engine.transmitBatch() > 0 {
        drains += 1
        require(drains <= 1024 / NetFrameEngine.batchLimit + 2, "transmitq never drains")
    }
    run.endRound(engine)
    if engine.broken != nil { return 0 }
    guard let transmit = engine.transmit, let receive = engine.receive else { fatalError("engine lost its queues") }
    require(transmit.inFlightCount == 0, "a transmit chain popped and never completed")
    require(!transmit.hasAvailable, "transmitq left with chains available")
    require(receive.inFlightCount == engine.receiveBuffers.count, "a receive chain popped and neither completed nor held")
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzNetFrames(data, size) })

/// An invariant. Its message is printed in a release build too (a precondition's is not).
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError(message()) }
}
