import BulkheadCore
import BulkheadSystem
import Testing

@Suite("Guest memory and system layer")
struct GuestMemoryTests {
    @Test func boundsEveryAccess() throws {
        let memory = try GuestMemory(size: 32 << 20)
        #expect(memory.buffer(at: .init(0), length: 32 << 20) != nil)
        #expect(memory.buffer(at: .init((32 << 20) - 4), length: 4) != nil)
        #expect(memory.buffer(at: .init((32 << 20) - 4), length: 5) == nil)
        #expect(memory.buffer(at: .init(UInt64.max - 2), length: 8) == nil)
        #expect(memory.buffer(at: .init(0), length: UInt64.max) == nil)
        try memory.write([1, 2, 3], at: .init(0x1000), zeroFill: 5)
        let view = try #require(memory.buffer(at: .init(0x1000), length: 8))
        #expect(Array(view) == [1, 2, 3, 0, 0, 0, 0, 0])
        #expect(throws: CoreError.self) { try memory.write([1], at: .init(32 << 20)) }
    }

    @Test func largeGuestHasARegionAboveFourGiB() throws {
        // 4 GiB + 64 MiB of memfd is sparse: nothing is touched but two pages.
        let memory = try GuestMemory(size: (4 << 30) + (64 << 20))
        #expect(memory.regions.count == 2)
        #expect(memory.buffer(at: .init(0xc000_0000), length: 1) == nil)
        let high = try #require(memory.buffer(at: .init(1 << 32), length: 4096))
        high[0] = 0x5a
        #expect(memory.buffer(at: .init((1 << 32) + (1 << 30) + (64 << 20) - 1), length: 1) != nil)
    }

    @Test func syscallErrorsNameTheCall() {
        let error = #expect(throws: SystemError.self) { _ = try FileDescriptor.open("/nonexistent/bulkhead", flags: 0) }
        #expect(error?.errno == .noEntry)
        #expect(error?.description.contains("open(/nonexistent/bulkhead)") == true)
    }
}
