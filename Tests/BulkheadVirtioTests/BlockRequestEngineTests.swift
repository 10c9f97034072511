import BulkheadSystem
@testable import BulkheadVirtio
import Glibc
import Testing

/// A real temporary file as the disk, removed at the end.
private final class TemporaryDisk {
    let path: String
    let storage: FileBlockStorage

    init(bytes: Int, readOnly: Bool = false, pattern: (Int) -> UInt8 = { UInt8(truncatingIfNeeded: $0 / 512 + 1) }) throws {
        var template = Array("/tmp/bulkhead-blk-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        #expect(fd >= 0)
        path = String(cString: template)
        let file = FileDescriptor(owning: fd)
        var content = [UInt8](repeating: 0, count: bytes)
        for index in 0..<bytes { content[index] = pattern(index) }
        try content.withUnsafeBytes { try file.writeAll($0) }
        storage = try FileBlockStorage(file: file, readOnly: readOnly)
    }

    deinit { unlink(path) }

    func contents(at offset: Int, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try bytes.withUnsafeMutableBytes { try storage.file.pread(into: $0, at: Int64(offset)) }
        return Array(bytes.prefix(n))
    }

    /// Bytes of the file on disk (allocated blocks), to see a punched hole.
    var allocatedBytes: Int {
        var st = stat()
        _ = fstat(storage.file.rawValue, &st)
        return Int(st.st_blocks) * 512
    }
}

private let header = FakeGuest.dataArea
private let buffer = FakeGuest.dataArea + 0x1000
private let status = FakeGuest.dataArea + 0x10_0000

/// The fake guest's virtio-blk driver: writes a request, makes it available, and lets the
/// device side pop it, execute it and complete it.
private func run(_ guest: FakeGuest, _ queue: SplitVirtqueue, _ engine: BlockRequestEngine<FileBlockStorage>,
                 type: UInt32, sector: UInt64, data: [UInt8] = [], dataLength: UInt32 = 0, dataWritable: Bool = true,
                 sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: UInt8, used: UInt32, data: [UInt8]) {
    guest.store(type, at: header)
    guest.store(UInt32(0), at: header + 4)
    guest.store(sector, at: header + 8)
    guest.write(data, at: buffer)
    guest.write([0xEE], at: status)
    var buffers: [(address: UInt64, length: UInt32, writable: Bool)] = [(header, 16, false)]
    if dataLength > 0 { buffers.append((buffer, dataLength, dataWritable)) }
    buffers.append((status, 1, true))
    let head = guest.submit(buffers, first: 0)
    let chain = try #require(try queue.popAvailable(), sourceLocation: sourceLocation)
    let completion = engine.execute(chain)
    try queue.pushUsed(head: head, length: completion.usedLength)
    #expect(guest.usedElement(guest.usedIndex &- 1).length == completion.usedLength, sourceLocation: sourceLocation)
    #expect(completion.status?.rawValue == guest.bytes(at: status, count: 1)[0], sourceLocation: sourceLocation)
    return (guest.bytes(at: status, count: 1)[0], completion.usedLength, guest.bytes(at: buffer, count: Int(dataLength)))
}

@Suite("virtio-blk request engine (real files)")
struct BlockRequestEngineTests {
    @Test func readWriteFlushAgainstARealFile() throws {
        let disk = try TemporaryDisk(bytes: 64 * 512)
        let engine = BlockRequestEngine(storage: disk.storage, id: "bulkhead-disk-0")
        #expect(engine.capacity == 64)
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()

        // IN: sectors 3 and 4 carry the pattern 4, 5.
        let read = try run(guest, queue, engine, type: 0, sector: 3, dataLength: 1024)
        #expect(read.status == 0 && read.used == 1025)
        #expect(read.data == [UInt8](repeating: 4, count: 512) + [UInt8](repeating: 5, count: 512))

        // OUT: write sectors 10..11, read them back from the file and through the device.
        let written = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let write = try run(guest, queue, engine, type: 1, sector: 10, data: written, dataLength: 1024, dataWritable: false)
        #expect(write.status == 0 && write.used == 1)
        #expect(try disk.contents(at: 10 * 512, count: 1024) == written)
        #expect(try disk.contents(at: 9 * 512, count: 512) == [UInt8](repeating: 10, count: 512))  // neighbours untouched
        #expect(try disk.contents(at: 12 * 512, count: 512) == [UInt8](repeating: 13, count: 512))
        guest.write([UInt8](repeating: 0, count: 1024), at: buffer)
        #expect(try run(guest, queue, engine, type: 0, sector: 10, dataLength: 1024).data == written)

        // The last sector is readable; one past it is not.
        #expect(try run(guest, queue, engine, type: 0, sector: 63, dataLength: 512).status == 0)
        #expect(try run(guest, queue, engine, type: 0, sector: 63, dataLength: 1024).status == 1)
        #expect(try run(guest, queue, engine, type: 1, sector: 64, data: [1], dataLength: 512, dataWritable: false).status == 1)
        #expect(try run(guest, queue, engine, type: 0, sector: UInt64.max, dataLength: 512).status == 1)
        #expect(try run(guest, queue, engine, type: 0, sector: UInt64.max / 512 + 1, dataLength: 512).status == 1)
        // Not a multiple of the sector size.
        #expect(try run(guest, queue, engine, type: 0, sector: 0, dataLength: 100).status == 1)

        // FLUSH.
        let flush = try run(guest, queue, engine, type: 4, sector: 0)
        #expect(flush.status == 0 && flush.used == 1)
    }

