import CLibFuzzer
import BulkheadSystem
import BulkheadVirtio

#if canImport(Glibc)
import Glibc
#endif

/// Fuzzes the virtqueue as a hostile guest (and a hostile predecessor domain) shapes it: the
/// descriptor table, the available ring and its heads, indirect tables, addresses and lengths,
/// loops, used.idx, and the recovery block a dead domain left behind. Then the blk domain's
/// serving loop runs over it: `recover()`, replay with `chain(head:)`, `popAvailable()`,
/// `BlockRequestEngine.execute` against a small disk (a memfd), `pushUsed`, notifications.
///
/// Input: a 16-byte header, then guest RAM from address 0 (64 KiB, the rest zero).
///   [0..<2]  queue size (raw: the queue validates it)
///   [2]      bit 0 EVENT_IDX, bit 1 indirect descriptors, bit 2 recovery block from RAM
///            (a predecessor's leftovers), bit 3 read-only disk
///   [3]      most pops to attempt (0 = 64)
///   [4..<6]  descriptor table address, [6..<8] available ring, [8..<10] used ring (guest addresses)
///   [10..<12] where in RAM the recovery block is copied from (bit 2)
/// Nothing may trap; the invariants the queue promises (no duplicate completion, used.idx moving
/// by one per completion) are checked.
private let ramSize = 64 << 10
private let diskSize = 64 << 10

private final class Rig: @unchecked Sendable {
    let ram: UnsafeMutableRawBufferPointer
    let recovery: UnsafeMutableRawBufferPointer
    let memory: GuestRAM
    let writable: BlockRequestEngine<FileBlockStorage>
    let readOnly: BlockRequestEngine<FileBlockStorage>

    init() {
        ram = .allocate(byteCount: ramSize, alignment: 4096)
        ram.initializeMemory(as: UInt8.self, repeating: 0)
        recovery = .allocate(byteCount: QueueRecoveryLayout.size, alignment: 4096)
        do {
            memory = try GuestRAM(
                base: ram.baseAddress!, mappingLength: ramSize,
                regions: [.init(guestAddress: 0, size: UInt64(ramSize), offsetInMapping: 0)])
            let disk = try FileDescriptor.memfd(name: "fuzz-disk", size: diskSize)
            let again = FileDescriptor(owning: try systemCall32("dup") { dup(disk.rawValue) })
            writable = BlockRequestEngine(
                storage: try FileBlockStorage(file: disk, readOnly: false), id: "fuzz-disk", maximumDiscardSegments: 4)
            readOnly = BlockRequestEngine(storage: try FileBlockStorage(file: again, readOnly: true), id: "fuzz-disk-ro")
        } catch {
            fatalError("fuzz rig: \(error)")
        }
    }
}

private let rig = Rig()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtqueue(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count >= 16 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: count)
    func u16(_ offset: Int) -> UInt16 { input.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian }
    let size = u16(0)
    let flags = input[2]
    let maxPops = input[3] == 0 ? 64 : Int(input[3])
    let configuration = QueueConfiguration(
        size: size, descriptorTable: UInt64(u16(4)), availableRing: UInt64(u16(6)), usedRing: UInt64(u16(8)),
        eventIndex: flags & 1 != 0, indirectDescriptors: flags & 2 != 0)

    let ram = rig.ram
    ram.initializeMemory(as: UInt8.self, repeating: 0)
    let image = UnsafeRawBufferPointer(rebasing: input[16...].prefix(ramSize))
    UnsafeMutableRawBufferPointer(rebasing: ram[..<image.count]).copyMemory(from: image)
    if flags & 4 != 0 {
        let from = Int(u16(10))
        for index in 0..<QueueRecoveryLayout.size { rig.recovery[index] = ram[(from + index) % ramSize] }
    } else {
        rig.recovery.initializeMemory(as: UInt8.self, repeating: 0)
    }
    let engine = flags & 8 != 0 ? rig.readOnly : rig.writable

    let queue: SplitVirtqueue
    let replay: [UInt16]
    do throws(VirtioError) {
        queue = try SplitVirtqueue(memory: rig.memory, configuration: configuration, recoveryBlock: rig.recovery)
        replay = try queue.recover()
    } catch {
        _ = error.description
        return 0
    }
    var completed = 0
    let usedBefore = queue.usedIndex
    func complete(_ head: UInt16, _ chain: DescriptorChain) {
        let completion = engine.execute(chain)
        precondition(UInt64(completion.usedLength) <= chain.writableLength, "used length beyond the writable buffers")
        do throws(VirtioError) {
            try queue.pushUsed(head: head, length: completion.usedLength)
            completed += 1
        } catch {
            preconditionFailure("completing head \(head) that was just popped: \(error)")
        }
        _ = queue.needsNotification()
    }
    func completeMalformed(_ error: VirtioError) {
        guard let head = error.head else { return }
        do throws(VirtioError) {
            try queue.pushUsed(head: head, length: 0)
            completed += 1
        } catch {
            preconditionFailure("completing malformed head \(head): \(error)")
        }
    }

    for head in replay {
        do throws(VirtioError) {
            complete(head, try queue.chain(head: head))
        } catch {
            // A replayed head's chain may be malformed now; it is still in flight: complete it.
            do throws(VirtioError) { try queue.pushUsed(head: head, length: 0); completed += 1 } catch {
                preconditionFailure("completing replayed head \(head): \(error)")
            }
        }
    }
    queue.disableNotifications()
    var pops = 0
    serving: while pops < maxPops {
        pops += 1
        do throws(VirtioError) {
            guard let chain = try queue.popAvailable() else {
                if queue.enableNotifications() { queue.disableNotifications(); continue }
                break
            }
            complete(chain.head, chain)
        } catch {
            if error.head != nil { completeMalformed(error); continue }
            switch error.code {
            case .headOutOfRange, .headInFlight: continue
            default: break serving
            }
        }
    }
    precondition(queue.usedIndex == usedBefore &+ UInt16(truncatingIfNeeded: completed), "used.idx does not count completions")
    precondition(queue.inFlightCount == 0, "a popped chain was left in flight")
    // Completing again must be refused: the used ring never holds a duplicate.
    for head in replay { precondition((try? queue.pushUsed(head: head, length: 0)) == nil, "duplicate completion accepted") }
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzVirtqueue(data, size) })
