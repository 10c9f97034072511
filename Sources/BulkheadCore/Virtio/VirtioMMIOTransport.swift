import BulkheadKVM
import Synchronization

/// What the core knows of a virtio device's identity: the part of the register file that
/// does not depend on the backend process.
public struct VirtioDeviceDescription: Sendable {
    public var deviceID: UInt32
    public var features: UInt64
    public var queueCount: Int
    public var queueMaxSize: UInt16
    /// The device-specific configuration space (read-only for the guest here).
    public var config: [UInt8]

    public init(deviceID: UInt32, features: UInt64, queueCount: Int, queueMaxSize: UInt16, config: [UInt8]) {
        self.deviceID = deviceID; self.features = features; self.queueCount = queueCount
        self.queueMaxSize = queueMaxSize; self.config = config
    }
}

/// One virtqueue as the driver configured it.
public struct VirtqueueConfiguration: Sendable, Equatable {
    public var size: UInt16
    public var ready: Bool = false
    public var descriptorTable: UInt64 = 0
    public var driverArea: UInt64 = 0
    public var deviceArea: UInt64 = 0

    public init(size: UInt16, ready: Bool = false, descriptorTable: UInt64 = 0, driverArea: UInt64 = 0, deviceArea: UInt64 = 0) {
        self.size = size; self.ready = ready; self.descriptorTable = descriptorTable
        self.driverArea = driverArea; self.deviceArea = deviceArea
    }
}

/// The transport state handed to a backend when the driver sets DRIVER_OK.
public struct VirtioActivation: Sendable, Equatable {
    public var driverFeatures: UInt64
    public var queues: [VirtqueueConfiguration]

    public init(driverFeatures: UInt64, queues: [VirtqueueConfiguration]) {
        self.driverFeatures = driverFeatures
        self.queues = queues
    }
}

/// The backend behind a transport (a driver domain, through its supervisor).
public protocol VirtioTransportBackend: AnyObject, Sendable {
    /// The driver set DRIVER_OK: start serving the queues.
    func activate(_ activation: VirtioActivation)
    /// The driver reset the device (Status := 0): stop serving, forget the queues.
    func reset()
    /// The virtio InterruptStatus bits (the backend sets them before it raises the irqfd).
    func interruptStatus() -> UInt32
    /// The driver acknowledged `bits` (InterruptACK).
    func acknowledgeInterrupt(_ bits: UInt32)
}

/// The virtio-mmio (version 2) register file of one device, in the core. The data path does
/// not come here: QueueNotify writes hit a KVM ioeventfd the backend waits on, and the backend
/// raises the interrupt through an irqfd. Only setup, InterruptStatus/ACK and config space
/// accesses exit to the core.
public final class VirtioMMIOTransport: MMIODevice {
    public static let magic: UInt32 = 0x7472_6976 // "virt"
    public static let vendorID: UInt32 = 0x484b_4c42 // "BLKH"
    public static let regionSize: UInt64 = 0x200
    public static let queueNotifyOffset: UInt64 = 0x50

    // Device status bits (virtio 1.2, 2.1).
    public static let statusAcknowledge: UInt32 = 1
    public static let statusDriver: UInt32 = 2
    public static let statusDriverOK: UInt32 = 4
    public static let statusFeaturesOK: UInt32 = 8
    public static let statusNeedsReset: UInt32 = 0x40
    public static let statusFailed: UInt32 = 0x80

    struct State {
        var status: UInt32 = 0
        var deviceFeaturesSelect: UInt32 = 0
        var driverFeaturesSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var queueSelect: UInt32 = 0
        var queues: [VirtqueueConfiguration]
        var configGeneration: UInt32 = 0
        var activated = false
    }

    public let description: VirtioDeviceDescription
    public let name: String
    private let state: Mutex<State>
    private let backend: any VirtioTransportBackend

    public init(name: String, description: VirtioDeviceDescription, backend: any VirtioTransportBackend) {
        self.name = name
        self.description = description
        self.backend = backend
        state = Mutex(State(queues: Array(repeating: VirtqueueConfiguration(size: description.queueMaxSize),
                                          count: description.queueCount)))
    }

