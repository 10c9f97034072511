import BulkheadBoot

/// What `bulkhead run` boots: a kernel, its command line, memory and vCPUs.
public struct MachineConfiguration: Sendable {
    public var kernelPath: String
    public var commandLine: String
    public var memorySize: UInt64
    public var vcpus: Int
    /// Append `tsc_khz=<n>` (from KVM_GET_TSC_KHZ) to the command line, so that a guest on a
    /// host whose CPUID does not give the TSC frequency can still keep time.
    public var appendTSCFrequency: Bool

    /// Disks, each served by its own virtio-blk driver domain (`blk0`, `blk1`, ...).
    public var disks: [DiskConfiguration] = []
    /// NICs, each a tap device served by its own virtio-net driver domain (`net0`, `net1`, ...).
    public var nets: [NetConfiguration] = []
    /// How the supervisor restarts a domain that died.
    public var restartPolicy = RestartPolicy()
    /// A domain whose heartbeat stands still this long while work is pending is declared hung,
    /// killed and restarted (reason `watchdog`).
    public var watchdogMilliseconds: Double = 1000
    /// The `bulkhead-domain` executable (default: next to the running `bulkhead`).
    public var domainExecutable: String?

    public static let maximumVcpus = 254
    public static let maximumDisks = 8
    public static let maximumNets = 8

    public init(kernelPath: String, commandLine: String = "", memorySize: UInt64 = 256 << 20, vcpus: Int = 1,
                appendTSCFrequency: Bool = true) {
        self.kernelPath = kernelPath
        self.commandLine = commandLine
        self.memorySize = memorySize
        self.vcpus = vcpus
        self.appendTSCFrequency = appendTSCFrequency
    }

    /// Checks the settings that do not need the kernel image; each error names the flag.
    public func validate() throws(CoreError) {
        guard (1...Self.maximumVcpus).contains(vcpus) else {
            throw CoreError(.invalidConfiguration("--vcpus \(vcpus) is out of range: 1 to \(Self.maximumVcpus)"))
        }
        guard memorySize >= GuestLayout.minimumMemory else {
            throw CoreError(.invalidConfiguration(
                "--memory \(MemorySize.describe(memorySize)) is too small: at least \(MemorySize.describe(GuestLayout.minimumMemory))"))
        }
        guard memorySize <= GuestLayout.maximumMemory else {
            throw CoreError(.invalidConfiguration(
                "--memory \(MemorySize.describe(memorySize)) is too large: at most \(MemorySize.describe(GuestLayout.maximumMemory))"))
        }
        guard disks.count <= Self.maximumDisks else {
            throw CoreError(.invalidConfiguration("\(disks.count) --disk options: at most \(Self.maximumDisks)"))
        }
        guard nets.count <= Self.maximumNets else {
            throw CoreError(.invalidConfiguration("\(nets.count) --net options: at most \(Self.maximumNets)"))
        }
        guard memorySize % 4096 == 0 else {
            throw CoreError(.invalidConfiguration("--memory \(memorySize) bytes is not a multiple of 4 KiB"))
        }
    }
}

/// How a VM ended.
public enum MachineExit: Sendable, Equatable, CustomStringConvertible {
    /// The guest wrote `code` to the debug-exit port.
    case debugExit(code: UInt8)
    /// The guest reset the machine through the i8042 (Bulkhead then stops, as Firecracker does).
    case reset
    /// The guest triple-faulted; `detail` has the vCPU and its registers.
    case tripleFault(detail: String)
    /// KVM could not run the guest any further.
    case vcpuFailure(detail: String)

    public var description: String {
        switch self {
        case .debugExit(let code): return "guest exited through the debug-exit port with \(code)"
        case .reset: return "guest reset the machine (i8042)"
        case .tripleFault(let detail): return "guest triple-faulted: \(detail)"
        case .vcpuFailure(let detail): return "vCPU failure: \(detail)"
        }
    }

    /// The exit status `bulkhead run` returns: the debug-exit value itself, 0 for a reset,
    /// 125 when the guest crashed or KVM failed.
    public var exitStatus: Int32 {
        switch self {
        case .debugExit(let code): return Int32(code)
        case .reset: return 0
        case .tripleFault, .vcpuFailure: return 125
        }
    }
}

/// A raw disk image served by a virtio-blk domain (`--disk PATH[,readonly]`).
public struct DiskConfiguration: Sendable, Equatable {
    /// How the domain reaches the disk file.
    public enum Cache: String, Sendable, Equatable, CaseIterable {
        /// Through the host page cache; a flush is `fdatasync`.
        case writeback
        /// `O_DIRECT`: every completed write is on the storage device's side of the host, so
        /// no host page cache holds data the guest believes written; a flush is still
        /// `fdatasync` (the device's own write cache). Needs a file system with O_DIRECT
        /// (tmpfs has it since Linux 6.6) and a size that is a multiple of 4096.
        case none
    }

    public var path: String
    public var readOnly: Bool
    public var cache: Cache
    /// This disk's domain's restart policy and watchdog deadline, when they differ from the
    /// machine's (a VM spec file can set them per device).
    public var restartPolicy: RestartPolicy?
    public var watchdogMilliseconds: Double?

    public init(path: String, readOnly: Bool = false, cache: Cache = .writeback) {
        self.path = path
        self.readOnly = readOnly
        self.cache = cache
    }

