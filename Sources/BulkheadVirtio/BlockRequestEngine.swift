/// Executes virtio-blk requests (virtio 1.2 5.2) against a `BlockStorage`. Never throws: every
/// failure becomes a status for the guest. A request that is executed twice (a replay after a
/// crash) has the same effect as once: reads and writes are at fixed offsets.
public struct BlockRequestEngine<Storage: BlockStorage>: @unchecked Sendable {
    /// What to put in the used element, and the status written to the guest.
    public struct Completion: Sendable, Equatable {
        /// The status written (nil when the chain had no device-writable byte to write it to).
        public let status: VirtioBlockRequest.Status?
        /// The bytes written into the chain's device-writable buffers: the used `len`.
        public let usedLength: UInt32
    }

    /// One `struct virtio_blk_discard_write_zeroes`.
    public static var discardSegmentLength: Int { 16 }

    public let storage: Storage
    /// The GET_ID answer: at most 20 bytes, zero-padded.
    public let id: [UInt8]
    /// `max_discard_seg` / `max_write_zeroes_seg` as advertised in the config space.
    public let maximumDiscardSegments: Int
    /// `max_discard_sectors` / `max_write_zeroes_sectors`: bounds the work of one request.
    public let maximumDiscardSectors: UInt32

    /// VIRTIO_BLK_F_DISCARD and VIRTIO_BLK_F_WRITE_ZEROES (virtio 1.2 5.2.3).
    public static var featureDiscard: UInt64 { 1 << 13 }
    public static var featureWriteZeroes: UInt64 { 1 << 14 }

    /// The features the driver accepted (from `Attach`). DISCARD and WRITE_ZEROES requests are
    /// executed only when their feature was negotiated; otherwise they are VIRTIO_BLK_S_UNSUPP.
    /// All ones by default: tests and tools that drive the engine directly get every type.
    public var driverFeatures: UInt64

    public init(storage: Storage, id: String, maximumDiscardSegments: Int = 1, maximumDiscardSectors: UInt32 = 32768,
                driverFeatures: UInt64 = .max) {
        self.driverFeatures = driverFeatures
        self.storage = storage
        self.id = Array(id.utf8.prefix(VirtioBlockRequest.idLength))
        self.maximumDiscardSegments = maximumDiscardSegments
        self.maximumDiscardSectors = maximumDiscardSectors
    }

    /// The capacity in 512-byte sectors.
    public var capacity: UInt64 { storage.byteCount / VirtioBlockRequest.sectorSize }

    /// Parses and executes the request in `chain`, writes its status, and says what to push.
    public func execute(_ chain: DescriptorChain) -> Completion {
        let request: VirtioBlockRequest
        do {
            request = try VirtioBlockRequest(chain)
        } catch {
            return finish(status: .ioError, dataWritten: 0, statusByte: VirtioBlockRequest.statusByte(of: chain))
        }
        return execute(request)
    }

    /// Executes a parsed request.
    public func execute(_ request: VirtioBlockRequest) -> Completion {
        var written: UInt64 = 0
        let status: VirtioBlockRequest.Status
        switch request.type {
        case .in:
            status = transfer(request, reading: true)
            if status == .ok { written = request.dataLength }
        case .out:
            status = storage.isReadOnly ? .ioError : transfer(request, reading: false)
        case .flush:
            status = (try? storage.flush()) != nil ? .ok : .ioError
        case .getID:
            written = writeID(into: request.data)
            status = .ok
        case .discard, .writeZeroes:
            let feature = request.type == .discard ? Self.featureDiscard : Self.featureWriteZeroes
            status = driverFeatures & feature != 0 ? discard(request) : .unsupported
        default:
            status = .unsupported
        }
        return finish(status: status, dataWritten: written, statusByte: request.status)
    }

