import BulkheadVirtio
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

/// A Realtek RTL8139 (C) Fast Ethernet controller, as a stock guest's in-tree driver (Linux's
/// 8139too, a BSD's rl) drives it: the register file behind its BARs, the four transmit
/// descriptors, the receive ring in guest memory, the 93C46 EEPROM with the station address,
/// and one interrupt line.
///
/// Everything the chip knows lives in a device-state area it is given
/// (`RTL8139StateLayout`); a second `RTL8139` built on the same area — in a restarted domain —
/// continues exactly: the same registers, the same ring position, and register accesses the
/// first one applied are answered, not applied again (`registerAccess(...sequence:)`).
///
/// Guest memory is hostile: every transfer (a frame read from TSADn, a frame written into the
/// ring at RBSTART) goes through `GuestRAM.buffer(at:length:)`; an address outside guest
/// memory aborts the transfer (TSD.TABT and ISR.TER, or ISR.SERR on receive). No value the
/// guest writes can trap.
///
/// One thread at a time: the domain's serving loop.
public final class RTL8139 {
    /// The largest frame sent or received, without its CRC (the chip's limit; larger ones are
    /// aborted on transmit and dropped on receive).
    public static let maximumFrameLength = 1792
    /// Shorter frames are padded with zeros to this length (a minimal Ethernet frame without
    /// its CRC).
    public static let minimumFrameLength = 60
    /// Frames shorter than an Ethernet header are dropped on receive.
    public static let headerLength = 14
    /// Ring bytes a frame of `length` takes: header, frame, CRC, rounded up to 4.
    static func ringBytes(_ length: Int) -> Int { (4 + length + 4 + 3) & ~3 }
    /// Room for the largest frame: less than this left in the ring and the domain leaves frames
    /// waiting in the tap.
    public static let roomForLargestFrame = ringBytes(maximumFrameLength)

    public let memory: GuestRAM
    let store: RTL8139StateStore
    let wire: any EthernetWire
    let interrupt: any InterruptLine
    /// True when the state area held a device already (this is a restart), false when it was
    /// fresh and the device starts from power-on.
    public let resumed: Bool
    /// What this instance did (the state area holds the device, not these).
    public internal(set) var counters = RTL8139Counters()

    /// A received frame, its padding and CRC; large enough for any frame a tap delivers.
    let receiveBuffer: UnsafeMutableRawBufferPointer
    /// One buffer per transmit descriptor: a frame is copied out of guest memory before its
    /// descriptor is marked done (the guest may reuse the buffer once OWN is set).
    let transmitBuffers: UnsafeMutableRawBufferPointer
    static let transmitBufferSize = 2048
    /// Frames the change being made will send once it is committed: (descriptor, length).
    var outgoing: [(descriptor: Int, length: Int)] = []

    /// Test hook: abandon the next change at this point, as a process killed there would.
    var stopAt: StopPoint?
    enum StopPoint { case beforeCommit, afterCommit }

    /// Builds the device over `stateArea` (the control region's device-state area). A fresh
    /// area (no magic) is set to the power-on state, with `stationAddress` in the EEPROM and
    /// IDR0–5; an area holding a device is continued as it is: a receive header the
    /// predecessor committed but may not have written is written, and the interrupt is raised
    /// once if it is pending (the predecessor may have died before raising it).
    public init(
        stateArea: UnsafeMutableRawBufferPointer, memory: GuestRAM, stationAddress: [UInt8],
        wire: any EthernetWire, interrupt: any InterruptLine
    ) throws(EmulatedDeviceError) {
        guard let store = RTL8139StateStore(area: stateArea) else {
            throw EmulatedDeviceError(
                .stateAreaTooSmall,
                "the RTL8139 needs \(RTL8139StateLayout.size) aligned bytes of device state, the area has \(stateArea.count)")
        }
        guard stationAddress.count == 6 else {
            throw EmulatedDeviceError(.invalidConfiguration, "a station address has 6 bytes, not \(stationAddress.count)")
        }
        self.store = store
        self.memory = memory
        self.wire = wire
        self.interrupt = interrupt
        receiveBuffer = .allocate(byteCount: 65536 + 64, alignment: 16)
        transmitBuffers = .allocate(byteCount: RTL8139Register.transmitDescriptors * Self.transmitBufferSize, alignment: 16)
        transmitBuffers.initializeMemory(as: UInt8.self, repeating: 0)
        resumed = store.holdsDevice
        if resumed {
            let current = store.current
            if current.hasPendingHeader {
                publishHeader(at: current.pendingHeaderAddress, current.pendingHeaderValue)
                counters.republishedHeaders += 1
            }
            _ = change { _ in } // clears the pending header
            if store.current.pendingInterrupts != 0 { interrupt.raise() }
        } else {
            store.create { Self.powerOn($0, stationAddress: stationAddress) }
        }
    }

