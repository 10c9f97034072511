import BulkheadKVM
import BulkheadSystem
import Logging

/// The Realtek RTL8139 as the core sees it: a PCI identity and a 256-byte I/O BAR whose
/// registers are the `rtl8139` domain's. The core holds configuration space and routes the
/// BAR; every register access is a message to the domain (`DomainSupervisor.accessRegister`).
enum RTL8139 {
    /// Realtek 8139, Ethernet controller; subsystem as QEMU's (Red Hat, QEMU). Revision below
    /// 0x20: Linux gives 0x20 and above (8139C+) to 8139cp, below to 8139too.
    static let identity = PCIFunction.Identity(vendorID: 0x10ec, deviceID: 0x8139, classCode: 0x020000, revision: 0x10,
                                               subsystemVendorID: 0x1af4, subsystemID: 0x1100)
    /// The same 256 registers through BAR 0 (I/O) and BAR 1 (memory; 8139too's default).
    static let ioSize: UInt32 = 256
    /// INTA# of emulated device `i` reaches GSI 16 + i (the IOAPIC's PCI pins on a PC).
    static let firstGSI: UInt32 = 16
}

/// A BAR served by a driver domain: each access is forwarded and the vCPU waits for the
/// answer.
final class ForwardedBAR: PortIODevice {
    let supervisor: DomainSupervisor
    let bar: UInt32

    init(supervisor: DomainSupervisor, bar: UInt32) {
        self.supervisor = supervisor
        self.bar = bar
    }

    func read(offset: UInt16, size: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: supervisor.accessRegister(bar: bar, offset: UInt64(offset), size: UInt32(size), write: nil))
    }

    func write(offset: UInt16, size: Int, value: UInt32) {
        _ = supervisor.accessRegister(bar: bar, offset: UInt64(offset), size: UInt32(size), write: UInt64(value))
    }
}

extension Machine {
    /// Opens the tap, creates the irqfd for the NIC's INTx line, the supervisor of its
    /// `rtl8139` domain (which gets the MAC in `Attach.config`) and its PCI function
    /// (`pciIndex`: 0 for the first emulated device).
    static func makeEmulatedNIC(
        index: Int, pciIndex: Int, net: NetConfiguration, vm: VirtualMachine, memory: GuestMemory,
        configuration: MachineConfiguration, logger: Logger, events: DomainEventLog
    ) throws(CoreError) -> (PCIFunction, DomainSupervisor) {
        let id = "net\(index)"
        let tap = try openTap(net.tap)
        let mac = net.mac ?? VirtioNet.defaultMAC(index: index)
        let gsi = RTL8139.firstGSI + UInt32(pciIndex)
        let irqfd: SharedFileDescriptor
        do {
            irqfd = SharedFileDescriptor(try FileDescriptor.eventfd(nonBlocking: true))
        } catch { throw CoreError(.system, underlying: error) }
        do { try vm.registerIrqfd(fd: irqfd.rawValue, gsi: gsi) } catch { throw CoreError(.kvm, underlying: error) }

        let spec = DomainSupervisor.Specification(
            kind: "rtl8139", id: id, executable: configuration.domainExecutable ?? defaultDomainExecutable(),
            queueCount: 0, readOnly: false, capacitySectors: 0, config: mac,
            policy: net.restartPolicy ?? configuration.restartPolicy,
            watchdogMilliseconds: net.watchdogMilliseconds ?? configuration.watchdogMilliseconds)
        let supervisor = try DomainSupervisor(spec: spec, guestMemory: memory, backend: tap, irqfd: irqfd, kicks: [],
                                              logger: logger, events: events, onFailure: {})
        // Present from power-on (no driver handshake as in virtio): attach as soon as it says Hello.
        supervisor.activate(VirtioActivation(driverFeatures: 0, queues: []))
        let ioBase = PCIIOWindow.base + UInt16(pciIndex) * UInt16(RTL8139.ioSize)
        let memoryBase = UInt32(PCIMemoryWindow.base) + UInt32(pciIndex) * 0x1000
        let function = PCIFunction(identity: RTL8139.identity, ioSize: RTL8139.ioSize, ioBase: ioBase,
                                   interruptLine: UInt8(gsi), device: ForwardedBAR(supervisor: supervisor, bar: 0),
                                   memory: (size: RTL8139.ioSize, base: memoryBase, device: ForwardedBAR(supervisor: supervisor, bar: 1)))
        return (function, supervisor)
    }
}