    @Test func getIDAndUnsupportedTypes() throws {
        let disk = try TemporaryDisk(bytes: 8 * 512)
        let engine = BlockRequestEngine(storage: disk.storage, id: "bulkhead-disk-0")
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        let id = try run(guest, queue, engine, type: 8, sector: 0, dataLength: 20)
        #expect(id.status == 0 && id.used == 21)
        #expect(id.data == Array("bulkhead-disk-0".utf8) + [0, 0, 0, 0, 0])
        let long = BlockRequestEngine(storage: disk.storage, id: "an-identifier-longer-than-twenty-bytes")
        #expect(try run(guest, queue, long, type: 8, sector: 0, dataLength: 20).data == Array("an-identifier-longer".utf8))
        for type: UInt32 in [2, 3, 5, 99, UInt32.max] {
            let result = try run(guest, queue, engine, type: type, sector: 0, dataLength: 512)
            #expect(result.status == 2 && result.used == 1, "type \(type)")
        }
    }

    @Test func readOnlyDiskRefusesWrites() throws {
        let disk = try TemporaryDisk(bytes: 8 * 512, readOnly: true)
        let engine = BlockRequestEngine(storage: disk.storage, id: "ro")
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        let write = try run(guest, queue, engine, type: 1, sector: 0, data: [9, 9, 9], dataLength: 512, dataWritable: false)
        #expect(write.status == 1)
        #expect(try disk.contents(at: 0, count: 3) == [1, 1, 1])
        #expect(try run(guest, queue, engine, type: 0, sector: 0, dataLength: 512).status == 0)
    }

    @Test func discardPunchesAHoleAndWriteZeroesWritesZeros() throws {
        let disk = try TemporaryDisk(bytes: 1 << 20)
        let engine = BlockRequestEngine(storage: disk.storage, id: "d", maximumDiscardSegments: 2)
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        func segment(sector: UInt64, count: UInt32, flags: UInt32 = 0) -> [UInt8] {
            var bytes: [UInt8] = []
            withUnsafeBytes(of: sector.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: count.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: flags.littleEndian) { bytes += $0 }
            return bytes
        }
        let before = disk.allocatedBytes
        let discard = try run(guest, queue, engine, type: 11, sector: 0, data: segment(sector: 256, count: 512), dataLength: 16, dataWritable: false)
        #expect(discard.status == 0)
        #expect(try disk.contents(at: 256 * 512, count: 512 * 512).allSatisfy { $0 == 0 })
        #expect(try disk.contents(at: 255 * 512, count: 1) == [0])  // pattern byte 256 truncates to 0
        #expect(try disk.contents(at: 254 * 512, count: 1) == [255])
        #expect(disk.allocatedBytes <= before)
        let zeroes = try run(guest, queue, engine, type: 13, sector: 0,
                             data: segment(sector: 1, count: 2) + segment(sector: 5, count: 1, flags: 1), dataLength: 32, dataWritable: false)
        #expect(zeroes.status == 0)
        #expect(try disk.contents(at: 512, count: 1024).allSatisfy { $0 == 0 })
        #expect(try disk.contents(at: 3 * 512, count: 1) == [4])
        #expect(try disk.contents(at: 5 * 512, count: 512).allSatisfy { $0 == 0 })
        // Out of range, bad flags, too many segments, bad length.
        #expect(try run(guest, queue, engine, type: 11, sector: 0, data: segment(sector: 2047, count: 2), dataLength: 16, dataWritable: false).status == 1)
        #expect(try run(guest, queue, engine, type: 11, sector: 0, data: segment(sector: 0, count: 1, flags: 1), dataLength: 16, dataWritable: false).status == 2)
        #expect(try run(guest, queue, engine, type: 11, sector: 0, data: [UInt8](repeating: 0, count: 48), dataLength: 48, dataWritable: false).status == 2)
        #expect(try run(guest, queue, engine, type: 11, sector: 0, data: [], dataLength: 15, dataWritable: false).status == 2)
    }

