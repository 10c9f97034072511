import BulkheadSystem
import CBulkheadLinux

/// Why `KVM_RUN` returned.
public enum VcpuExit {
    /// A port I/O access. `data` lies in the `kvm_run` area: fill it for `.in`, read it for `.out`.
    case io(port: UInt16, direction: IODirection, size: Int, count: Int, data: UnsafeMutableRawBufferPointer)
    /// An MMIO access that no memory slot or ioeventfd claimed.
    case mmio(address: GuestAddress, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
    /// The guest triple-faulted or otherwise asked for a shutdown.
    case shutdown
    /// `KVM_RUN` was interrupted by a signal (a kick) or by `immediate_exit`.
    case interrupted
    /// `KVM_EXIT_SYSTEM_EVENT` (reset, shutdown, crash).
    case systemEvent(type: UInt32)
    /// KVM could not emulate something (e.g. an instruction this PVM host lacks).
    case internalError(suberror: UInt32)
    /// VM entry failed.
    case failEntry(reason: UInt64)
    /// `hlt` without an in-kernel irqchip.
    case halt
    /// Anything else.
    case unknown(reason: UInt32)
}

public enum IODirection: Sendable { case `in`, out }

/// A segment register as `KVM_SET_SREGS` takes it.
public struct Segment: Sendable, Equatable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    public var type: UInt8
    public var present: Bool = true
    public var dpl: UInt8 = 0
    public var db: Bool
    public var s: Bool = true
    public var l: Bool = false
    public var g: Bool

    public init(base: UInt64, limit: UInt32, selector: UInt16, type: UInt8, db: Bool, s: Bool = true, l: Bool = false, g: Bool) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type
        self.db = db; self.s = s; self.l = l; self.g = g
    }

    var raw: kvm_segment {
        var seg = kvm_segment()
        seg.base = base; seg.limit = limit; seg.selector = selector; seg.type = type
        seg.present = present ? 1 : 0; seg.dpl = dpl; seg.db = db ? 1 : 0; seg.s = s ? 1 : 0
        seg.l = l ? 1 : 0; seg.g = g ? 1 : 0; seg.avl = 0; seg.unusable = 0
        return seg
    }
}

/// The entry state of a vCPU: segments and control registers (`kvm_sregs` subset).
public struct SpecialRegisters: Sendable {
    public var code: Segment
    public var data: Segment
    public var task: Segment
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64

    public init(code: Segment, data: Segment, task: Segment, cr0: UInt64, cr3: UInt64, cr4: UInt64, efer: UInt64) {
        self.code = code; self.data = data; self.task = task
        self.cr0 = cr0; self.cr3 = cr3; self.cr4 = cr4; self.efer = efer
    }
}

/// General-purpose registers a boot protocol sets.
public struct Registers: Sendable {
    public var rip: UInt64 = 0
    public var rsp: UInt64 = 0
    public var rflags: UInt64 = 0x2
    public var rax: UInt64 = 0
    public var rbx: UInt64 = 0
    public var rsi: UInt64 = 0
    public var rdi: UInt64 = 0
    public init() {}
}

/// Multiprocessing state (`KVM_SET_MP_STATE`).
public enum MPState: UInt32, Sendable {
    case runnable = 0
    case uninitialized = 1
    case initReceived = 2
    case halted = 3
    case sipiReceived = 4
}

/// A virtual CPU. Run it on one dedicated thread; other threads may only `kick` it.
public final class Vcpu: @unchecked Sendable {
    public let id: Int
    let fd: FileDescriptor
    let run: MemoryMapping

    init(id: Int, fd: consuming FileDescriptor, run: consuming MemoryMapping) {
        self.id = id
        self.fd = fd
        self.run = run
    }

    private var runArea: UnsafeMutablePointer<kvm_run> {
        // SAFETY: the mapping is KVM's kvm_run area for this vCPU, at least sizeof(kvm_run)
        // bytes (KVM_GET_VCPU_MMAP_SIZE), alive as long as self.
        run.base.assumingMemoryBound(to: kvm_run.self)
    }

