@testable import BulkheadVirtio
import Testing

@Suite("GuestRAM")
struct GuestRAMTests {
    @Test func bulkheadLayoutSplitsAroundTheMMIOHole() {
        #expect(GuestRAM.regions(memorySize: 1 << 30) == [.init(guestAddress: 0, size: 1 << 30, offsetInMapping: 0)])
        #expect(GuestRAM.regions(memorySize: 5 << 30) == [
            .init(guestAddress: 0, size: 3 << 30, offsetInMapping: 0),
            .init(guestAddress: 4 << 30, size: 2 << 30, offsetInMapping: 3 << 30),
        ])
    }

    @Test func everyRangeMustLieInOneRegion() throws {
        // A 64 KiB mapping standing for two regions: [0, 32 KiB) and [1 MiB, 1 MiB + 32 KiB).
        let mapping = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 4096)
        defer { mapping.deallocate() }
        let ram = try GuestRAM(base: mapping.baseAddress!, mappingLength: mapping.count, regions: [
            .init(guestAddress: 0, size: 32 << 10, offsetInMapping: 0),
            .init(guestAddress: 1 << 20, size: 32 << 10, offsetInMapping: 32 << 10),
        ])
        #expect(ram.buffer(at: 0, length: 32 << 10)?.baseAddress == mapping.baseAddress)
        #expect(ram.buffer(at: (32 << 10) - 1, length: 1) != nil)
        #expect(ram.buffer(at: (32 << 10) - 1, length: 2) == nil)
        #expect(ram.buffer(at: 32 << 10, length: 0) != nil)  // empty range at the end is fine
        #expect(ram.buffer(at: 32 << 10, length: 1) == nil)  // the hole
        #expect(ram.buffer(at: (1 << 20) + 16, length: 16)?.baseAddress == mapping.baseAddress! + (32 << 10) + 16)
        #expect(ram.buffer(at: (1 << 20) - 8, length: 16) == nil)  // straddles hole and region
        #expect(ram.buffer(at: UInt64.max, length: 1) == nil)
        #expect(ram.buffer(at: UInt64.max - 3, length: 8) == nil)
        #expect(ram.buffer(at: 8, length: UInt64.max) == nil)
        #expect(ram.buffer(at: 8, length: UInt64.max - 7) == nil)
    }

    @Test func regionsOutsideTheMappingAreRefused() throws {
        let mapping = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { mapping.deallocate() }
        #expect(throws: VirtioError.self) {
            try GuestRAM(base: mapping.baseAddress!, mappingLength: 4096, regions: [.init(guestAddress: 0, size: 4097, offsetInMapping: 0)])
        }
        #expect(throws: VirtioError.self) {
            try GuestRAM(base: mapping.baseAddress!, mappingLength: 4096, regions: [.init(guestAddress: 0, size: 16, offsetInMapping: UInt64.max - 8)])
        }
        #expect(throws: VirtioError.self) {
            try GuestRAM(base: mapping.baseAddress!, mappingLength: 4096, regions: [.init(guestAddress: UInt64.max - 8, size: 16, offsetInMapping: 0)])
        }
    }
}