    @Test("DISCARD and WRITE_ZEROES the driver did not negotiate are UNSUPP and change nothing")
    func unnegotiatedDiscardIsUnsupported() throws {
        let disk = try TemporaryDisk(bytes: 1 << 20)
        let engine = BlockRequestEngine(storage: disk.storage, id: "u", driverFeatures: 1 << 32 | 1 << 9)
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        var segment: [UInt8] = []
        withUnsafeBytes(of: UInt64(0).littleEndian) { segment += $0 }
        withUnsafeBytes(of: UInt32(8).littleEndian) { segment += $0 }
        withUnsafeBytes(of: UInt32(0).littleEndian) { segment += $0 }
        let before = try disk.contents(at: 0, count: 8 * 512)
        for type: UInt32 in [11, 13] {
            let result = try run(guest, queue, engine, type: type, sector: 0, data: segment, dataLength: 16, dataWritable: false)
            #expect(result.status == 2, "type \(type)")  // VIRTIO_BLK_S_UNSUPP
        }
        #expect(try disk.contents(at: 0, count: 8 * 512) == before)
    }

    @Test func malformedRequests() throws {
        let disk = try TemporaryDisk(bytes: 8 * 512)
        let engine = BlockRequestEngine(storage: disk.storage, id: "m")
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        // A header of 8 bytes: IOERR in the status byte.
        guest.write([0xEE], at: status)
        guest.submit([(header, 8, false), (status, 1, true)])
        var completion = engine.execute(try #require(try queue.popAvailable()))
        #expect(completion.status == .ioError && completion.usedLength == 1)
        #expect(guest.bytes(at: status, count: 1) == [1])
        try queue.pushUsed(head: 0, length: completion.usedLength)
        // No writable byte at all: nothing written, used length 0.
        guest.store(UInt32(0), at: header)
        guest.submit([(header, 16, false), (buffer, 512, false)])
        completion = engine.execute(try #require(try queue.popAvailable()))
        #expect(completion.status == nil && completion.usedLength == 0)
        try queue.pushUsed(head: 0, length: 0)
        // The header split across descriptors and the status inside the data buffer: any framing.
        guest.store(UInt32(0), at: header)
        guest.store(UInt64(2), at: header + 8)
        guest.submit([(header, 4, false), (header + 4, 12, false), (buffer, 513, true)])
        completion = engine.execute(try #require(try queue.popAvailable()))
        #expect(completion.status == .ok && completion.usedLength == 513)
        #expect(guest.bytes(at: buffer, count: 512) == [UInt8](repeating: 3, count: 512))
        #expect(guest.bytes(at: buffer + 512, count: 1) == [0])
    }

    @Test func replayedWriteIsIdempotent() throws {
        // A write popped, executed, and replayed after a crash leaves the disk as one write would.
        let disk = try TemporaryDisk(bytes: 16 * 512)
        let engine = BlockRequestEngine(storage: disk.storage, id: "r")
        let guest = try FakeGuest()
        var (queue, _) = try guest.queue()
        let payload = [UInt8](repeating: 0xAB, count: 512)
        guest.store(UInt32(1), at: header)
        guest.store(UInt64(7), at: header + 8)
        guest.write(payload, at: buffer)
        guest.submit([(header, 16, false), (buffer, 512, false), (status, 1, true)])
        _ = engine.execute(try #require(try queue.popAvailable()))
        // crash before completion
        let replay: [UInt16]
        (queue, replay) = try guest.queue()
        #expect(replay == [0])
        let completion = engine.execute(try queue.chain(head: 0))
        try queue.pushUsed(head: 0, length: completion.usedLength)
        #expect(guest.usedIndex == 1)
        #expect(try disk.contents(at: 7 * 512, count: 512) == payload)
        #expect(try disk.contents(at: 8 * 512, count: 1) == [9])
    }
}
