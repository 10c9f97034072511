import CLibFuzzer
import BulkheadChannel
import BulkheadProtocol
import BulkheadSystem

#if canImport(Glibc)
import Glibc
#endif

/// Fuzzes the core's receive path of a control channel: a hostile domain owns the bytes of the
/// domain→core ring and its producer index.
///
/// Input: `[warm-up frames: u8][warm-up payload: u16 LE][producer delta: u64 LE][ring bytes...]`.
/// Per input the core resets the rings (as between generations); a well-behaved domain channel
/// first sends `warm-up frames` Log messages of about `warm-up payload` bytes, which the core
/// receives, so that the hostile part starts anywhere in the ring (wrap-around included); then
/// the ring bytes are written from the core's consumer position on (wrapping) and the producer
/// index is set to consumer + delta. The core then receives until the ring is empty or it reports
/// an error (which the supervisor turns into killing the domain). Nothing may trap.
///
/// The two header offsets below are the documented layout (proto/README.md, ControlRegionLayout):
/// what a domain writes into its mapping of the region.
private let domainToCoreProducerOffset = 0x1C0
private let domainToCoreConsumerOffset = 0x200

private final class Rig: @unchecked Sendable {
    let coreRegion: ControlRegion
    let domainRegion: ControlRegion
    let core: ControlChannel
    let toCore: FileDescriptor
    let toDomain: FileDescriptor
    /// The hostile domain's own mapping of the region.
    let raw: UnsafeMutableRawPointer
    var generation: UInt64 = 0

    init() {
        do {
            coreRegion = try ControlRegion.create(name: "fuzz-control")
            domainRegion = try ControlRegion(mapping: try Self.duplicate(coreRegion.file))
            toCore = try FileDescriptor.eventfd(nonBlocking: true)
            toDomain = try FileDescriptor.eventfd(nonBlocking: true)
            core = ControlChannel(
                region: coreRegion, side: .core, incomingDoorbell: try Self.duplicate(toCore),
                outgoingDoorbell: try Self.duplicate(toDomain), spinNanoseconds: 0)
        } catch {
            fatalError("fuzz rig: \(error)")
        }
        let mapped = mmap(nil, ControlRegionLayout.size, PROT_READ | PROT_WRITE, MAP_SHARED, coreRegion.file.rawValue, 0)
        guard let mapped, mapped != MAP_FAILED else { fatalError("fuzz rig: mmap failed") }
        raw = mapped
    }

    static func duplicate(_ fd: borrowing FileDescriptor) throws -> FileDescriptor {
        FileDescriptor(owning: try systemCall32("dup") { dup(fd.rawValue) })
    }

    /// A fresh domain side over the reset region (its private indices start at 0).
    func domainChannel() throws -> ControlChannel {
        ControlChannel(
            region: domainRegion, side: .domain, incomingDoorbell: try Self.duplicate(toDomain),
            outgoingDoorbell: try Self.duplicate(toCore), spinNanoseconds: 0)
    }
}

private let rig = Rig()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlChannel(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count >= 11 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: count)
    let warmupFrames = Int(input[0] & 7)
    let warmupPayload = 1 + Int(input.loadUnaligned(fromByteOffset: 1, as: UInt16.self).littleEndian % 16_000)
    let delta = input.loadUnaligned(fromByteOffset: 3, as: UInt64.self).littleEndian
    let ringBytes = UnsafeRawBufferPointer(rebasing: input[11...])

    rig.generation &+= 1
    rig.core.resetRings(generation: rig.generation)
    let capacity = ControlRegionLayout.ringCapacity
    var tail: UInt64 = 0
    do {
        let domain = try rig.domainChannel()
        let log = ControlMessage.log(.init(level: .info, message: String(repeating: "w", count: warmupPayload)))
        let frame = UInt64((4 + log.encodedSize + 7) & ~7)
        for _ in 0..<warmupFrames {
            try domain.send(log)
            guard let received = try rig.core.tryReceive(), received == log else {
                fatalError("warm-up frame not received intact")
            }
            tail &+= frame
        }
    } catch {
        fatalError("warm-up: \(error)")
    }
    // The hostile domain: ring bytes from the consumer position on, then the producer index.
    let ring = rig.raw + ControlRegionLayout.domainToCoreRingOffset
    let start = Int(tail % UInt64(capacity))
    for (index, byte) in ringBytes.prefix(capacity).enumerated() {
        ring.storeBytes(of: byte, toByteOffset: (start + index) % capacity, as: UInt8.self)
    }
    precondition(rig.raw.load(fromByteOffset: domainToCoreConsumerOffset, as: UInt64.self) == tail)
    rig.raw.storeBytes(of: tail &+ delta, toByteOffset: domainToCoreProducerOffset, as: UInt64.self)

    for _ in 0..<64 {
        do throws(ChannelError) {
            guard let message = try rig.core.tryReceive() else { break }
            _ = message.name
        } catch {
            _ = "\(error)"
            break
        }
    }
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzControlChannel(data, size) })
