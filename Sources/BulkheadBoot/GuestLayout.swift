/// Where Bulkhead puts things in guest-physical memory.
///
/// ```
/// 0x0000_7000  hvm_start_info, memory map right after it
/// 0x0002_0000  kernel command line (NUL-terminated, at most 4 KiB)
/// 0x0009_fc00  reserved up to 1 MiB (EBDA, VGA hole, BIOS area)
/// 0x000e_0000  ACPI: RSDP, XSDT, MADT (found by rsdp_paddr or by the legacy scan)
/// 0x0010_0000  kernel image (PT_LOAD segments at their physical addresses)
/// ...          RAM up to min(memory, 3 GiB)
/// 0xc000_0000  MMIO hole up to 4 GiB: virtio-mmio at 0xd000_0000, IOAPIC, LAPIC
/// 0x1_0000_0000 the rest of RAM, if memory is larger than 3 GiB
/// ```
public enum GuestLayout {
    public static let startInfoAddress: UInt64 = 0x7000
    public static let memoryMapAddress: UInt64 = 0x7040
    public static let commandLineAddress: UInt64 = 0x2_0000
    public static let commandLineLimit = 4096
    public static let lowMemoryEnd: UInt64 = 0x9_fc00
    public static let acpiAddress: UInt64 = 0xe_0000
    public static let kernelMinimumAddress: UInt64 = 0x10_0000
    public static let mmioHoleStart: UInt64 = 0xc000_0000
    public static let mmioHoleEnd: UInt64 = 0x1_0000_0000
    /// Below this the test guest (and any real kernel) has no room to run.
    public static let minimumMemory: UInt64 = 16 << 20
    /// The largest guest Bulkhead will create.
    public static let maximumMemory: UInt64 = 1 << 40

    /// The RAM ranges (guest address, size) for `memorySize` bytes of guest memory: one below
    /// the MMIO hole and, for guests larger than 3 GiB, one above 4 GiB. Their host backing is
    /// contiguous in that order.
    public static func ramRanges(memorySize: UInt64) -> [(address: UInt64, size: UInt64)] {
        let low = min(memorySize, mmioHoleStart)
        var ranges = [(address: UInt64(0), size: low)]
        if memorySize > low { ranges.append((address: mmioHoleEnd, size: memorySize - low)) }
        return ranges
    }
}

/// One entry of the memory map handed to the guest (`hvm_memmap_table_entry`, E820 types).
public struct MemoryMapEntry: Sendable, Equatable {
    public enum Kind: UInt32, Sendable { case ram = 1, reserved = 2, acpi = 3 }
    public let address: UInt64
    public let size: UInt64
    public let kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address; self.size = size; self.kind = kind
    }

    /// The memory map of a guest with `memorySize` bytes of RAM.
    public static func standard(memorySize: UInt64) -> [MemoryMapEntry] {
        var map = [
            MemoryMapEntry(address: 0, size: GuestLayout.lowMemoryEnd, kind: .ram),
            MemoryMapEntry(address: GuestLayout.lowMemoryEnd,
                           size: GuestLayout.acpiAddress - GuestLayout.lowMemoryEnd, kind: .reserved),
            MemoryMapEntry(address: GuestLayout.acpiAddress,
                           size: GuestLayout.kernelMinimumAddress - GuestLayout.acpiAddress, kind: .acpi),
        ]
        for range in GuestLayout.ramRanges(memorySize: memorySize) {
            let start = max(range.address, GuestLayout.kernelMinimumAddress)
            let end = range.address + range.size
            if end > start { map.append(MemoryMapEntry(address: start, size: end - start, kind: .ram)) }
        }
        return map
    }
}
