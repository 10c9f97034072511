import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif
import BulkheadBoot

/// Fuzzes the kernel loader: `ELFImage.parse` over the bytes of a "kernel file" (ELF32/ELF64
/// headers, program headers, PT_NOTE walking for the Xen PVH entry), then, for an image that
/// parses, the `PVHBoot` plan that decides what goes where in guest RAM (segment ranges,
/// `hvm_start_info`, memory map, command line, ACPI tables). Every placement must lie inside the
/// file and inside guest RAM.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzELFLoader(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : count))
    let image: ELFImage
    do throws(BootError) {
        image = try ELFImage.parse(bytes, path: "fuzz.elf")
    } catch {
        _ = "\(error)"
        return 0
    }
    for segment in image.segments {
        precondition(segment.fileSize <= segment.memorySize && segment.fileOffset + segment.fileSize <= UInt64(bytes.count),
                     "segment outside the file")
    }
    // Memory and vCPUs from the last byte, so that the fuzzer explores the plan's limits too.
    let last = Int(bytes.last ?? 0)
    let memorySize = UInt64(16 + (last & 0x3f) * 64) << 20
    let vcpus = 1 + last % 254
    do throws(BootError) {
        let plan = try PVHBoot(image: image, fileBytes: bytes, path: "fuzz.elf", memorySize: memorySize, vcpus: vcpus,
                               commandLine: "console=ttyS0")
        for placement in plan.placements {
            let end = placement.address + UInt64(placement.bytes.count) + placement.zeroFill
            precondition(end <= memorySize, "a placement at 0x\(String(placement.address, radix: 16)) ends past guest RAM")
        }
    } catch {
        _ = "\(error)"
    }
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzELFLoader(data, size) })
