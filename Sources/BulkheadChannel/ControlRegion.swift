import BulkheadSystem
import CBulkheadLinux

/// A device's control region: one memfd, created and owned by the core, that outlives the
/// domain processes serving the device. Each domain generation maps the same memfd (fd 3).
/// The layout is `ControlRegionLayout`.
///
/// A reference type on purpose: the region is shared by the `ControlChannel` of each side and by
/// the code that uses the recovery area; the `~Copyable` owners inside (`FileDescriptor`,
/// `MemoryMapping`) still close and unmap exactly once, when the last reference goes.
///
/// Header fields are read and written with atomics only; the recovery and device-state areas
/// are raw memory whose users define their own discipline.
public final class ControlRegion: @unchecked Sendable {
    /// The memfd: the core hands it to every domain generation as fd 3.
    public let file: FileDescriptor
    let mapping: MemoryMapping

    /// Start of the mapping.
    var base: UnsafeMutableRawPointer { mapping.base }

    private init(file: consuming FileDescriptor, mapping: consuming MemoryMapping) {
        self.file = file
        self.mapping = mapping
    }

    /// Creates a region for a device (core side): a new memfd of `ControlRegionLayout.size`
    /// bytes, mapped, with its header written. `name` shows in `/proc/<pid>/fd`.
    public static func create(name: String) throws(ChannelError) -> ControlRegion {
        let region: ControlRegion
        do throws(SystemError) {
            let file = try FileDescriptor.memfd(name: name, size: ControlRegionLayout.size)
            let mapping = try MemoryMapping(sharing: file, length: ControlRegionLayout.size)
            region = ControlRegion(file: file, mapping: mapping)
        } catch {
            throw ChannelError(.system, "creating control region \(name)", underlying: error)
        }
        // SAFETY: all offsets are inside the header page of a mapping of `size` bytes, naturally
        // aligned; the memfd is fresh (zero), nobody else maps it yet. Magic last, released.
        bh_atomic_store_release_u32(region.base + ControlRegionLayout.versionOffset, ControlRegionLayout.version)
        bh_atomic_store_release_u32(
            region.base + ControlRegionLayout.ringCapacityOffset, UInt32(ControlRegionLayout.ringCapacity))
        bh_atomic_store_release_u64(
            region.base + ControlRegionLayout.regionSizeOffset, UInt64(ControlRegionLayout.size))
        bh_atomic_store_release_u64(region.base + ControlRegionLayout.magicOffset, ControlRegionLayout.magic)
        return region
    }

    /// Maps an existing region (domain side, from fd `DomainFileDescriptors.controlRegion`; or a
    /// second mapping in tests) and checks its size, magic, layout version and ring geometry.
    public init(mapping file: consuming FileDescriptor) throws(ChannelError) {
        let fd = file.rawValue
        let size: Int
        do throws(SystemError) {
            size = try file.size()
        } catch {
            throw ChannelError(.system, "mapping control region (fd \(fd))", underlying: error)
        }
        guard size >= ControlRegionLayout.size else {
            throw ChannelError(
                .regionTooSmall,
                "mapping control region (fd \(fd)): \(size) bytes, the layout needs \(ControlRegionLayout.size)")
        }
        let mapping: MemoryMapping
        do throws(SystemError) {
            mapping = try MemoryMapping(sharing: file, length: ControlRegionLayout.size)
        } catch {
            throw ChannelError(.system, "mapping control region (fd \(fd))", underlying: error)
        }
        // SAFETY: header offsets are inside the mapping, naturally aligned.
        let magic = bh_atomic_load_acquire_u64(mapping.base + ControlRegionLayout.magicOffset)
        let version = bh_atomic_load_acquire_u32(mapping.base + ControlRegionLayout.versionOffset)
        let capacity = bh_atomic_load_acquire_u32(mapping.base + ControlRegionLayout.ringCapacityOffset)
        let regionSize = bh_atomic_load_acquire_u64(mapping.base + ControlRegionLayout.regionSizeOffset)
        guard magic == ControlRegionLayout.magic else {
            throw ChannelError(
                .badMagic, "mapping control region (fd \(fd)): magic 0x\(String(magic, radix: 16)) is not BLKHDCTL")
        }
        guard version == ControlRegionLayout.version, capacity == ControlRegionLayout.ringCapacity,
            regionSize == ControlRegionLayout.size
        else {
            throw ChannelError(
                .unsupportedLayout,
                "mapping control region (fd \(fd)): layout version \(version), rings of \(capacity) bytes, "
                    + "\(regionSize) bytes in all; this build expects version \(ControlRegionLayout.version), "
                    + "\(ControlRegionLayout.ringCapacity), \(ControlRegionLayout.size)")
        }
        self.file = file
        self.mapping = mapping
    }

    // MARK: header fields