    /// Parses `PATH[,readonly][,cache=none|writeback]` (also `ro`, `readonly=on|off`, `direct`
    /// for `cache=none`); errors name the option.
    public static func parse(_ text: String) throws(CoreError) -> DiskConfiguration {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let path = parts.first, !path.isEmpty else {
            throw CoreError(.invalidConfiguration("--disk \(text): no path (expected PATH[,readonly][,cache=none|writeback])"))
        }
        var disk = DiskConfiguration(path: path)
        for option in parts.dropFirst() {
            switch option {
            case "readonly", "ro", "readonly=on", "readonly=true": disk.readOnly = true
            case "readonly=off", "readonly=false", "rw": disk.readOnly = false
            case "direct": disk.cache = .none
            case _ where option.hasPrefix("cache="):
                let value = String(option.dropFirst("cache=".count))
                disk.cache = try Cache.parse(value, context: "--disk \(text)")
            default:
                throw CoreError(.invalidConfiguration("--disk \(text): unknown option \"\(option)\" (known: readonly, cache=none|writeback, direct)"))
            }
        }
        return disk
    }
}

extension DiskConfiguration.Cache {
    /// `none` or `writeback`; `context` starts the error message (the flag or spec field).
    public static func parse(_ value: String, context: String) throws(CoreError) -> Self {
        guard let cache = Self(rawValue: value) else {
            throw CoreError(.invalidConfiguration("\(context): unknown cache mode \"\(value)\" (known: none, writeback)"))
        }
        return cache
    }
}

/// A NIC on a host tap device, served by a driver domain
/// (`--net tap=IFNAME[,mac=MAC][,model=virtio|rtl8139]`).
public struct NetConfiguration: Sendable, Equatable {
    /// What the guest sees.
    public enum Model: String, Sendable, Equatable, CaseIterable {
        /// virtio-net on virtio-mmio, served by a `net` domain straight from guest memory.
        case virtio
        /// An emulated Realtek RTL8139 on PCI: every access to its I/O BAR is forwarded to an
        /// `rtl8139` domain as a message (the NIC stock guests drive with `8139too`).
        case rtl8139
    }

    /// The tap interface; the core creates it when it does not exist.
    public var tap: String
    public var model: Model = .virtio
    /// The guest's MAC address; nil: a locally administered one derived from the device index.
    public var mac: [UInt8]?
    /// This NIC's domain's restart policy and watchdog deadline, when they differ from the
    /// machine's (a VM spec file can set them per device).
    public var restartPolicy: RestartPolicy?
    public var watchdogMilliseconds: Double?

    public init(tap: String, mac: [UInt8]? = nil) {
        self.tap = tap
        self.mac = mac
    }

    /// Parses `tap=IFNAME[,mac=xx:xx:xx:xx:xx:xx][,model=virtio|rtl8139]`; errors name the option.
    public static func parse(_ text: String) throws(CoreError) -> NetConfiguration {
        var tap: String?
        var mac: [UInt8]?
        var model = Model.virtio
        for option in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let pair = option.split(separator: "=", maxSplits: 1).map(String.init)
            switch (pair.first ?? "", pair.count) {
            case ("tap", 2):
                let name = pair[1]
                guard !name.isEmpty, name.utf8.count < 16, !name.contains("/"), !name.contains(" ") else {
                    throw CoreError(.invalidConfiguration("--net \(text): tap name \"\(name)\" must be 1 to 15 characters, no '/' or space"))
                }
                tap = name
            case ("mac", 2):
                guard let parsed = parseMAC(pair[1]) else {
                    throw CoreError(.invalidConfiguration("--net \(text): mac \"\(pair[1])\" is not xx:xx:xx:xx:xx:xx"))
                }
                guard parsed[0] & 1 == 0 else {
                    throw CoreError(.invalidConfiguration("--net \(text): mac \(pair[1]) is a multicast address"))
                }
                mac = parsed
            case ("model", 2):
                guard let parsed = Model(rawValue: pair[1]) else {
                    throw CoreError(.invalidConfiguration("--net \(text): unknown model \"\(pair[1])\" (known: virtio, rtl8139)"))
                }
                model = parsed
            default:
                throw CoreError(.invalidConfiguration(
                    "--net \(text): unknown option \"\(option)\" (expected tap=IFNAME[,mac=xx:xx:xx:xx:xx:xx][,model=virtio|rtl8139])"))
            }
        }
        guard let tap else {
            throw CoreError(.invalidConfiguration("--net \(text): no tap=IFNAME (expected tap=IFNAME[,mac=xx:xx:xx:xx:xx:xx][,model=virtio|rtl8139])"))
        }
        var net = NetConfiguration(tap: tap, mac: mac)
        net.model = model
        return net
    }

    static func parseMAC(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}

/// When and how fast the supervisor restarts a domain that died.
///
/// The first restart after a domain made progress is immediate. A domain that dies again
/// before completing any request is restarted after `initialBackoff`, doubling up to
/// `maximumBackoff`. More than `budget` restarts within `window` mark the device failed: the
/// disk answers every request with an I/O error from then on, and the guest keeps running.
public struct RestartPolicy: Sendable, Equatable {
    public var budget: Int = 100
    public var windowSeconds: Double = 60
    public var initialBackoffMilliseconds: Double = 10
    public var maximumBackoffMilliseconds: Double = 1000

    public init() {}
}
