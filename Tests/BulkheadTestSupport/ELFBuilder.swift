
/// Builds small ELF images in memory, so the loader is tested on exactly the bytes we mean.
public struct ELFBuilder {
    public init() {}
    public var is64 = true
    public var machine: UInt16 = 62
    public var type: UInt16 = 2
    public var segments: [(paddr: UInt64, data: [UInt8], memsz: UInt64)] = [(0x10_0000, [0x90, 0x90, 0xf4], 0x2000)]
    public var pvhEntry: UInt64? = 0x10_0000
    public var pvhNoteSize = 4
    public var extraNotesBefore: [(name: String, type: UInt32, desc: [UInt8])] = [("GNU", 3, [1, 2, 3, 4, 5, 6, 7, 8])]

    public func build() -> [UInt8] {
        let headerSize = is64 ? 64 : 52
        let phentsize = is64 ? 56 : 32
        let phnum = segments.count + 1
        var notes: [UInt8] = []
        func align4(_ bytes: inout [UInt8]) { while bytes.count % 4 != 0 { bytes.append(0) } }
        func note(_ name: String, _ type: UInt32, _ desc: [UInt8]) {
            let nameBytes = Array(name.utf8) + [0]
            notes.append(le: UInt32(nameBytes.count)); notes.append(le: UInt32(desc.count)); notes.append(le: type)
            notes += nameBytes; align4(&notes); notes += desc; align4(&notes)
        }
        for extra in extraNotesBefore { note(extra.name, extra.type, extra.desc) }
        if let pvhEntry {
            var desc: [UInt8] = []
            if pvhNoteSize == 8 { desc.append(le: pvhEntry) } else { desc.append(le: UInt32(truncatingIfNeeded: pvhEntry)) }
            while desc.count < pvhNoteSize { desc.append(0) }
            note("Xen", 18, Array(desc.prefix(pvhNoteSize)))
        }
        var dataOffset = headerSize + phnum * phentsize
        let noteOffset = dataOffset
        dataOffset += notes.count
        var segmentOffsets: [Int] = []
        for segment in segments { segmentOffsets.append(dataOffset); dataOffset += segment.data.count }

        var out: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        out.append(le: type); out.append(le: machine); out.append(le: UInt32(1))
        if is64 {
            out.append(le: UInt64(0x10_0000)); out.append(le: UInt64(headerSize)); out.append(le: UInt64(0))
        } else {
            out.append(le: UInt32(0x10_0000)); out.append(le: UInt32(headerSize)); out.append(le: UInt32(0))
        }
        out.append(le: UInt32(0)); out.append(le: UInt16(headerSize)); out.append(le: UInt16(phentsize))
        out.append(le: UInt16(phnum)); out.append(le: UInt16(0)); out.append(le: UInt16(0)); out.append(le: UInt16(0))
        func phdr(_ type: UInt32, _ offset: Int, _ paddr: UInt64, _ filesz: Int, _ memsz: UInt64) {
            if is64 {
                out.append(le: type); out.append(le: UInt32(5)); out.append(le: UInt64(offset)); out.append(le: paddr)
                out.append(le: paddr); out.append(le: UInt64(filesz)); out.append(le: memsz); out.append(le: UInt64(4))
            } else {
                out.append(le: type); out.append(le: UInt32(offset)); out.append(le: UInt32(truncatingIfNeeded: paddr))
                out.append(le: UInt32(truncatingIfNeeded: paddr)); out.append(le: UInt32(filesz))
                out.append(le: UInt32(truncatingIfNeeded: memsz)); out.append(le: UInt32(5)); out.append(le: UInt32(4))
            }
        }
        phdr(4, noteOffset, 0, notes.count, UInt64(notes.count))
        for (segment, offset) in zip(segments, segmentOffsets) {
            phdr(1, offset, segment.paddr, segment.data.count, segment.memsz)
        }
        out += notes
        for segment in segments { out += segment.data }
        return out
    }
}

extension Array where Element == UInt8 {
    mutating func append<T: FixedWidthInteger>(le value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

/// Tiny PVH kernels in 32-bit machine code, for tests that need an exact guest behaviour.
public enum MiniKernel {
    /// `out %al, %dx` of each byte of `text` to COM1.
    static func print(_ text: String) -> [UInt8] {
        var code: [UInt8] = [0x66, 0xba, 0xf8, 0x03] // mov $0x3f8, %dx
        for byte in text.utf8 { code += [0xb0, byte, 0xee] } // mov $byte, %al; out %al, %dx
        return code
    }

    static let spin: [UInt8] = [0xeb, 0xfe] // 1: jmp 1b

    /// Prints `text`, then writes `code` to the debug-exit port.
    public static func exit(code: UInt8, printing text: String = "") -> [UInt8] {
        image(print(text) + [0x66, 0xba, 0x01, 0x05, 0xb0, code, 0xee] + spin)
    }

    /// Prints `text`, then asks the i8042 to pulse the reset line.
    public static func reset(printing text: String = "") -> [UInt8] {
        image(print(text) + [0xb0, 0xfe, 0xe6, 0x64] + spin)
    }

    /// Executes `ud2` with no usable IDT: #UD, then #DF, then a triple fault.
    public static func tripleFault() -> [UInt8] {
        image([0x0f, 0x0b] + spin)
    }

    static func image(_ code: [UInt8]) -> [UInt8] {
        var builder = ELFBuilder()
        builder.segments = [(0x10_0000, code, UInt64(code.count))]
        return builder.build()
    }
}
