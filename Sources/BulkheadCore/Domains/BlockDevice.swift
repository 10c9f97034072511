import BulkheadChannel
import BulkheadKVM
import BulkheadSystem
import CBulkheadLinux
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// virtio-blk as the core sees it: its identity, features and configuration space. The
/// requests themselves are served by the `blk` driver domain.
enum VirtioBlock {
    static let deviceID: UInt32 = 2
    static let queueMaxSize: UInt16 = 256
    static let sectorSize: UInt64 = 512
    static let segmentMaximum: UInt32 = 126

    // Feature bits (virtio 1.2, 5.2.3 and 6).
    static let featureSegmentMaximum: UInt64 = 1 << 2
    static let featureReadOnly: UInt64 = 1 << 5
    static let featureBlockSize: UInt64 = 1 << 6
    static let featureFlush: UInt64 = 1 << 9
    static let featureEventIndex: UInt64 = 1 << 29
    static let featureVersion1: UInt64 = 1 << 32

    static func description(capacitySectors: UInt64, readOnly: Bool) -> VirtioDeviceDescription {
        var features = featureVersion1 | featureEventIndex | featureFlush | featureSegmentMaximum | featureBlockSize
        if readOnly { features |= featureReadOnly }
        return VirtioDeviceDescription(deviceID: deviceID, features: features, queueCount: 1,
                                       queueMaxSize: queueMaxSize, config: config(capacitySectors: capacitySectors))
    }

    /// struct virtio_blk_config: capacity (u64 @0), size_max (u32 @8), seg_max (u32 @12),
    /// geometry (@16), blk_size (u32 @20).
    static func config(capacitySectors: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { for (i, b) in $0.enumerated() { bytes[offset + i] = b } }
        }
        put(capacitySectors, at: 0)
        put(segmentMaximum, at: 12)
        put(UInt32(sectorSize), at: 20)
        return bytes
    }
}

extension Machine {
    /// Opens the disk, creates its irqfd and ioeventfd, its supervisor and its transport.
    static func makeBlockDevice(
        index: Int, disk: DiskConfiguration, base: GuestAddress, irq: UInt32, vm: VirtualMachine, memory: GuestMemory,
        configuration: MachineConfiguration, logger: Logger, events: DomainEventLog
    ) throws(CoreError) -> (VirtioMMIOTransport, DomainSupervisor) {
        let id = "blk\(index)"
        let file: FileDescriptor
        do {
            let direct = disk.cache == .none ? BH_O_DIRECT : 0
            file = try FileDescriptor.open(disk.path, flags: (disk.readOnly ? O_RDONLY : O_RDWR) | direct)
        } catch where error.errno.rawValue == EINVAL && disk.cache == .none {
            throw CoreError(.invalidConfiguration(
                "--disk \(disk.path),cache=none: the file system does not support O_DIRECT; use cache=writeback or put the image elsewhere"),
                underlying: error)
        } catch {
            throw CoreError(.invalidConfiguration("--disk \(disk.path): cannot open: \(error.errno)"), underlying: error)
        }
        let size: Int
        do { size = try file.size() } catch {
            throw CoreError(.invalidConfiguration("--disk \(disk.path): cannot stat: \(error.errno)"), underlying: error)
        }
        guard size >= 512 else {
            throw CoreError(.invalidConfiguration("--disk \(disk.path): \(size) bytes; a disk needs at least one 512-byte sector"))
        }
        guard disk.cache != .none || size % 4096 == 0 else {
            throw CoreError(.invalidConfiguration(
                "--disk \(disk.path),cache=none: \(size) bytes is not a multiple of 4096 (O_DIRECT moves whole blocks); resize it, e.g. truncate -s"))
        }
        let capacity = UInt64(size) / VirtioBlock.sectorSize
        let description = VirtioBlock.description(capacitySectors: capacity, readOnly: disk.readOnly)

        let (irqfd, kicks) = try makeNotifiers(queueCount: description.queueCount, base: base, irq: irq, vm: vm)

        let spec = DomainSupervisor.Specification(
            kind: "blk", id: id, executable: configuration.domainExecutable ?? defaultDomainExecutable(),
            queueCount: description.queueCount, readOnly: disk.readOnly, capacitySectors: capacity,
            config: description.config, policy: disk.restartPolicy ?? configuration.restartPolicy,
            watchdogMilliseconds: disk.watchdogMilliseconds ?? configuration.watchdogMilliseconds)
        let failed = FailedTransportLatch()
        let supervisor = try DomainSupervisor(spec: spec, guestMemory: memory, backend: file, irqfd: irqfd, kicks: kicks,
                                              logger: logger, events: events, onFailure: { failed.fire() })
        let transport = VirtioMMIOTransport(name: id, description: description, backend: supervisor)
        failed.transport = transport
        return (transport, supervisor)
    }

    /// `bulkhead-domain` next to the running executable.
    static func defaultDomainExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "bulkhead-domain" }
        let path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = path.lastIndex(of: "/") else { return "bulkhead-domain" }
        return String(path[...slash]) + "bulkhead-domain"
    }
}

/// Marks a transport NEEDS_RESET when its domain is past its restart budget.
final class FailedTransportLatch: @unchecked Sendable {
    weak var transport: VirtioMMIOTransport?
    func fire() { transport?.markNeedsReset() }
}