    private func finish(status: VirtioBlockRequest.Status, dataWritten: UInt64,
                        statusByte: UnsafeMutableRawPointer?) -> Completion {
        guard let statusByte else { return Completion(status: nil, usedLength: UInt32(truncatingIfNeeded: dataWritten)) }
        // SAFETY: the status byte lies in a device-writable buffer inside guest RAM.
        statusByte.storeBytes(of: status.rawValue, as: UInt8.self)
        // dataWritten <= DescriptorChain.maximumTotalLength, so this fits.
        return Completion(status: status, usedLength: UInt32(truncatingIfNeeded: dataWritten + 1))
    }

    /// Whether `[sector, sector + bytes/512)` lies inside the disk; `bytes` a multiple of 512.
    private func inBounds(sector: UInt64, bytes: UInt64) -> Bool {
        guard bytes % VirtioBlockRequest.sectorSize == 0 else { return false }
        let sectors = bytes / VirtioBlockRequest.sectorSize
        return sector <= capacity && sectors <= capacity - sector
    }

    private func transfer(_ request: VirtioBlockRequest, reading: Bool) -> VirtioBlockRequest.Status {
        guard inBounds(sector: request.sector, bytes: request.dataLength) else { return .ioError }
        var offset = request.sector * VirtioBlockRequest.sectorSize
        do {
            for buffer in request.data {
                if reading {
                    try storage.read(into: buffer, at: offset)
                } else {
                    try storage.write(UnsafeRawBufferPointer(buffer), at: offset)
                }
                offset += UInt64(buffer.count)
            }
        } catch {
            return .ioError
        }
        return .ok
    }

    private func writeID(into data: [UnsafeMutableRawBufferPointer]) -> UInt64 {
        var padded = id
        padded.append(contentsOf: repeatElement(0, count: VirtioBlockRequest.idLength - id.count))
        var written = 0
        for buffer in data where written < padded.count {
            let count = min(buffer.count, padded.count - written)
            buffer.copyBytes(from: padded[written..<(written + count)])
            written += count
        }
        return UInt64(written)
    }

    private func discard(_ request: VirtioBlockRequest) -> VirtioBlockRequest.Status {
        guard !storage.isReadOnly else { return .ioError }
        let length = request.dataLength
        let segmentLength = UInt64(Self.discardSegmentLength)
        guard length > 0, length % segmentLength == 0, length / segmentLength <= UInt64(maximumDiscardSegments) else {
            return .unsupported
        }
        // Read the segments once into a local copy, check them all, then act.
        let bytes = gather(request.data, count: Int(length))
        var ranges: [(offset: UInt64, length: UInt64)] = []
        for index in 0..<Int(length / segmentLength) {
            let base = index * Self.discardSegmentLength
            let sector = bytes.load(at: base, as: UInt64.self)
            let sectors = UInt64(bytes.load(at: base + 8, as: UInt32.self))
            let flags = bytes.load(at: base + 12, as: UInt32.self)
            // Bit 0 is "unmap", allowed only for WRITE_ZEROES; no other bit is defined.
            let allowed: UInt32 = request.type == .writeZeroes ? 1 : 0
            guard flags & ~allowed == 0 else { return .unsupported }
            guard sectors <= UInt64(maximumDiscardSectors) else { return .ioError }
            guard inBounds(sector: sector, bytes: sectors * VirtioBlockRequest.sectorSize) else { return .ioError }
            ranges.append((sector * VirtioBlockRequest.sectorSize, sectors * VirtioBlockRequest.sectorSize))
        }
        do {
            for range in ranges where range.length > 0 {
                if request.type == .writeZeroes {
                    try writeZeroes(at: range.offset, length: range.length)
                } else {
                    try storage.discard(at: range.offset, length: range.length)
                }
            }
        } catch {
            return .ioError
        }
        return .ok
    }

    /// Writes zeros with ordinary writes: a hole punch may be refused, and must not be relied on.
    private func writeZeroes(at offset: UInt64, length: UInt64) throws(VirtioError) {
        let chunk = 1 << 20
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < length {
            let count = Int(min(UInt64(chunk), length - done))
            try storage.write(UnsafeRawBufferPointer(rebasing: zeros[0..<count]), at: offset + done)
            done += UInt64(count)
        }
    }
}
