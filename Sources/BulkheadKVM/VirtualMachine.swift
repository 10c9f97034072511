import BulkheadSystem
import CBulkheadLinux

/// A guest-physical address.
public struct GuestAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: GuestAddress, b: GuestAddress) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// A KVM virtual machine: memory slots, the in-kernel irqchip and PIT, interrupt lines, vCPUs.
public final class VirtualMachine: @unchecked Sendable {
    let fd: FileDescriptor
    let runSize: Int

    init(fd: consuming FileDescriptor, runSize: Int) {
        self.fd = fd
        self.runSize = runSize
    }

    /// Creates the in-kernel PIC, IOAPIC and local APICs, and the PIT.
    public func createIRQChipAndPIT() throws(KVMError) {
        try KVMError.wrap { () throws(SystemError) in
            // The TSS and identity-map pages below 4 GiB that VMX needs; placed just under
            // the BIOS area where no guest RAM or MMIO lives.
            try fd.ioctl("KVM_SET_TSS_ADDR", BH_KVM_SET_TSS_ADDR, value: 0xfffb_d000)
            try fd.ioctl("KVM_CREATE_IRQCHIP", BH_KVM_CREATE_IRQCHIP)
            var pit = kvm_pit_config()
            pit.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
            try fd.ioctl("KVM_CREATE_PIT2", BH_KVM_CREATE_PIT2, &pit)
        }
    }

    /// Registers `size` bytes of host memory at `hostAddress` as guest RAM at `guestAddress`.
    public func setUserMemoryRegion(
        slot: UInt32, guestAddress: GuestAddress, size: Int, hostAddress: UnsafeMutableRawPointer
    ) throws(KVMError) {
        var region = kvm_userspace_memory_region()
        region.slot = slot
        region.guest_phys_addr = guestAddress.rawValue
        region.memory_size = UInt64(size)
        region.userspace_addr = UInt64(UInt(bitPattern: hostAddress))
        try KVMError.wrap { () throws(SystemError) in
            try fd.ioctl("KVM_SET_USER_MEMORY_REGION(slot \(slot))", BH_KVM_SET_USER_MEMORY_REGION, &region)
        }
    }

    /// Sets the level of an interrupt line of the in-kernel PIC/IOAPIC.
    public func setIRQLine(_ irq: UInt32, level: Bool) throws(KVMError) {
        var line = kvm_irq_level()
        line.irq = irq
        line.level = level ? 1 : 0
        try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_IRQ_LINE(\(irq))", BH_KVM_IRQ_LINE, &line) }
    }

    /// Makes a guest write of `length` bytes at MMIO `address` (equal to `datamatch`, when
    /// given) signal the eventfd `fd` inside KVM, without an exit to the VMM.
    public func registerIoeventfd(fd: Int32, address: GuestAddress, length: UInt32, datamatch: UInt64?) throws(KVMError) {
        var event = kvm_ioeventfd()
        event.addr = address.rawValue
        event.len = length
        event.fd = fd
        if let datamatch {
            event.datamatch = datamatch
            event.flags = UInt32(BH_KVM_IOEVENTFD_FLAG_DATAMATCH)
        }
        try KVMError.wrap { () throws(SystemError) in
            try self.fd.ioctl("KVM_IOEVENTFD(\(address))", BH_KVM_IOEVENTFD, &event)
        }
    }

    /// Makes a write to the eventfd `fd` raise guest interrupt `gsi` (edge) inside KVM.
    public func registerIrqfd(fd: Int32, gsi: UInt32) throws(KVMError) {
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(bitPattern: fd)
        irqfd.gsi = gsi
        try KVMError.wrap { () throws(SystemError) in try self.fd.ioctl("KVM_IRQFD(gsi \(gsi))", BH_KVM_IRQFD, &irqfd) }
    }

    /// Creates vCPU `id` and maps its `kvm_run` area.
    public func createVcpu(id: Int) throws(KVMError) -> Vcpu {
        try KVMError.wrap { () throws(SystemError) in
            let vcpufd = FileDescriptor(owning: try fd.ioctl("KVM_CREATE_VCPU(\(id))", BH_KVM_CREATE_VCPU, value: UInt(id)))
            let run = try MemoryMapping(sharing: vcpufd, length: runSize)
            return Vcpu(id: id, fd: vcpufd, run: run)
        }
    }
}