    deinit {
        receiveBuffer.deallocate()
        transmitBuffers.deallocate()
    }

    // MARK: register accesses

    /// A guest access to the registers (BAR 0 or BAR 1, which both hold them): `size` bytes
    /// at `offset`, a write when `value` is given. Returns what a read returns (0 for a write).
    ///
    /// `sequence` numbers the core's accesses to this device, increasing. An access whose
    /// sequence is not above the last one applied — the core re-sends an access to a
    /// restarted domain — is answered with the reply recorded for it and not applied again.
    /// Bytes outside the 256-byte register file read as all ones and ignore writes; so do
    /// other BARs and sizes other than 1 to 8.
    public func registerAccess(bar: UInt32, offset: UInt64, size: UInt32, write value: UInt64?, sequence: UInt64) -> UInt64 {
        let current = store.current
        if current.hasApplied && sequence <= current.appliedSequence {
            counters.replayedAccesses += 1
            if sequence < current.appliedSequence { counters.staleAccesses += 1 }
            return current.lastReply
        }
        let reply = change { state -> UInt64 in
            let reply: UInt64
            if let value {
                write(state, bar: bar, offset: offset, size: size, value: value)
                reply = 0
            } else {
                reply = read(state, bar: bar, offset: offset, size: size)
            }
            state.appliedSequence = sequence
            state.hasApplied = true
            state.lastReply = reply
            return reply
        }
        return reply ?? Self.allOnes(size)
    }

    /// What a read of `size` bytes at `offset` would return now, without recording an access.
    public func peek(offset: UInt64, size: UInt32) -> UInt64 {
        read(store.current, bar: 0, offset: offset, size: size)
    }

    /// ISR & IMR: the interrupt line is asserted while this is non-zero.
    public var pendingInterrupts: UInt16 { store.current.pendingInterrupts }

    static func allOnes(_ size: UInt32) -> UInt64 {
        size >= 1 && size < 8 ? (1 << (8 * UInt64(size))) - 1 : .max
    }

    // MARK: changes

    /// Makes one change to the device: `body` edits a copy of the current state, which then
    /// becomes current in one store; only after that are its frames sent, a receive header
    /// written and the interrupt raised (on an edge of ISR & IMR). nil if a test stopped it.
    func change<Result>(_ body: (RTL8139Snapshot) -> Result) -> Result? {
        let pendingBefore = store.current.pendingInterrupts
        let (index, state) = store.beginChange()
        state.hasPendingHeader = false // the previous change wrote its header
        outgoing.removeAll(keepingCapacity: true)
        let result = body(state)
        if stopAt == .beforeCommit { return nil }
        store.commit(index)
        if stopAt == .afterCommit { return nil }
        if state.hasPendingHeader { publishHeader(at: state.pendingHeaderAddress, state.pendingHeaderValue) }
        for (descriptor, length) in outgoing { send(descriptor: descriptor, length: length) }
        if pendingBefore == 0 && state.pendingInterrupts != 0 {
            interrupt.raise()
            counters.interrupts += 1
        }
        return result
    }

    /// Power-on: every register at its reset value, IDR0–5 and the EEPROM holding
    /// `stationAddress`.
    static func powerOn(_ state: RTL8139Snapshot, stationAddress: [UInt8]) {
        // SAFETY: the register file lies inside the copy.
        (state.base + RTL8139Snapshot.registersOffset).initializeMemory(as: UInt8.self, repeating: 0, count: RTL8139Register.count)
        state.stationAddress = stationAddress
        for (i, byte) in stationAddress.prefix(6).enumerated() { state.setRegister8(RTL8139Register.idr0 + i, byte) }
        softReset(state)
        state.setRegister32(RTL8139Register.tcr, RTL8139ResetValue.tcr)
        state.setRegister8(RTL8139Register.config1, RTL8139ResetValue.config1)
        state.setRegister8(RTL8139Register.msr, RTL8139ResetValue.msr)
        state.setRegister8(RTL8139Register.rerid, RTL8139ResetValue.rerid)
        state.setRegister16(RTL8139Register.bmcr, RTL8139ResetValue.bmcr)
        state.setRegister16(RTL8139Register.bmsr, RTL8139ResetValue.bmsr)
        state.setRegister16(RTL8139Register.anar, RTL8139ResetValue.anar)
        state.setRegister16(RTL8139Register.anlpar, RTL8139ResetValue.anlpar)
        state.setRegister16(RTL8139Register.aner, RTL8139ResetValue.aner)
        state.eeprom = EEPROM93C46State()
        state.timerBase = monotonicNanoseconds()
        state.hasPendingHeader = false
    }

