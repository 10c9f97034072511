/// A loadable ELF kernel image: its `PT_LOAD` segments and its PVH entry point.
///
/// Parses ELF32 and ELF64 little-endian x86 executables. Every offset and size read from the
/// file is bounds-checked against the file: a kernel image is untrusted input.
public struct ELFImage: Sendable, Equatable {
    /// One `PT_LOAD` segment: `fileSize` bytes from `fileOffset` placed at `physicalAddress`,
    /// followed by `memorySize - fileSize` zero bytes.
    public struct Segment: Sendable, Equatable {
        public let physicalAddress: UInt64
        public let fileOffset: UInt64
        public let fileSize: UInt64
        public let memorySize: UInt64
    }

    public let segments: [Segment]
    /// The 32-bit PVH entry point from the `XEN_ELFNOTE_PHYS32_ENTRY` note, if present.
    public let pvhEntry: UInt32?
    /// `e_entry` (for ELF64 kernels, the 64-bit entry).
    public let entry: UInt64

    static let xenNoteName = "Xen"
    static let xenElfnotePhys32Entry: UInt32 = 18

    /// Parses `bytes`, naming `path` in errors.
    public static func parse(_ bytes: [UInt8], path: String? = nil) throws(BootError) -> ELFImage {
        let reader = ByteReader(bytes: bytes)
        guard bytes.count >= 16, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw BootError(.notELF, path: path)
        }
        let elfClass = bytes[4]
        guard elfClass == 1 || elfClass == 2 else { throw BootError(.unsupportedELF("class \(elfClass)"), path: path) }
        guard bytes[5] == 1 else { throw BootError(.unsupportedELF("big-endian"), path: path) }
        let is64 = elfClass == 2
        let headerSize = is64 ? 64 : 52
        guard bytes.count >= headerSize else { throw BootError(.truncated("the ELF header"), path: path) }
        let machine = reader.u16(18)!
        guard machine == 62 || machine == 3 else {
            throw BootError(.unsupportedELF("machine \(machine) is not x86 (EM_X86_64 = 62, EM_386 = 3)"), path: path)
        }
        let type = reader.u16(16)!
        guard type == 2 || type == 3 else { throw BootError(.unsupportedELF("type \(type) is not an executable"), path: path) }

        let entry: UInt64
        let phoff: UInt64
        let phentsize: Int
        let phnum: Int
        if is64 {
            entry = reader.u64(24)!; phoff = reader.u64(32)!
            phentsize = Int(reader.u16(54)!); phnum = Int(reader.u16(56)!)
        } else {
            entry = UInt64(reader.u32(24)!); phoff = UInt64(reader.u32(28)!)
            phentsize = Int(reader.u16(42)!); phnum = Int(reader.u16(44)!)
        }
        guard phentsize >= (is64 ? 56 : 32) else { throw BootError(.unsupportedELF("program header size \(phentsize)"), path: path) }
        guard phnum > 0 else { throw BootError(.unsupportedELF("no program headers"), path: path) }
        guard phoff <= UInt64(bytes.count), UInt64(phnum * phentsize) <= UInt64(bytes.count) - phoff else {
            throw BootError(.truncated("the program header table"), path: path)
        }

        var segments: [Segment] = []
        var pvhEntry: UInt32?
        for index in 0..<phnum {
            let base = Int(phoff) + index * phentsize
            let pType = reader.u32(base)!
            let offset, paddr, filesz, memsz: UInt64
            if is64 {
                offset = reader.u64(base + 8)!; paddr = reader.u64(base + 24)!
                filesz = reader.u64(base + 32)!; memsz = reader.u64(base + 40)!
            } else {
                offset = UInt64(reader.u32(base + 4)!); paddr = UInt64(reader.u32(base + 12)!)
                filesz = UInt64(reader.u32(base + 16)!); memsz = UInt64(reader.u32(base + 20)!)
            }
            guard offset <= UInt64(bytes.count), filesz <= UInt64(bytes.count) - offset else {
                throw BootError(.truncated("segment \(index) (offset \(offset), \(filesz) bytes)"), path: path)
            }
            switch pType {
            case 1: // PT_LOAD
                guard filesz <= memsz else {
                    throw BootError(.unsupportedELF("segment \(index) has a file size larger than its memory size"), path: path)
                }
                if memsz > 0 {
                    segments.append(Segment(physicalAddress: paddr, fileOffset: offset, fileSize: filesz, memorySize: memsz))
                }
            case 4: // PT_NOTE
                if let found = try findPVHEntry(reader, offset: Int(offset), size: Int(filesz), path: path) {
                    pvhEntry = found
                }
            default:
                break
            }
        }
        guard !segments.isEmpty else { throw BootError(.unsupportedELF("no PT_LOAD segments"), path: path) }
        return ELFImage(segments: segments, pvhEntry: pvhEntry, entry: entry)
    }

    /// Walks the notes in `[offset, offset+size)` for the Xen PHYS32_ENTRY note.
    static func findPVHEntry(_ reader: ByteReader, offset: Int, size: Int, path: String?) throws(BootError) -> UInt32? {
        var cursor = offset
        let end = offset + size
        func align4(_ v: Int) -> Int { (v + 3) & ~3 }
        while cursor + 12 <= end {
            let nameSize = Int(reader.u32(cursor)!)
            let descSize = Int(reader.u32(cursor + 4)!)
            let type = reader.u32(cursor + 8)!
            let nameStart = cursor + 12
            guard nameSize <= end - nameStart else { throw BootError(.truncated("a note name"), path: path) }
            let descStart = nameStart + align4(nameSize)
            guard descStart <= end, descSize <= end - descStart else { throw BootError(.truncated("a note"), path: path) }
            let name = reader.string(nameStart, count: nameSize)
            if name == xenNoteName && type == xenElfnotePhys32Entry {
                switch descSize {
                case 4: return reader.u32(descStart)
                case 8: return reader.u64(descStart).map { UInt32(truncatingIfNeeded: $0) }
                default: throw BootError(.unsupportedELF("PVH entry note of \(descSize) bytes"), path: path)
                }
            }
            cursor = descStart + align4(descSize)
        }
        return nil
    }
}

/// Little-endian reads from a byte array that return nil instead of trapping past its end.
struct ByteReader {
    let bytes: [UInt8]

    func u16(_ at: Int) -> UInt16? { value(at, 2).map { UInt16($0) } }
    func u32(_ at: Int) -> UInt32? { value(at, 4).map { UInt32($0) } }
    func u64(_ at: Int) -> UInt64? { value(at, 8) }

    private func value(_ at: Int, _ size: Int) -> UInt64? {
        guard at >= 0, at <= bytes.count - size else { return nil }
        var result: UInt64 = 0
        for i in (0..<size).reversed() { result = result << 8 | UInt64(bytes[at + i]) }
        return result
    }

    /// The bytes at `[at, at+count)` up to the first NUL, as UTF-8.
    func string(_ at: Int, count: Int) -> String {
        guard at >= 0, count >= 0, at <= bytes.count - count else { return "" }
        let slice = bytes[at..<(at + count)].prefix(while: { $0 != 0 })
        return String(decoding: slice, as: UTF8.self)
    }
}
