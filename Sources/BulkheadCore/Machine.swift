import BulkheadBoot
import BulkheadKVM
import BulkheadProtocol
import BulkheadSystem
import CBulkheadLinux
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A booted virtual machine: KVM VM, guest memory, platform devices and one thread per vCPU.
///
/// `run()` blocks until any vCPU asks the machine to stop (debug-exit, reset, triple fault,
/// KVM failure); then every other vCPU is kicked out of `KVM_RUN` and joined.
public final class Machine: @unchecked Sendable {
    public let configuration: MachineConfiguration
    let logger: Logger
    let kvm: KVM
    let vm: VirtualMachine
    public let memory: GuestMemory
    let vcpus: [Vcpu]
    let bus: IOBus
    let serial: Serial16550
    let mmio: MMIOBus
    let supervisors: [DomainSupervisor]
    /// What happened to the domains (exits, restarts, recoveries, failures).
    public let events = DomainEventLog()
    /// When the machine was created (CLOCK_MONOTONIC ms), for uptime.
    public let createdAt = monotonicMilliseconds()

    /// Where the first virtio-mmio device lives, and its interrupt; device i is at
    /// base + i * 0x200 with IRQ 5 + i.
    static let virtioMMIOBase: UInt64 = 0xd000_0000
    static let virtioFirstIRQ: UInt32 = 5
    let stop: StopState

    /// `/dev/kvm`, or `$BULKHEAD_KVM_DEVICE` (tests use it to check the no-KVM error).
    static var kvmDevicePath: String {
        getenv("BULKHEAD_KVM_DEVICE").map { String(cString: $0) } ?? KVM.devicePath
    }

    /// The signal used to kick vCPU threads out of KVM_RUN.
    static let kickSignal = SIGUSR1

