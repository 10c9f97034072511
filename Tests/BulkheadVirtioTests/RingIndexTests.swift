@testable import BulkheadVirtio
import CBulkheadLinux
import Foundation
import Synchronization
import Testing

/// The ring indices the guest moves while a domain reads them must be read in one access.
/// Found in full-suite runs: a debug build read avail.idx with a byte-wise copy, the guest moved
/// it from 0x1DFF to 0x1E00 in between, the domain saw 0x1EFF ("avail.idx is 271 ahead, queue
/// size 256"), declared its queue broken and was restarted.
@Suite("Split virtqueue: ring indices shared with a running guest")
struct RingIndexTests {
    @Test("avail.idx read while a guest vCPU moves it is never a mix of two values")
    func availIndexIsReadInOneAccess() throws {
        let guest = try FakeGuest(size: 256)
        let (queue, _) = try guest.queue()
        let index = UInt(bitPattern: guest.ram.baseAddress! + Int(FakeGuest.availableRing) + 2)
        let shared = Shared()
        // The guest: avail.idx back and forth across a byte boundary, 0x00FF ↔ 0x0100. A read
        // mixing the two (0x01FF or 0x0000) is a value the guest never wrote.
        let vcpu = Thread {
            let field = UnsafeMutableRawPointer(bitPattern: index)!
            while !shared.done.load(ordering: .relaxed) {
                for _ in 0..<4096 {
                    bh_atomic_store_relaxed_u16(field, 0x00FF)
                    bh_atomic_store_relaxed_u16(field, 0x0100)
                }
                shared.writes.add(8192, ordering: .relaxed)
            }
        }
        bh_atomic_store_relaxed_u16(UnsafeMutableRawPointer(bitPattern: index)!, 0x00FF)
        vcpu.start()
        defer { shared.done.store(true, ordering: .relaxed) }
        var reads = 0
        var torn: Set<UInt16> = []
        let deadline = Date().addingTimeInterval(1.0)
        while Date() < deadline {
            for _ in 0..<4096 {
                let value = queue.loadAvailIndex()
                if value != 0x00FF && value != 0x0100 { torn.insert(value) }
            }
            reads += 4096
        }
        #expect(torn.isEmpty, "values the guest never wrote: \(torn.map { "0x" + String($0, radix: 16) })")
        #expect(shared.writes.load(ordering: .relaxed) > 0 && reads > 0)
    }
}

/// What the test and its writer thread share.
private final class Shared: Sendable {
    let done = Atomic<Bool>(false)
    let writes = Atomic<Int>(0)
}
