import BulkheadSystem
import BulkheadVirtio
import Foundation
import Testing

/// `FileBlockStorage` on a file opened O_DIRECT (`--disk PATH,cache=none`): guest buffers at
/// any address and sector-granular transfers (which O_DIRECT refuses as they are) must read
/// and write exactly what buffered I/O would. Checked against an in-memory model with random
/// transfers, on a real file in /tmp.
@Suite("O_DIRECT block storage (real files)",
       .enabled(if: DirectFile.supported, "the file system under /tmp has no O_DIRECT; skipped"))
struct DirectStorageTests {
    @Test("the alignment probe sees O_DIRECT, and only on an O_DIRECT fd")
    func probe() throws {
        let file = try DirectFile(bytes: 1 << 20)
        let direct = try #require(FileBlockStorage.probeDirectAlignment(fd: file.directFD))
        #expect(direct == 512 || direct == 4096)
        let buffered = open(file.path, O_RDONLY)
        defer { close(buffered) }
        #expect(FileBlockStorage.probeDirectAlignment(fd: buffered) == nil)
    }

    @Test("random unaligned and sector-sized transfers match a model", arguments: [512, 4096])
    func randomTransfers(alignment: Int) throws {
        let size = 4 << 20
        let file = try DirectFile(bytes: size)
        let storage = try FileBlockStorage(file: FileDescriptor(owning: dup(file.directFD)), readOnly: false, directAlignment: alignment)
        var model = [UInt8](repeating: 0, count: size)
        var generator = SystemRandomNumberGenerator()
        // Room for a transfer larger than the bounce buffer, shifted by up to 15 bytes.
        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: (1 << 20) + 4096, alignment: 4096)
        defer { arena.deallocate() }
        for round in 0..<400 {
            let sectors = round % 50 == 0 ? Int.random(in: 600...2048, using: &generator) : Int.random(in: 1...24, using: &generator)
            let offset = Int.random(in: 0...(size / 512 - sectors), using: &generator) * 512
            let shift = Bool.random(using: &generator) ? 0 : Int.random(in: 1...15, using: &generator)
            let buffer = UnsafeMutableRawBufferPointer(rebasing: arena[shift..<(shift + sectors * 512)])
            if Bool.random(using: &generator) {
                for index in buffer.indices { buffer[index] = UInt8.random(in: 0...255, using: &generator) }
                try storage.write(UnsafeRawBufferPointer(buffer), at: UInt64(offset))
                model.replaceSubrange(offset..<(offset + buffer.count), with: buffer)
            } else {
                try storage.read(into: buffer, at: UInt64(offset))
                #expect(Array(buffer) == Array(model[offset..<(offset + buffer.count)]),
                        "round \(round): \(sectors) sectors at \(offset), memory shifted by \(shift)")
            }
        }
        try storage.flush()
        // What a buffered reader of the file sees afterwards is the model.
        let onDisk = try #require(FileManager.default.contents(atPath: file.path))
        #expect(Array(onDisk) == model)
    }
}

/// A zero-filled file in /tmp, open O_DIRECT, removed at the end.
final class DirectFile {
    /// O_DIRECT on x86-64 Linux (Swift's Glibc module does not export it).
    static let flag: Int32 = 0o40000
    let path: String
    let directFD: Int32

    static var supported: Bool { (try? DirectFile(bytes: 4096)) != nil }

    init(bytes: Int) throws {
        var template = Array("/tmp/bulkhead-direct-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw SystemError(call: "mkstemp", errno: Errno(rawValue: errno)) }
        path = String(cString: template)
        let sized = ftruncate(fd, off_t(bytes))
        close(fd)
        directFD = open(path, O_RDWR | Self.flag)
        guard sized == 0, directFD >= 0 else {
            unlink(path)
            throw SystemError(call: "open(\(path), O_DIRECT)", errno: Errno(rawValue: errno))
        }
    }

    deinit {
        close(directFD)
        unlink(path)
    }
}