    /// CR.RST: transmitter and receiver off, every descriptor owned by the driver again with
    /// the transmitter at descriptor 0, the ring empty at offset 0, no interrupt pending or
    /// enabled, MPC cleared. IDR0–5, MAR0–7 and the configuration registers keep their values.
    static func softReset(_ state: RTL8139Snapshot) {
        state.command = 0
        for descriptor in 0..<RTL8139Register.transmitDescriptors { state.setTransmitStatus(descriptor, RTL8139ResetValue.tsd) }
        state.nextTransmit = 0
        state.setRegister16(RTL8139Register.cbr, 0)
        state.setRegister16(RTL8139Register.capr, RTL8139ResetValue.capr)
        state.interruptStatus = 0
        state.interruptMask = 0
        state.setRegister32(RTL8139Register.mpc, 0)
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}

/// What one `RTL8139` instance did (a domain process reports them in `Stats`; the core adds
/// them up across generations).
public struct RTL8139Counters: Equatable, Sendable {
    public var transmittedFrames: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    public var receivedFrames: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    /// Frames the receive filter (RCR, MAR) turned away: not for this station. Not an error.
    public var filteredFrames: UInt64 = 0
    public var drops = RTL8139Drops()
    /// Register accesses answered from the recorded reply (re-sent to a restarted domain).
    public var replayedAccesses: UInt64 = 0
    /// Of those, accesses older than the last one applied: the core broke the sequence.
    public var staleAccesses: UInt64 = 0
    /// Receive headers a predecessor committed and this instance wrote again on resuming.
    public var republishedHeaders: UInt64 = 0
    /// Interrupt edges raised.
    public var interrupts: UInt64 = 0

    public init() {}
}

/// Frames an RTL8139 dropped, by why. Each is counted; none stops the device.
public struct RTL8139Drops: Equatable, Sendable, CustomStringConvertible {
    /// Transmit descriptors aborted: SIZE above 1792, or the buffer outside guest memory.
    public var transmitAborted: UInt64 = 0
    /// Frames the wire refused (tap queue full, shorter than it accepts).
    public var transmitRefused: UInt64 = 0
    /// Received frames that did not fit the ring (ISR.RXOVW, MPC).
    public var receiveOverflow: UInt64 = 0
    /// Received frames longer than 1792 bytes.
    public var receiveOversize: UInt64 = 0
    /// Received frames shorter than an Ethernet header.
    public var receiveRunt: UInt64 = 0
    /// Received frames whose ring space lies outside guest memory (ISR.SERR).
    public var receiveDMAFault: UInt64 = 0

    public init() {}

    public var total: UInt64 {
        transmitAborted + transmitRefused + receiveOverflow + receiveOversize + receiveRunt + receiveDMAFault
    }

    public var description: String {
        "tx_aborted=\(transmitAborted) tx_refused=\(transmitRefused) rx_overflow=\(receiveOverflow) "
            + "rx_oversize=\(receiveOversize) rx_runt=\(receiveRunt) rx_dma_fault=\(receiveDMAFault)"
    }
}

extension RTL8139Counters {
    /// Adds `other` (another instance's counters) to these.
    public mutating func add(_ other: RTL8139Counters) {
        transmittedFrames += other.transmittedFrames
        transmittedBytes += other.transmittedBytes
        receivedFrames += other.receivedFrames
        receivedBytes += other.receivedBytes
        filteredFrames += other.filteredFrames
        drops.transmitAborted += other.drops.transmitAborted
        drops.transmitRefused += other.drops.transmitRefused
        drops.receiveOverflow += other.drops.receiveOverflow
        drops.receiveOversize += other.drops.receiveOversize
        drops.receiveRunt += other.drops.receiveRunt
        drops.receiveDMAFault += other.drops.receiveDMAFault
        replayedAccesses += other.replayedAccesses
        staleAccesses += other.staleAccesses
        republishedHeaders += other.republishedHeaders
        interrupts += other.interrupts
    }
}
