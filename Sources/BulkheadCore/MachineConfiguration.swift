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

    public static let maximumVcpus = 254

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