    /// The domain generation the core last reset the rings for.
    public var generation: UInt64 {
        // SAFETY: aligned header field inside the mapping.
        bh_atomic_load_acquire_u64(base + ControlRegionLayout.generationOffset)
    }

    /// The state the domain last published; nil if the domain wrote a value that is no state.
    public var domainState: DomainState? {
        // SAFETY: aligned header field inside the mapping.
        DomainState(rawValue: bh_atomic_load_acquire_u32(base + ControlRegionLayout.domainStateOffset))
    }

    /// Publishes the domain's state (domain side).
    public func publish(_ state: DomainState) {
        // SAFETY: aligned header field inside the mapping.
        bh_atomic_store_release_u32(base + ControlRegionLayout.domainStateOffset, state.rawValue)
    }

    /// The heartbeat counter; the core watches it move while work is pending.
    public var heartbeat: UInt64 {
        // SAFETY: aligned header field inside the mapping.
        bh_atomic_load_acquire_u64(base + ControlRegionLayout.heartbeatOffset)
    }

    /// One heartbeat (domain side): call it while alive and making progress.
    public func beat() {
        // SAFETY: aligned header field inside the mapping.
        _ = bh_atomic_fetch_add_u64(base + ControlRegionLayout.heartbeatOffset, 1)
    }

    /// The device's virtio-mmio InterruptStatus.
    public var interruptStatus: UInt32 {
        // SAFETY: aligned header field inside the mapping.
        bh_atomic_load_acquire_u32(base + ControlRegionLayout.interruptStatusOffset)
    }

    /// ORs `bits` into InterruptStatus (domain side, before writing its irqfd); returns the
    /// previous value.
    @discardableResult
    public func raiseInterrupt(_ bits: UInt32) -> UInt32 {
        // SAFETY: aligned header field inside the mapping.
        bh_atomic_fetch_or_u32(base + ControlRegionLayout.interruptStatusOffset, bits)
    }

    /// Clears `bits` of InterruptStatus (core side, on the guest's InterruptACK); returns the
    /// previous value.
    @discardableResult
    public func acknowledgeInterrupt(_ bits: UInt32) -> UInt32 {
        // SAFETY: aligned header field inside the mapping.
        bh_atomic_fetch_and_u32(base + ControlRegionLayout.interruptStatusOffset, ~bits)
    }

    // MARK: areas

    /// The recovery block of virtqueue `index` (`ControlRegionLayout.queueRecoveryStride`
    /// bytes): what goes inside is the virtqueue code's business. It survives `resetRings`.
    /// `index` must be in `0 ..< ControlRegionLayout.maxQueues` (a programming error otherwise).
    public func queueRecovery(_ index: Int) -> UnsafeMutableRawBufferPointer {
        precondition(
            (0..<ControlRegionLayout.maxQueues).contains(index),
            "queue recovery index \(index) out of 0..<\(ControlRegionLayout.maxQueues)")
        // SAFETY: index checked above; the block lies inside the mapping.
        return UnsafeMutableRawBufferPointer(
            start: base + ControlRegionLayout.recoveryOffset + index * ControlRegionLayout.queueRecoveryStride,
            count: ControlRegionLayout.queueRecoveryStride)
    }

    /// The opaque device-state area of emulated devices (`ControlRegionLayout.deviceStateSize`
    /// bytes). It survives `resetRings`.
    public var deviceState: UnsafeMutableRawBufferPointer {
        // SAFETY: the area lies inside the mapping.
        UnsafeMutableRawBufferPointer(
            start: base + ControlRegionLayout.deviceStateOffset, count: ControlRegionLayout.deviceStateSize)
    }

    // MARK: generations

    /// Empties both rings and the doorbell flags, sets `domainState` to `.absent`, the heartbeat
    /// to 0 and `generation`; keeps InterruptStatus, the recovery and device-state areas.
    /// Only while no domain maps the region (the old one is dead, the new one not spawned):
    /// call it through `ControlChannel.resetRings(generation:)` on the core side.
    func resetHeader(generation: UInt64) {
        // SAFETY: aligned header fields inside the mapping.
        for offset in [
            ControlRegionLayout.coreToDomainProducerOffset, ControlRegionLayout.coreToDomainConsumerOffset,
            ControlRegionLayout.domainToCoreProducerOffset, ControlRegionLayout.domainToCoreConsumerOffset,
            ControlRegionLayout.heartbeatOffset,
        ] {
            bh_atomic_store_release_u64(base + offset, 0)
        }
        for offset in [
            ControlRegionLayout.coreToDomainSleepingOffset, ControlRegionLayout.domainToCoreSleepingOffset,
            ControlRegionLayout.domainStateOffset,
        ] {
            bh_atomic_store_release_u32(base + offset, 0)
        }
        bh_atomic_store_release_u64(base + ControlRegionLayout.generationOffset, generation)
    }
}