    public init(_ configuration: MachineConfiguration, logger: Logger,
                consoleOutput: @escaping @Sendable (UInt8) -> Void) throws(CoreError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        do { stop = try StopState() } catch { throw CoreError(.system, underlying: error) }

        let path = configuration.kernelPath
        let image: [UInt8]
        do { image = try FileDescriptor.readContents(of: path) } catch { throw CoreError(.kernelUnreadable(path: path), underlying: error) }
        let elf: ELFImage
        do { elf = try ELFImage.parse(image, path: path) } catch { throw CoreError(.boot, underlying: error) }
        // Fail on a missing PVH note before touching KVM, so the error is about the file.
        guard elf.pvhEntry != nil else { throw CoreError(.boot, underlying: BootError(.noPVHEntry, path: path)) }

        do {
            kvm = try KVM(path: Self.kvmDevicePath)
            vm = try kvm.createVM()
        } catch { throw CoreError(.kvm, underlying: error) }

        memory = try GuestMemory(size: configuration.memorySize)
        var vcpus: [Vcpu] = []
        do {
            // Memory first: registering a slot after the irqchip exists waits for an SRCU
            // grace period (measured 4-11 ms here, against 0.1 ms before it).
            try memory.register(with: vm)
            try vm.createIRQChipAndPIT()
            let cpuid = try kvm.supportedCPUID()
            for id in 0..<configuration.vcpus {
                let vcpu = try vm.createVcpu(id: id)
                try vcpu.setCPUID(Self.cpuid(cpuid, apicID: UInt32(id)))
                vcpus.append(vcpu)
            }
        } catch { throw CoreError(.kvm, underlying: error) }
        self.vcpus = vcpus

        // Driver domains: one virtio-mmio transport in the core and one supervised domain
        // process per disk and per NIC. Announced to the guest the way Linux and QEMU's microvm
        // expect.
        var devices: [(base: GuestAddress, size: UInt64, device: any MMIODevice)] = []
        var supervisors: [DomainSupervisor] = []
        var announcements: [String] = []
        // Disks first (blk0, blk1, ...), then virtio NICs (net0, ...): virtio device `slot` is
        // at base + slot * 0x200 with IRQ 5 + slot. Emulated NICs (model=rtl8139) are PCI
        // functions instead, devices 1, 2, ... on bus 0.
        let virtioNets = configuration.nets.indices.filter { configuration.nets[$0].model == .virtio }
        let diskCount = configuration.disks.count
        for slot in 0..<(diskCount + virtioNets.count) {
            let base = GuestAddress(Self.virtioMMIOBase + UInt64(slot) * VirtioMMIOTransport.regionSize)
            let irq = Self.virtioFirstIRQ + UInt32(slot)
            let (transport, supervisor): (any MMIODevice, DomainSupervisor)
            if slot < diskCount {
                (transport, supervisor) = try Self.makeBlockDevice(
                    index: slot, disk: configuration.disks[slot], base: base, irq: irq, vm: vm, memory: memory,
                    configuration: configuration, logger: logger, events: events)
            } else {
                let index = virtioNets[slot - diskCount]
                (transport, supervisor) = try Self.makeNetDevice(
                    index: index, net: configuration.nets[index], base: base, irq: irq, vm: vm,
                    memory: memory, configuration: configuration, logger: logger, events: events)
            }
            devices.append((base: base, size: VirtioMMIOTransport.regionSize, device: transport))
            supervisors.append(supervisor)
            announcements.append("virtio_mmio.device=\(VirtioMMIOTransport.regionSize)@\(base):\(irq)")
        }
        var pciFunctions: [PCIFunction] = []
        for index in configuration.nets.indices where configuration.nets[index].model == .rtl8139 {
            let (function, supervisor) = try Self.makeEmulatedNIC(
                index: index, pciIndex: pciFunctions.count, net: configuration.nets[index], vm: vm, memory: memory,
                configuration: configuration, logger: logger, events: events)
            pciFunctions.append(function)
            supervisors.append(supervisor)
        }
        if !pciFunctions.isEmpty {
            devices.append((base: GuestAddress(PCIMemoryWindow.base), size: PCIMemoryWindow.size,
                            device: PCIMemoryWindow(functions: pciFunctions)))
        }
        self.supervisors = supervisors
        mmio = MMIOBus(devices)

        var commandLine = configuration.commandLine
        for announcement in announcements { commandLine += (commandLine.isEmpty ? "" : " ") + announcement }
        if configuration.appendTSCFrequency, let khz = try? vcpus[0].tscKHz(), khz > 0,
           !commandLine.split(separator: " ").contains(where: { $0.hasPrefix("tsc_khz=") }) {
            commandLine += (commandLine.isEmpty ? "" : " ") + "tsc_khz=\(khz)"
        }

        let boot: PVHBoot
        do {
            boot = try PVHBoot(image: elf, fileBytes: image, path: path, memorySize: configuration.memorySize,
                               vcpus: configuration.vcpus, commandLine: commandLine)
        } catch { throw CoreError(.boot, underlying: error) }
        for placement in boot.placements {
            try memory.write(placement.bytes, at: GuestAddress(placement.address), zeroFill: placement.zeroFill)
        }
        do {
            try vcpus[0].setSpecialRegisters(Self.pvhEntryState)
            var regs = Registers()
            regs.rip = UInt64(boot.entry)
            regs.rbx = boot.startInfoAddress
            try vcpus[0].setRegisters(regs)
        } catch { throw CoreError(.kvm, underlying: error) }

        let vm = self.vm
        let stop = self.stop
        serial = Serial16550(output: consoleOutput, setIRQ: { level in
            try? vm.setIRQLine(Serial16550.com1IRQ, level: level)
        })
        var ports: [(base: UInt16, count: UInt16, device: any PortIODevice)] = [
            (base: Serial16550.com1Port, count: 8, device: serial),
            (base: DebugExit.port, count: DebugExit.portCount, device: DebugExit { code in stop.request(.debugExit(code: code)) }),
            (base: I8042.dataPort, count: 5, device: I8042 { stop.request(.reset) }),
        ]
        if !pciFunctions.isEmpty {
            ports.append((base: PCIBus.configAddressPort, count: PCIBus.portCount, device: PCIBus(functions: pciFunctions)))
            ports.append((base: PCIIOWindow.base, count: PCIIOWindow.count, device: PCIIOWindow(functions: pciFunctions)))
        }
        bus = IOBus(ports)
        logger.debug("machine created", metadata: [
            "kernel.path": "\(path)", "pvh.entry": "0x\(String(boot.entry, radix: 16))",
            "memory.bytes": "\(configuration.memorySize)", "vcpus": "\(configuration.vcpus)",
            "cmdline": "\(commandLine)",
        ])
    }

    /// The PVH entry state: 32-bit protected mode, paging off, flat 4 GiB code and data
    /// segments, a 32-bit busy TSS as the spec asks for.
    static let pvhEntryState = SpecialRegisters(
        code: Segment(base: 0, limit: 0xffff_ffff, selector: 0x08, type: 0xb, db: true, g: true),
        data: Segment(base: 0, limit: 0xffff_ffff, selector: 0x10, type: 0x3, db: true, g: true),
        task: Segment(base: 0, limit: 0x67, selector: 0x18, type: 0xb, db: false, s: false, g: false),
        cr0: 0x11, cr3: 0, cr4: 0, efer: 0)

    /// KVM's supported CPUID with this vCPU's APIC id filled in.
    static func cpuid(_ supported: [CPUIDEntry], apicID: UInt32) -> [CPUIDEntry] {
        supported.map { entry in
            var entry = entry
            switch entry.function {
            case 1: entry.ebx = (entry.ebx & 0x00ff_ffff) | (apicID << 24)
            case 0xb, 0x1f: entry.edx = apicID
            default: break
            }
            return entry
        }
    }

    /// Bytes a user typed on the console.
    public func consoleInput(_ bytes: [UInt8]) { serial.receive(bytes) }

