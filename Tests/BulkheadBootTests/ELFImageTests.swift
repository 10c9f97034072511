import BulkheadTestSupport
import Testing
@testable import BulkheadBoot

@Suite("ELF/PVH loader")
struct ELFImageTests {
    @Test func parsesELF64WithPVHNote() throws {
        let image = try ELFImage.parse(ELFBuilder().build(), path: "k.elf")
        #expect(image.pvhEntry == 0x10_0000)
        #expect(image.segments.count == 1)
        #expect(image.segments[0].physicalAddress == 0x10_0000)
        #expect(image.segments[0].fileSize == 3)
        #expect(image.segments[0].memorySize == 0x2000)
    }

    @Test func parsesELF32AndEightBytePVHNote() throws {
        var builder = ELFBuilder()
        builder.is64 = false
        builder.machine = 3
        builder.pvhEntry = 0x10_0040
        builder.pvhNoteSize = 8
        let image = try ELFImage.parse(builder.build())
        #expect(image.pvhEntry == 0x10_0040)
    }

    @Test func reportsMissingPVHNote() throws {
        var builder = ELFBuilder()
        builder.pvhEntry = nil
        let image = try ELFImage.parse(builder.build(), path: "vmlinux")
        #expect(image.pvhEntry == nil)
        let error = #expect(throws: BootError.self) {
            try PVHBoot(image: image, fileBytes: builder.build(), path: "vmlinux", memorySize: 256 << 20, vcpus: 1, commandLine: "")
        }
        #expect(error?.code == .noPVHEntry)
        #expect(error?.description.contains("vmlinux") == true)
    }

    @Test func rejectsNonELF() {
        let error = #expect(throws: BootError.self) { try ELFImage.parse(Array("#!/bin/sh\necho hi\n".utf8), path: "/x/script") }
        #expect(error?.code == .notELF)
        #expect(error?.description.hasPrefix("/x/script: not an ELF file") == true)
    }

    @Test func rejectsOtherMachines() {
        var builder = ELFBuilder()
        builder.machine = 183 // AArch64
        #expect(throws: BootError.self) { try ELFImage.parse(builder.build()) }
    }

    @Test func rejectsEveryTruncation() {
        // Cutting the file anywhere must give an error, never a trap.
        let bytes = ELFBuilder().build()
        for length in 0..<bytes.count where length != bytes.count {
            #expect(throws: BootError.self) { try ELFImage.parse(Array(bytes.prefix(length))) }
        }
    }

    @Test func survivesCorruptedBytes() {
        // Flip each byte of the headers: parse may fail or succeed, but must not trap.
        let bytes = ELFBuilder().build()
        for index in 0..<min(bytes.count, 300) {
            for value: UInt8 in [0x00, 0xff, 0x7f] {
                var corrupt = bytes
                corrupt[index] = value
                _ = try? ELFImage.parse(corrupt)
            }
        }
    }

    @Test func rejectsNoteWithAbsurdSize() {
        var bytes = ELFBuilder().build()
        // The first note's namesz sits at the note offset: header (64) + 2 phdrs (112).
        bytes.replaceSubrange(176..<180, with: [0xff, 0xff, 0xff, 0x7f])
        #expect(throws: BootError.self) { try ELFImage.parse(bytes) }
    }
}

@Suite("PVH boot plan")
struct PVHBootTests {
    @Test func placesStartInfoCommandLineMemoryMapAndACPI() throws {
        let bytes = ELFBuilder().build()
        let image = try ELFImage.parse(bytes)
        let boot = try PVHBoot(image: image, fileBytes: bytes, path: nil, memorySize: 256 << 20, vcpus: 2,
                               commandLine: "workload=hello")
        #expect(boot.entry == 0x10_0000)
        #expect(boot.startInfoAddress == GuestLayout.startInfoAddress)

        let startInfo = try #require(boot.placements.first { $0.address == GuestLayout.startInfoAddress })
        let reader = ByteReader(bytes: Array(startInfo.bytes))
        #expect(reader.u32(0) == PVHBoot.startInfoMagic)
        #expect(reader.u32(4) == 1)
        // struct hvm_start_info: cmdline_paddr at 24, rsdp_paddr at 32, memmap_paddr at 40,
        // memmap_entries at 48; 56 bytes in all.
        #expect(startInfo.bytes.count == 56)
        #expect(reader.u64(16) == 0)
        #expect(reader.u64(24) == GuestLayout.commandLineAddress)
        #expect(reader.u64(32) == GuestLayout.acpiAddress)
        #expect(reader.u64(40) == GuestLayout.memoryMapAddress)
        #expect(reader.u32(48) == UInt32(boot.memoryMap.count))
        #expect(GuestLayout.memoryMapAddress >= GuestLayout.startInfoAddress + 56)

        let cmdline = try #require(boot.placements.first { $0.address == GuestLayout.commandLineAddress })
        #expect(Array(cmdline.bytes) == Array("workload=hello".utf8) + [0])

        let kernel = try #require(boot.placements.first { $0.address == 0x10_0000 })
        #expect(Array(kernel.bytes) == [0x90, 0x90, 0xf4])
        #expect(kernel.zeroFill == 0x2000 - 3)
    }

