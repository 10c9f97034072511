import BulkheadBoot
import BulkheadKVM
import BulkheadSystem

/// Guest RAM: one memfd, mapped once by the core and registered with KVM as one slot per RAM
/// range (below the MMIO hole and above 4 GiB). The memfd is what driver domains will map.
public final class GuestMemory: @unchecked Sendable {
    public struct Region: Sendable {
        public let guestAddress: GuestAddress
        public let size: UInt64
        /// Offset of the region in the memfd and in the host mapping.
        public let offset: UInt64
    }

    public let file: FileDescriptor
    let mapping: MemoryMapping
    public let regions: [Region]
    public let size: UInt64

    public init(size: UInt64) throws(CoreError) {
        do {
            file = try FileDescriptor.memfd(name: "bulkhead-guest-ram", size: Int(size))
            mapping = try MemoryMapping(sharing: file, length: Int(size))
        } catch {
            throw CoreError(.guestMemory("cannot allocate \(MemorySize.describe(size)) of guest memory: \(error)"), underlying: error)
        }
        var offset: UInt64 = 0
        var regions: [Region] = []
        for range in GuestLayout.ramRanges(memorySize: size) {
            regions.append(Region(guestAddress: GuestAddress(range.address), size: range.size, offset: offset))
            offset += range.size
        }
        self.regions = regions
        self.size = size
    }

    /// Registers every region with `vm`.
    public func register(with vm: VirtualMachine) throws(KVMError) {
        for (slot, region) in regions.enumerated() {
            // SAFETY: region.offset + region.size <= mapping.length by construction.
            try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: region.guestAddress, size: Int(region.size),
                                       hostAddress: mapping.base + Int(region.offset))
        }
    }

    /// The host view of `[address, address+length)`, or nil unless the range lies wholly
    /// inside one RAM region. Every guest-supplied address goes through here.
    public func buffer(at address: GuestAddress, length: UInt64) -> UnsafeMutableRawBufferPointer? {
        for region in regions {
            let start = region.guestAddress.rawValue
            guard address.rawValue >= start else { continue }
            let within = address.rawValue - start
            guard within <= region.size, length <= region.size - within else { continue }
            // SAFETY: [offset+within, offset+within+length) is inside this region, which is
            // inside the mapping.
            return UnsafeMutableRawBufferPointer(start: mapping.base + Int(region.offset + within), count: Int(length))
        }
        return nil
    }

    /// Copies `bytes` to `address` and zero-fills `zeroFill` bytes after them.
    public func write<C: Collection<UInt8>>(_ bytes: C, at address: GuestAddress, zeroFill: UInt64 = 0) throws(CoreError) {
        let total = UInt64(bytes.count) + zeroFill
        guard let target = buffer(at: address, length: total) else {
            throw CoreError(.guestMemory("\(total) bytes at \(address) do not fit in guest RAM"))
        }
        target.copyBytes(from: bytes)
        if zeroFill > 0 {
            // SAFETY: target holds bytes.count + zeroFill bytes.
            (target.baseAddress! + bytes.count).initializeMemory(as: UInt8.self, repeating: 0, count: Int(zeroFill))
        }
    }
}