    /// Runs every vCPU on its own thread until the machine stops.
    public func run() -> MachineExit {
        _ = bh_install_kick_handler(Self.kickSignal)
        var threads: [DedicatedThread?] = []
        for vcpu in vcpus {
            let thread = DedicatedThread.start(name: "vcpu\(vcpu.id)") { [self] in self.vcpuLoop(vcpu) }
            if thread == nil { stop.request(.vcpuFailure(detail: "cannot create the thread of vcpu \(vcpu.id)")) }
            threads.append(thread)
        }
        for supervisor in supervisors { supervisor.start() }
        stop.waitUntilRequested()
        for (vcpu, thread) in zip(vcpus, threads) {
            vcpu.requestImmediateExit()
            thread?.kick(signal: Self.kickSignal)
        }
        for thread in threads { thread?.join() }
        for supervisor in supervisors { supervisor.stop() }
        return stop.reason ?? .vcpuFailure(detail: "stopped without a reason")
    }

    /// Seconds since the machine was created.
    public var uptimeSeconds: Double { (monotonicMilliseconds() - createdAt) / 1000 }

    /// The operator's view of every domain.
    public var domainStatuses: [DomainSupervisor.Status] { supervisors.map(\.status) }

    /// What each driver domain went through (restarts, exit reasons, recovery times).
    public var domainReports: [DomainSupervisor.Report] { supervisors.map(\.report) }

    /// Sends a fault-injection request to the domain `id` (`blk0`, ...); false if there is none.
    @discardableResult
    public func injectFault(domain id: String, _ fault: ControlMessage.InjectFault) -> Bool {
        guard let supervisor = supervisors.first(where: { $0.spec.id == id }) else { return false }
        return supervisor.inject(fault)
    }

    /// Control-path probe of the domain `id`: `count` Ping/Pong round trips in µs; nil if there is
    /// no such domain or none serves right now.
    public func pingDomain(_ id: String, count: Int) -> [Double]? {
        supervisors.first(where: { $0.spec.id == id })?.ping(count: count)
    }

    /// Stops the machine from outside (e.g. SIGINT): every vCPU leaves KVM_RUN.
    public func requestStop(_ exit: MachineExit) { stop.request(exit) }

    private func vcpuLoop(_ vcpu: Vcpu) {
        // The kick must reach this thread even if whoever started us blocked the signal (a
        // parent's blocked mask is inherited across exec): an AP waiting for its SIPI sits in
        // KVM_RUN, and only the signal gets it out.
        _ = bh_block_signal(Self.kickSignal, 0)
        while !stop.isRequested {
            let exit: VcpuExit
            do { exit = try vcpu.runOnce() } catch {
                stop.request(.vcpuFailure(detail: "vcpu \(vcpu.id): \(error)"))
                return
            }
            switch exit {
            case .io(let port, let direction, let size, let count, let data):
                for index in 0..<count {
                    let slot = UnsafeMutableRawBufferPointer(rebasing: data[(index * size)..<((index + 1) * size)])
                    switch direction {
                    case .out:
                        var value: UInt32 = 0
                        for (i, byte) in slot.enumerated() { value |= UInt32(byte) << (8 * i) }
                        bus.write(port: port, size: size, value: value)
                    case .in:
                        let value = bus.read(port: port, size: size)
                        for i in 0..<size { slot[i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
                    }
                }
            case .mmio(let address, let isWrite, let data):
                if isWrite { mmio.write(address, data: UnsafeRawBufferPointer(data)) } else { mmio.read(address, data: data) }
            case .interrupted:
                continue
            case .shutdown:
                stop.request(.tripleFault(detail: "vcpu \(vcpu.id): \(vcpu.registerSummary())"))
            case .systemEvent(let type):
                // KVM_SYSTEM_EVENT_SHUTDOWN = 1, RESET = 2, CRASH = 3.
                stop.request(type == 2 ? .reset : .vcpuFailure(detail: "vcpu \(vcpu.id): system event \(type)"))
            case .internalError(let suberror):
                stop.request(.vcpuFailure(detail: "vcpu \(vcpu.id): KVM internal error (suberror \(suberror)); "
                    + "the guest may have used an instruction this host cannot emulate; \(vcpu.registerSummary())"))
            case .failEntry(let reason):
                stop.request(.vcpuFailure(detail: "vcpu \(vcpu.id): VM entry failed (reason 0x\(String(reason, radix: 16))); "
                    + vcpu.registerSummary()))
            case .halt:
                continue
            case .unknown(let reason):
                stop.request(.vcpuFailure(detail: "vcpu \(vcpu.id): unexpected KVM exit \(reason); \(vcpu.registerSummary())"))
            }
        }
    }
}

/// The first stop request wins; everyone else only learns that the machine is stopping.
final class StopState: Sendable {
    private let state = Mutex<MachineExit?>(nil)
    private let requested = Atomic<Bool>(false)
    private let wakeup: FileDescriptor

    init() throws(SystemError) { wakeup = try FileDescriptor.eventfd() }

    var isRequested: Bool { requested.load(ordering: .acquiring) }
    var reason: MachineExit? { state.withLock { $0 } }

    func request(_ exit: MachineExit) {
        let first = state.withLock { current -> Bool in
            guard current == nil else { return false }
            current = exit
            return true
        }
        guard first else { return }
        requested.store(true, ordering: .releasing)
        signalEventfd(wakeup.rawValue)
    }

    /// Blocks the calling (non-vCPU) thread until a stop is requested.
    func waitUntilRequested() {
        while !isRequested { readEventfd(wakeup.rawValue) }
    }
}
