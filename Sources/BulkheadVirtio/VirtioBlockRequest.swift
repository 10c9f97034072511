/// One virtio-blk request (virtio 1.2 5.2.6 "Device Operation") found in a descriptor chain,
/// framing-agnostic: a 16-byte header (`type` u32, `reserved` u32, `sector` u64) at the start
/// of the device-readable bytes; for reads and GET_ID the data is the device-writable bytes but
/// the last; for writes, DISCARD and WRITE_ZEROES the data is the device-readable bytes after
/// the header; the status is the last device-writable byte.
public struct VirtioBlockRequest: @unchecked Sendable {
    /// `VIRTIO_BLK_T_*`.
    public struct RequestType: RawRepresentable, Sendable, Equatable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let `in` = RequestType(rawValue: 0)
        public static let out = RequestType(rawValue: 1)
        public static let flush = RequestType(rawValue: 4)
        public static let getID = RequestType(rawValue: 8)
        public static let discard = RequestType(rawValue: 11)
        public static let writeZeroes = RequestType(rawValue: 13)
    }

    /// `VIRTIO_BLK_S_*`.
    public struct Status: RawRepresentable, Sendable, Equatable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let ok = Status(rawValue: 0)
        public static let ioError = Status(rawValue: 1)
        public static let unsupported = Status(rawValue: 2)
    }

    public static let headerLength = 16
    public static let sectorSize: UInt64 = 512
    /// `VIRTIO_BLK_ID_BYTES`.
    public static let idLength = 20

    public let head: UInt16
    public let type: RequestType
    public let sector: UInt64
    /// The data buffers, in order (see the type's description for which bytes they are).
    public let data: [UnsafeMutableRawBufferPointer]
    /// The status byte, when the chain has a device-writable byte.
    public let status: UnsafeMutableRawPointer?

    public var dataLength: UInt64 { data.reduce(0) { $0 + UInt64($1.count) } }

    /// Finds the request in `chain`. Throws `malformedChain` (with the head) when the header is
    /// shorter than 16 bytes; `statusByte(of:)` still finds where to report that.
    public init(_ chain: DescriptorChain) throws(VirtioError) {
        head = chain.head
        status = Self.statusByte(of: chain)
        guard chain.readableLength >= UInt64(Self.headerLength) else {
            throw VirtioError(.malformedChain, head: chain.head, "virtio-blk header of \(chain.readableLength) bytes (need 16)")
        }
        let header = gather(chain.readable.map(\.bytes), count: Self.headerLength)
        type = RequestType(rawValue: header.load(at: 0, as: UInt32.self))
        sector = header.load(at: 8, as: UInt64.self)
        switch type {
        case .in, .getID:
            data = slice(chain.writable.map(\.bytes), dropFirst: 0, dropLast: 1)
        case .flush:
            data = []
        default:
            data = slice(chain.readable.map(\.bytes), dropFirst: Self.headerLength, dropLast: 0)
        }
    }

    /// The last device-writable byte of `chain`, if it has one.
    public static func statusByte(of chain: DescriptorChain) -> UnsafeMutableRawPointer? {
        guard let last = chain.writable.last(where: { $0.bytes.count > 0 }), let base = last.bytes.baseAddress else { return nil }
        // SAFETY: count > 0, so base + count - 1 is the buffer's last byte.
        return base + (last.bytes.count - 1)
    }
}

/// Copies the first `count` bytes of `buffers` (which hold at least that many).
func gather(_ buffers: [UnsafeMutableRawBufferPointer], count: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count)
    for buffer in buffers where bytes.count < count {
        bytes.append(contentsOf: buffer.prefix(count - bytes.count))
    }
    return bytes
}

/// `buffers` without their first `dropFirst` and last `dropLast` bytes, empty pieces removed.
func slice(_ buffers: [UnsafeMutableRawBufferPointer], dropFirst: Int, dropLast: Int) -> [UnsafeMutableRawBufferPointer] {
    let total = buffers.reduce(0) { $0 + $1.count }
    guard total > dropFirst + dropLast else { return [] }
    let end = total - dropLast
    var result: [UnsafeMutableRawBufferPointer] = []
    var position = 0
    for buffer in buffers {
        let start = max(position, dropFirst), stop = min(position + buffer.count, end)
        if start < stop {
            result.append(UnsafeMutableRawBufferPointer(rebasing: buffer[(start - position)..<(stop - position)]))
        }
        position += buffer.count
    }
    return result
}

extension Array where Element == UInt8 {
    /// A little-endian integer at `offset` (inside the array).
    func load<T: FixedWidthInteger>(at offset: Int, as: T.Type) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(self[offset + index]) << (8 * index) }
        return value
    }
}
