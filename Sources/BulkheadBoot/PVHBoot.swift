/// Everything a PVH boot puts into guest memory, and where the boot vCPU starts.
///
/// The PVH boot protocol (Xen's `arch/x86/include/asm/xen/hvm/start_info`, as Linux, QEMU and
/// Firecracker use it): the vCPU starts in 32-bit protected mode with paging off, flat code
/// and data segments, at the address of the `XEN_ELFNOTE_PHYS32_ENTRY` note, with `%ebx`
/// pointing at `struct hvm_start_info`.
public struct PVHBoot: Sendable {
    /// Bytes to copy into guest memory: `bytes` at `address`, then `zeroFill` zero bytes.
    public struct Placement: Sendable {
        public let address: UInt64
        public let bytes: ArraySlice<UInt8>
        public let zeroFill: UInt64
    }

    public static let startInfoMagic: UInt32 = 0x336e_c578

    public let placements: [Placement]
    /// Where the boot vCPU starts (32-bit protected mode).
    public let entry: UInt32
    /// What `%ebx` holds at entry: the address of `hvm_start_info`.
    public let startInfoAddress: UInt64
    public let memoryMap: [MemoryMapEntry]

    /// Plans a PVH boot of the kernel `image` (the bytes of the file at `path`) into a guest
    /// of `memorySize` bytes with `vcpus` CPUs.
    public init(
        image: ELFImage, fileBytes: [UInt8], path: String?, memorySize: UInt64, vcpus: Int, commandLine: String
    ) throws(BootError) {
        guard let entry = image.pvhEntry else { throw BootError(.noPVHEntry, path: path) }
        let lowRAMEnd = min(memorySize, GuestLayout.mmioHoleStart)

        var required = GuestLayout.minimumMemory
        var placements: [Placement] = []
        for segment in image.segments {
            let (end, overflow) = segment.physicalAddress.addingReportingOverflow(segment.memorySize)
            guard !overflow, segment.physicalAddress >= GuestLayout.kernelMinimumAddress, end <= GuestLayout.mmioHoleStart else {
                throw BootError(.segmentOutOfRange(
                    "a PT_LOAD segment at 0x\(String(segment.physicalAddress, radix: 16)) of \(segment.memorySize) bytes "
                        + "lies outside guest RAM between 1 MiB and 3 GiB"), path: path)
            }
            required = max(required, (end + 0xfffff) & ~0xfffff)
            let start = Int(segment.fileOffset)
            placements.append(Placement(
                address: segment.physicalAddress,
                bytes: fileBytes[start..<(start + Int(segment.fileSize))],
                zeroFill: segment.memorySize - segment.fileSize))
        }
        guard memorySize >= required, lowRAMEnd >= required else {
            throw BootError(.memoryTooSmall(required: required, given: memorySize), path: path)
        }

        var cmdline = Array(commandLine.utf8)
        guard cmdline.count < GuestLayout.commandLineLimit else {
            throw BootError(.commandLineTooLong(length: cmdline.count, limit: GuestLayout.commandLineLimit - 1))
        }
        cmdline.append(0)

        let map = MemoryMapEntry.standard(memorySize: memorySize)
        var mapBytes: [UInt8] = []
        for item in map {
            mapBytes.append(le: item.address)
            mapBytes.append(le: item.size)
            mapBytes.append(le: item.kind.rawValue)
            mapBytes.append(le: UInt32(0))
        }

        // struct hvm_start_info, version 1.
        var startInfo: [UInt8] = []
        startInfo.append(le: Self.startInfoMagic)
        startInfo.append(le: UInt32(1)) // version
        startInfo.append(le: UInt32(0)) // flags
        startInfo.append(le: UInt32(0)) // nr_modules
        startInfo.append(le: UInt64(0)) // modlist_paddr
        startInfo.append(le: GuestLayout.commandLineAddress)
        startInfo.append(le: GuestLayout.acpiAddress) // rsdp_paddr
        startInfo.append(le: GuestLayout.memoryMapAddress)
        startInfo.append(le: UInt32(map.count))
        startInfo.append(le: UInt32(0)) // reserved

        placements.append(Placement(address: GuestLayout.startInfoAddress, bytes: startInfo[...], zeroFill: 0))
        placements.append(Placement(address: GuestLayout.memoryMapAddress, bytes: mapBytes[...], zeroFill: 0))
        placements.append(Placement(address: GuestLayout.commandLineAddress, bytes: cmdline[...], zeroFill: 0))
        placements.append(Placement(
            address: GuestLayout.acpiAddress, bytes: ACPITables.build(vcpus: vcpus, base: GuestLayout.acpiAddress)[...], zeroFill: 0))

        self.placements = placements
        self.entry = entry
        self.startInfoAddress = GuestLayout.startInfoAddress
        self.memoryMap = map
    }
}
