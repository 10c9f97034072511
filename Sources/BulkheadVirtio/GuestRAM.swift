/// A view of guest-physical memory inside a driver domain: the guest memfd mapped at one host
/// base, cut into regions. It owns nothing (the domain keeps the `MemoryMapping` alive for as
/// long as any `GuestRAM`, `SplitVirtqueue` or `DescriptorChain` built over it is used).
///
/// The guest writes this memory concurrently and is hostile: every address and length it
/// supplies goes through `buffer(at:length:)`, and a value read from it is read once and then
/// checked as a local copy.
public struct GuestRAM: @unchecked Sendable {
    /// One guest-physical range and where it lies in the mapping.
    public struct Region: Sendable, Equatable {
        public let guestAddress: UInt64
        public let size: UInt64
        public let offsetInMapping: UInt64

        public init(guestAddress: UInt64, size: UInt64, offsetInMapping: UInt64) {
            self.guestAddress = guestAddress
            self.size = size
            self.offsetInMapping = offsetInMapping
        }
    }

    /// Where RAM stops below 4 GiB (the MMIO hole is [3 GiB, 4 GiB)).
    public static let lowMemoryEnd: UInt64 = 3 << 30
    /// Where RAM resumes above the MMIO hole.
    public static let highMemoryStart: UInt64 = 4 << 30

    /// Bulkhead's layout for `memorySize` bytes of RAM: [0, min(size, 3 GiB)) at offset 0 and,
    /// when larger, [4 GiB, 4 GiB + rest) at offset 3 GiB. Mirrors `GuestLayout.ramRanges`.
    public static func regions(memorySize: UInt64) -> [Region] {
        let low = min(memorySize, lowMemoryEnd)
        var regions = [Region(guestAddress: 0, size: low, offsetInMapping: 0)]
        if memorySize > low {
            regions.append(Region(guestAddress: highMemoryStart, size: memorySize - low, offsetInMapping: low))
        }
        return regions
    }

    public let base: UnsafeMutableRawPointer
    public let mappingLength: UInt64
    public let regions: [Region]

    /// A view of `regions` inside the mapping `[base, base + mappingLength)`. Every region must
    /// lie inside the mapping and inside the guest-physical address space.
    public init(base: UnsafeMutableRawPointer, mappingLength: Int, regions: [Region]) throws(VirtioError) {
        guard mappingLength >= 0 else { throw VirtioError(.invalidGuestRAM, "negative mapping length \(mappingLength)") }
        for region in regions {
            let (end, overflow) = region.offsetInMapping.addingReportingOverflow(region.size)
            let (_, guestOverflow) = region.guestAddress.addingReportingOverflow(region.size)
            guard !overflow, !guestOverflow, end <= UInt64(mappingLength) else {
                throw VirtioError(.invalidGuestRAM,
                                  "region \(region.size) bytes at \(region.guestAddress) (mapping offset \(region.offsetInMapping)) does not fit the \(mappingLength)-byte mapping")
            }
        }
        self.base = base
        self.mappingLength = UInt64(mappingLength)
        self.regions = regions
    }

    /// Bulkhead's layout (`regions(memorySize:)`) over a mapping of the whole memfd.
    public init(base: UnsafeMutableRawPointer, memorySize: UInt64) throws(VirtioError) {
        guard memorySize <= UInt64(Int.max) else { throw VirtioError(.invalidGuestRAM, "memory size \(memorySize) too large") }
        try self.init(base: base, mappingLength: Int(memorySize), regions: Self.regions(memorySize: memorySize))
    }

    /// The host view of guest-physical `[address, address + length)`, or nil unless the whole
    /// range lies inside one region. Overflow-safe for any `address` and `length`.
    public func buffer(at address: UInt64, length: UInt64) -> UnsafeMutableRawBufferPointer? {
        for region in regions {
            guard address >= region.guestAddress else { continue }
            let within = address - region.guestAddress
            guard within <= region.size, length <= region.size - within else { continue }
            // SAFETY: offsetInMapping + within + length <= offsetInMapping + size <= mappingLength
            // (checked in init), so the view lies inside the mapping; both fit in Int because
            // the mapping length came from an Int.
            return UnsafeMutableRawBufferPointer(start: base + Int(region.offsetInMapping + within), count: Int(length))
        }
        return nil
    }
}