    /// Marks the device as broken (DEVICE_NEEDS_RESET), e.g. when its domain is past its
    /// restart budget.
    public func markNeedsReset() {
        state.withLock { $0.status |= Self.statusNeedsReset }
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        if offset >= 0x100 {
            let start = Int(offset - 0x100)
            for i in 0..<data.count {
                data[i] = start + i < description.config.count ? description.config[start + i] : 0
            }
            return
        }
        guard data.count == 4 else { data.storeLittleEndian(0); return }
        let value: UInt32 = state.withLock { s in
            let queue = Int(s.queueSelect) < s.queues.count ? s.queues[Int(s.queueSelect)] : nil
            switch offset {
            case 0x000: return Self.magic
            case 0x004: return 2
            case 0x008: return description.deviceID
            case 0x00c: return Self.vendorID
            case 0x010:
                switch s.deviceFeaturesSelect {
                case 0: return UInt32(truncatingIfNeeded: description.features)
                case 1: return UInt32(truncatingIfNeeded: description.features >> 32)
                default: return 0
                }
            case 0x034: return queue == nil ? 0 : UInt32(description.queueMaxSize)
            case 0x044: return queue?.ready == true ? 1 : 0
            case 0x060: return backend.interruptStatus()
            case 0x070: return s.status
            case 0x0fc: return s.configGeneration
            default: return 0
            }
        }
        data.storeLittleEndian(UInt64(value))
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard data.count == 4, offset < 0x100 else { return } // config space is read-only here
        let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
        enum Action { case none, activate(VirtioActivation), reset, acknowledge(UInt32) }
        let action: Action = state.withLock { s in
            let q = Int(s.queueSelect)
            let queueWritable = q < s.queues.count && !s.queues[q].ready && s.status & Self.statusDriverOK == 0
            func setLow(_ field: inout UInt64) { field = (field & 0xffff_ffff_0000_0000) | UInt64(value) }
            func setHigh(_ field: inout UInt64) { field = (field & 0xffff_ffff) | UInt64(value) << 32 }
            switch offset {
            case 0x014: s.deviceFeaturesSelect = value
            case 0x020:
                guard s.status & Self.statusFeaturesOK == 0 else { break }
                switch s.driverFeaturesSelect {
                case 0: s.driverFeatures = (s.driverFeatures & 0xffff_ffff_0000_0000) | UInt64(value)
                case 1: s.driverFeatures = (s.driverFeatures & 0xffff_ffff) | UInt64(value) << 32
                default: break
                }
            case 0x024: s.driverFeaturesSelect = value
            case 0x030: s.queueSelect = value
            case 0x038:
                // Queue size: a power of two no larger than the maximum.
                if queueWritable, value > 0, value <= UInt32(description.queueMaxSize), value & (value - 1) == 0 {
                    s.queues[q].size = UInt16(value)
                }
            case 0x044:
                if q < s.queues.count { s.queues[q].ready = value == 1 }
            case 0x050:
                break // a kick that missed the ioeventfd (wrong width or value): the backend polls anyway
            case 0x064:
                return .acknowledge(value)
            case 0x070:
                if value == 0 {
                    let wasActive = s.activated
                    s = State(queues: Array(repeating: VirtqueueConfiguration(size: description.queueMaxSize),
                                            count: description.queueCount))
                    s.configGeneration &+= 1
                    return wasActive ? .reset : .none
                }
                var newStatus = value
                if value & Self.statusFeaturesOK != 0 && s.status & Self.statusFeaturesOK == 0 {
                    // Accept only features we offered, and require VIRTIO_F_VERSION_1.
                    if s.driverFeatures & ~description.features != 0 || s.driverFeatures & (1 << 32) == 0 {
                        newStatus &= ~Self.statusFeaturesOK
                    }
                }
                s.status = newStatus | (s.status & Self.statusNeedsReset)
                if newStatus & Self.statusDriverOK != 0 && !s.activated {
                    s.activated = true
                    return .activate(VirtioActivation(driverFeatures: s.driverFeatures, queues: s.queues))
                }
            case 0x080: if queueWritable { setLow(&s.queues[q].descriptorTable) }
            case 0x084: if queueWritable { setHigh(&s.queues[q].descriptorTable) }
            case 0x090: if queueWritable { setLow(&s.queues[q].driverArea) }
            case 0x094: if queueWritable { setHigh(&s.queues[q].driverArea) }
            case 0x0a0: if queueWritable { setLow(&s.queues[q].deviceArea) }
            case 0x0a4: if queueWritable { setHigh(&s.queues[q].deviceArea) }
            default: break
            }
            return .none
        }
        switch action {
        case .none: break
        case .activate(let activation): backend.activate(activation)
        case .reset: backend.reset()
        case .acknowledge(let bits): backend.acknowledgeInterrupt(bits)
        }
    }
}
