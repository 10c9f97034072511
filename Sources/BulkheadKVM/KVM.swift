import BulkheadSystem
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// The KVM subsystem (`/dev/kvm`): version checks, capabilities, and VM creation.
public final class KVM: @unchecked Sendable {
    let fd: FileDescriptor

    /// The path the device is opened from.
    public static let devicePath = "/dev/kvm"

    /// Opens `/dev/kvm` and checks the API version.
    public init(path: String = KVM.devicePath) throws(KVMError) {
        do {
            fd = try FileDescriptor.open(path, flags: O_RDWR)
        } catch {
            throw KVMError(.unavailable, underlying: error)
        }
        let version = try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_GET_API_VERSION", BH_KVM_GET_API_VERSION) }
        guard version == 12 else { throw KVMError(.unsupportedAPIVersion(version)) }
        for (cap, name) in [(BH_KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"), (BH_KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"),
                            (BH_KVM_CAP_PIT2, "KVM_CAP_PIT2")] {
            guard (try? check(extension: cap)) ?? 0 > 0 else { throw KVMError(.missingCapability(name)) }
        }
    }

    /// `KVM_CHECK_EXTENSION`: 0 when absent, otherwise extension-specific.
    public func check(extension capability: Int32) throws(KVMError) -> Int32 {
        try KVMError.wrap { () throws(SystemError) in
            try fd.ioctl("KVM_CHECK_EXTENSION", BH_KVM_CHECK_EXTENSION, value: UInt(capability))
        }
    }

    /// Size of the shared `kvm_run` area of each vCPU.
    public func vcpuMmapSize() throws(KVMError) -> Int {
        Int(try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_GET_VCPU_MMAP_SIZE", BH_KVM_GET_VCPU_MMAP_SIZE) })
    }

    /// The CPUID leaves KVM can present to a guest.
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var table = bh_cpuid()
        table.header.nent = UInt32(BH_MAX_CPUID_ENTRIES)
        try KVMError.wrap { () throws(SystemError) in
            _ = try fd.ioctl("KVM_GET_SUPPORTED_CPUID", BH_KVM_GET_SUPPORTED_CPUID, &table)
        }
        return withUnsafeBytes(of: &table.entries) { raw in
            let entries = raw.bindMemory(to: kvm_cpuid_entry2.self)
            return (0..<Int(table.header.nent)).map { CPUIDEntry(entries[$0]) }
        }
    }

    /// Creates a VM with no memory and no vCPUs.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let vmfd = try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_CREATE_VM", BH_KVM_CREATE_VM) }
        return VirtualMachine(fd: FileDescriptor(owning: vmfd), runSize: try vcpuMmapSize())
    }
}

/// One CPUID leaf/subleaf as KVM describes it.
public struct CPUIDEntry: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    init(_ raw: kvm_cpuid_entry2) {
        function = raw.function; index = raw.index; flags = raw.flags
        eax = raw.eax; ebx = raw.ebx; ecx = raw.ecx; edx = raw.edx
    }

    var raw: kvm_cpuid_entry2 {
        var entry = kvm_cpuid_entry2()
        entry.function = function; entry.index = index; entry.flags = flags
        entry.eax = eax; entry.ebx = ebx; entry.ecx = ecx; entry.edx = edx
        return entry
    }
}