    /// Enters the guest until the next exit that needs the VMM.
    public func runOnce() throws(KVMError) -> VcpuExit {
        do {
            try systemCall32("ioctl(KVM_RUN, vcpu \(id))", retryOnInterrupt: false) {
                bh_ioctl_val(fd.rawValue, BH_KVM_RUN, 0)
            }
        } catch {
            if error.errno == .interrupted || error.errno == .again {
                runArea.pointee.immediate_exit = 0
                return .interrupted
            }
            throw KVMError(.systemCall, underlying: error)
        }
        let area = runArea
        switch Int32(area.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let io = bh_run_io(area)
            // SAFETY: KVM places the I/O data inside the kvm_run mapping at data_offset,
            // size*count bytes long; we bound it by the mapping length anyway.
            let offset = Int(io.data_offset)
            let length = Int(io.size) * Int(io.count)
            guard offset >= 0, length >= 0, offset + length <= run.length else {
                return .unknown(reason: area.pointee.exit_reason)
            }
            let data = UnsafeMutableRawBufferPointer(start: run.base + offset, count: length)
            return .io(port: io.port, direction: io.direction == KVM_EXIT_IO_OUT ? .out : .in,
                       size: Int(io.size), count: Int(io.count), data: data)
        case KVM_EXIT_MMIO:
            let length = min(Int(bh_run_mmio_len(area)), 8)
            // SAFETY: mmio.data is an 8-byte array inside kvm_run.
            let data = UnsafeMutableRawBufferPointer(start: bh_run_mmio_data(area), count: length)
            return .mmio(address: GuestAddress(bh_run_mmio_addr(area)), isWrite: bh_run_mmio_is_write(area) != 0, data: data)
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_HLT:
            return .halt
        case KVM_EXIT_INTR:
            return .interrupted
        case KVM_EXIT_SYSTEM_EVENT:
            return .systemEvent(type: bh_run_system_event_type(area))
        case KVM_EXIT_INTERNAL_ERROR:
            return .internalError(suberror: bh_run_internal_suberror(area))
        case KVM_EXIT_FAIL_ENTRY:
            return .failEntry(reason: bh_run_fail_entry_reason(area))
        default:
            return .unknown(reason: area.pointee.exit_reason)
        }
    }

    /// Asks the next (or current, together with a signal) `KVM_RUN` to return at once.
    public func requestImmediateExit() {
        // SAFETY: immediate_exit is a single byte that KVM reads on entry; a racy write
        // is what the KVM API intends here.
        runArea.pointee.immediate_exit = 1
    }

    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        var table = bh_cpuid()
        let count = min(entries.count, Int(BH_MAX_CPUID_ENTRIES))
        table.header.nent = UInt32(count)
        withUnsafeMutableBytes(of: &table.entries) { raw in
            let out = raw.bindMemory(to: kvm_cpuid_entry2.self)
            for i in 0..<count { out[i] = entries[i].raw }
        }
        try KVMError.wrap { () throws(SystemError) in _ = try fd.ioctl("KVM_SET_CPUID2", BH_KVM_SET_CPUID2, &table) }
    }

    public func setSpecialRegisters(_ state: SpecialRegisters) throws(KVMError) {
        var sregs = kvm_sregs()
        try KVMError.wrap { () throws(SystemError) in
            try fd.ioctl("KVM_GET_SREGS", BH_KVM_GET_SREGS, &sregs)
            sregs.cs = state.code.raw
            sregs.ds = state.data.raw; sregs.es = state.data.raw; sregs.fs = state.data.raw
            sregs.gs = state.data.raw; sregs.ss = state.data.raw
            sregs.tr = state.task.raw
            sregs.cr0 = state.cr0; sregs.cr3 = state.cr3; sregs.cr4 = state.cr4; sregs.efer = state.efer
            try fd.ioctl("KVM_SET_SREGS", BH_KVM_SET_SREGS, &sregs)
        }
    }

    public func setRegisters(_ state: Registers) throws(KVMError) {
        var regs = kvm_regs()
        regs.rip = state.rip; regs.rsp = state.rsp; regs.rflags = state.rflags
        regs.rax = state.rax; regs.rbx = state.rbx; regs.rsi = state.rsi; regs.rdi = state.rdi
        try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_SET_REGS", BH_KVM_SET_REGS, &regs) }
    }

    /// The instruction pointer and a few registers, for error reports.
    public func registerSummary() -> String {
        var regs = kvm_regs()
        var sregs = kvm_sregs()
        guard (try? fd.ioctl("KVM_GET_REGS", BH_KVM_GET_REGS, &regs)) != nil,
              (try? fd.ioctl("KVM_GET_SREGS", BH_KVM_GET_SREGS, &sregs)) != nil else { return "registers unavailable" }
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        return "rip=\(hex(regs.rip)) rsp=\(hex(regs.rsp)) rflags=\(hex(regs.rflags)) cs=\(hex(UInt64(sregs.cs.selector))) "
            + "cr0=\(hex(sregs.cr0)) cr3=\(hex(sregs.cr3)) cr4=\(hex(sregs.cr4)) efer=\(hex(sregs.efer))"
    }

    public func setMPState(_ state: MPState) throws(KVMError) {
        var mp = kvm_mp_state(mp_state: state.rawValue)
        try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_SET_MP_STATE", BH_KVM_SET_MP_STATE, &mp) }
    }

    /// The guest TSC frequency in kHz (`KVM_GET_TSC_KHZ`).
    public func tscKHz() throws(KVMError) -> UInt32 {
        UInt32(try KVMError.wrap { () throws(SystemError) in try fd.ioctl("KVM_GET_TSC_KHZ", BH_KVM_GET_TSC_KHZ) })
    }
}