    @Test func refusesSegmentsBelowOneMiBOrInTheHole() throws {
        for paddr: UInt64 in [0x7000, 0xbfff_f000, 0xffff_ffff_ffff_f000] {
            var builder = ELFBuilder()
            builder.segments = [(paddr, [1, 2, 3], 0x2000)]
            let bytes = builder.build()
            let image = try ELFImage.parse(bytes)
            let error = #expect(throws: BootError.self) {
                try PVHBoot(image: image, fileBytes: bytes, path: "k", memorySize: 4 << 30, vcpus: 1, commandLine: "")
            }
            if case .segmentOutOfRange = error?.code {} else { Issue.record("expected segmentOutOfRange, got \(String(describing: error))") }
        }
    }

    @Test func refusesKernelLargerThanMemory() throws {
        var builder = ELFBuilder()
        builder.segments = [(0x10_0000, [1], 64 << 20)]
        let bytes = builder.build()
        let error = #expect(throws: BootError.self) {
            try PVHBoot(image: try ELFImage.parse(bytes), fileBytes: bytes, path: "k", memorySize: 32 << 20, vcpus: 1, commandLine: "")
        }
        #expect(error?.code == .memoryTooSmall(required: 65 << 20, given: 32 << 20))
    }

    @Test func refusesOverlongCommandLine() throws {
        let bytes = ELFBuilder().build()
        #expect(throws: BootError.self) {
            try PVHBoot(image: try ELFImage.parse(bytes), fileBytes: bytes, path: nil, memorySize: 256 << 20, vcpus: 1,
                        commandLine: String(repeating: "x", count: 5000))
        }
    }
}

@Suite("Memory map and layout")
struct MemoryMapTests {
    @Test func smallGuestHasLowRAMReservedAreaAndRAMFromOneMiB() {
        let map = MemoryMapEntry.standard(memorySize: 256 << 20)
        #expect(map == [
            MemoryMapEntry(address: 0, size: 0x9_fc00, kind: .ram),
            MemoryMapEntry(address: 0x9_fc00, size: 0xe_0000 - 0x9_fc00, kind: .reserved),
            MemoryMapEntry(address: 0xe_0000, size: 0x2_0000, kind: .acpi),
            MemoryMapEntry(address: 0x10_0000, size: (256 << 20) - 0x10_0000, kind: .ram),
        ])
        let ramEnd = map.filter { $0.kind == .ram }.map { $0.address + $0.size }.max()
        #expect(ramEnd == 256 << 20)
    }

    @Test func largeGuestSplitsAroundTheMMIOHole() {
        let size: UInt64 = 5 << 30
        let ranges = GuestLayout.ramRanges(memorySize: size)
        #expect(ranges.count == 2)
        #expect(ranges[0].address == 0 && ranges[0].size == 3 << 30)
        #expect(ranges[1].address == 4 << 30 && ranges[1].size == 2 << 30)
        let map = MemoryMapEntry.standard(memorySize: size)
        #expect(map.last == MemoryMapEntry(address: 4 << 30, size: 2 << 30, kind: .ram))
        #expect(map.filter { $0.kind == .ram }.reduce(0) { $0 + $1.size } == size - 0x10_0000 + 0x9_fc00)
    }

    @Test func parsesMemorySizes() {
        #expect(MemorySize.parse("256M") == 256 << 20)
        #expect(MemorySize.parse("256") == 256 << 20)
        #expect(MemorySize.parse("1G") == 1 << 30)
        #expect(MemorySize.parse("512MiB") == 512 << 20)
        #expect(MemorySize.parse("65536k") == 64 << 20)
        #expect(MemorySize.parse("") == nil)
        #expect(MemorySize.parse("12X") == nil)
        #expect(MemorySize.parse("-5M") == nil)
        #expect(MemorySize.parse("99999999999999999999G") == nil)
        #expect(MemorySize.describe(256 << 20) == "256 MiB")
    }
}

@Suite("ACPI tables")
struct ACPITablesTests {
    @Test func rsdpXsdtAndMADTAreConsistent() throws {
        let base: UInt64 = 0xe_0000
        let tables = ACPITables.build(vcpus: 4, base: base)
        let reader = ByteReader(bytes: tables)
        #expect(Array(tables[0..<8]) == Array("RSD PTR ".utf8))
        #expect(tables[0..<20].reduce(UInt8(0), &+) == 0)
        #expect(tables[0..<36].reduce(UInt8(0), &+) == 0)
        let xsdt = Int(try #require(reader.u64(24)) - base)
        #expect(Array(tables[xsdt..<(xsdt + 4)]) == Array("XSDT".utf8))
        let xsdtLength = Int(try #require(reader.u32(xsdt + 4)))
        #expect(tables[xsdt..<(xsdt + xsdtLength)].reduce(UInt8(0), &+) == 0)
        let madt = Int(try #require(reader.u64(xsdt + 36)) - base)
        #expect(Array(tables[madt..<(madt + 4)]) == Array("APIC".utf8))
        let madtLength = Int(try #require(reader.u32(madt + 4)))
        #expect(tables[madt..<(madt + madtLength)].reduce(UInt8(0), &+) == 0)

        // Walk the MADT entries: four enabled local APICs with ids 0...3, one IOAPIC.
        var cursor = madt + 44
        var apicIDs: [UInt8] = []
        var ioapics = 0
        while cursor < madt + madtLength {
            let type = tables[cursor], length = Int(tables[cursor + 1])
            #expect(length >= 2)
            if type == 0 { apicIDs.append(tables[cursor + 3]); #expect(reader.u32(cursor + 4) == 1) }
            if type == 1 { ioapics += 1; #expect(reader.u32(cursor + 4) == ACPITables.ioAPICAddress) }
            cursor += length
        }
        #expect(apicIDs == [0, 1, 2, 3])
        #expect(ioapics == 1)
    }
}
