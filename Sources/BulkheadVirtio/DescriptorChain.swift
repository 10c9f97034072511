/// One guest buffer of a descriptor chain: where the guest said it is, and the host view of
/// it (already bounds-checked against `GuestRAM`).
public struct GuestBuffer: @unchecked Sendable {
    public let guestAddress: UInt64
    public let bytes: UnsafeMutableRawBufferPointer
}

/// A validated descriptor chain (virtio 1.2 2.7.5 "The Virtqueue Descriptor Table"): the
/// device-readable buffers followed by the device-writable ones, indirect tables flattened.
/// Every buffer lies inside guest RAM; the total length is at most
/// `DescriptorChain.maximumTotalLength`. Complete it with `SplitVirtqueue.pushUsed(head:length:)`.
public struct DescriptorChain: @unchecked Sendable {
    /// The bound on the sum of a chain's buffer lengths.
    public static let maximumTotalLength: UInt64 = 64 << 20
    /// The bound on the entries of one indirect table (16 KiB of descriptors).
    public static let maximumIndirectEntries: UInt32 = 1024

    /// The head descriptor's index: the id of the used element that completes the chain.
    public let head: UInt16
    public let readable: [GuestBuffer]
    public let writable: [GuestBuffer]

    public var readableLength: UInt64 { readable.reduce(0) { $0 + UInt64($1.bytes.count) } }
    public var writableLength: UInt64 { writable.reduce(0) { $0 + UInt64($1.bytes.count) } }
}

extension DescriptorChain {
    /// Walks the chain starting at `head` in the descriptor table at `table` (`size` entries,
    /// already inside guest RAM). Each descriptor is loaded once into a local copy. Bounded:
    /// at most `size` descriptors of the table and `maximumIndirectEntries` of one indirect
    /// table are visited, so a loop ends in an error, never in a hang.
    static func walk(head: UInt16, table: UnsafeRawPointer, size: UInt16, memory: GuestRAM,
                     indirectAllowed: Bool) throws(VirtioError) -> DescriptorChain {
        func malformed(_ detail: String) -> VirtioError { VirtioError(.malformedChain, head: head, detail) }

        var readable: [GuestBuffer] = []
        var writable: [GuestBuffer] = []
        var total: UInt64 = 0

        func accept(_ descriptor: Descriptor) throws(VirtioError) {
            total += UInt64(descriptor.length)
            guard total <= maximumTotalLength else {
                throw malformed("chain longer than \(maximumTotalLength) bytes")
            }
            guard let bytes = memory.buffer(at: descriptor.address, length: UInt64(descriptor.length)) else {
                throw malformed("buffer of \(descriptor.length) bytes at \(hex(descriptor.address)) is outside guest RAM")
            }
            let buffer = GuestBuffer(guestAddress: descriptor.address, bytes: bytes)
            if descriptor.isWriteOnly {
                writable.append(buffer)
            } else {
                guard writable.isEmpty else { throw malformed("device-readable buffer after a device-writable one") }
                readable.append(buffer)
            }
        }

        var index = head
        var visited: UInt32 = 0
        while true {
            guard index < size else { throw malformed("next index \(index) beyond queue size \(size)") }
            visited += 1
            guard visited <= UInt32(size) else { throw malformed("chain longer than the queue size \(size) (a loop?)") }
            // SAFETY: index < size and the table holds size descriptors inside guest RAM.
            let descriptor = Descriptor(loadingFrom: table + Int(index) * Descriptor.size)
            if descriptor.isIndirect {
                guard indirectAllowed else { throw malformed("indirect descriptor without VIRTIO_F_INDIRECT_DESC") }
                guard !descriptor.hasNext else { throw malformed("indirect descriptor with VIRTQ_DESC_F_NEXT") }
                try walkIndirect(descriptor, memory: memory, malformed: malformed, accept: accept)
                break
            }
            try accept(descriptor)
            guard descriptor.hasNext else { break }
            index = descriptor.next
        }
        return DescriptorChain(head: head, readable: readable, writable: writable)
    }

    private static func walkIndirect(
        _ indirect: Descriptor, memory: GuestRAM, malformed: (String) -> VirtioError,
        accept: (Descriptor) throws(VirtioError) -> Void
    ) throws(VirtioError) {
        let length = indirect.length
        guard length > 0, length % UInt32(Descriptor.size) == 0 else {
            throw malformed("indirect table length \(length) is not a non-zero multiple of 16")
        }
        let count = length / UInt32(Descriptor.size)
        guard count <= maximumIndirectEntries else {
            throw malformed("indirect table of \(count) entries (at most \(maximumIndirectEntries))")
        }
        guard let table = memory.buffer(at: indirect.address, length: UInt64(length)), let base = table.baseAddress else {
            throw malformed("indirect table of \(length) bytes at \(hex(indirect.address)) is outside guest RAM")
        }
        var index: UInt32 = 0
        var visited: UInt32 = 0
        while true {
            guard index < count else { throw malformed("indirect next index \(index) beyond table size \(count)") }
            visited += 1
            guard visited <= count else { throw malformed("indirect chain longer than its table (a loop?)") }
            // SAFETY: index < count and the table holds count descriptors inside guest RAM.
            let descriptor = Descriptor(loadingFrom: UnsafeRawPointer(base) + Int(index) * Descriptor.size)
            guard !descriptor.isIndirect else { throw malformed("nested indirect descriptor") }
            try accept(descriptor)
            guard descriptor.hasNext else { return }
            index = UInt32(descriptor.next)
        }
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
