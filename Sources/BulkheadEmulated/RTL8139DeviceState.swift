import CBulkheadLinux

/// Where an RTL8139 keeps everything it knows: in the control region's device-state area,
/// which outlives the domain process, so that a restarted domain continues exactly where the
/// dead one stopped. The process itself holds only scratch buffers and counters.
///
/// ```
/// offset  size    field
/// 0x000   8       magic "BHRTL139" (absent: power-on state)
/// 0x008   4       layout version (1)
/// 0x00C   4       which copy is current: 0 or 1
/// 0x040   0x200   copy 0 (RTL8139Snapshot)
/// 0x240   0x200   copy 1
/// ```
///
/// **Exactly once.** Every change (a register access, a received frame) is made on the copy
/// that is not current — after copying the current one into it — and then published by one
/// aligned 4-byte store of its index, with release ordering. A process killed at any point
/// leaves either the old copy current (the change never happened: the core re-sends the access
/// and it is applied once) or the new one (it happened, with the sequence number and the reply
/// it recorded: the re-sent access is answered from there, not applied again). Side effects
/// outside the area (a frame to the tap, a received frame's header, the interrupt) come after
/// that store, so that a crash can lose one but never repeat it.
public enum RTL8139StateLayout {
    /// "BHRTL139" as the first eight bytes.
    public static let magic: UInt64 = Array("BHRTL139".utf8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    public static let version: UInt32 = 1

    static let magicOffset = 0x000
    static let versionOffset = 0x008
    static let currentOffset = 0x00C
    static let snapshotOffset = 0x040
    static let snapshotSize = 0x200
    /// Bytes of the device-state area this layout uses.
    public static let size = snapshotOffset + 2 * snapshotSize

    /// Marks `area` as holding no device (all zero): the next device built on it starts from
    /// its power-on state.
    public static func clear(_ area: UnsafeMutableRawBufferPointer) {
        guard let base = area.baseAddress, area.count >= size else { return }
        // SAFETY: the magic is an aligned u64 at the start of an area of at least `size` bytes.
        bh_atomic_store_release_u64(base + magicOffset, 0)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    }
}

/// One copy of the device's state: the register file plus what the chip keeps besides it.
///
/// ```
/// offset  size  field
/// 0x000   8     appliedSequence: seq of the last register access applied
/// 0x008   8     lastReply: what that access was answered
/// 0x010   8     timerBase: CLOCK_MONOTONIC ns when TCTR was last 0
/// 0x018   8     pendingHeaderAddress: guest address of a receive header not yet known written
/// 0x020   4     pendingHeaderValue: that header
/// 0x024   4     flags: bit 0 a header is pending, bit 1 an access has been applied
/// 0x028   1     nextTransmit: the descriptor the transmitter looks at next
/// 0x029   1     EEPROM: mode
/// 0x02A   1     EEPROM: tick (bits clocked in this mode)
/// 0x02B   1     EEPROM: wires (bit 0 CS, 1 SK, 2 DI, 3 DO)
/// 0x02C   2     EEPROM: input shift register
/// 0x02E   2     EEPROM: output shift register
/// 0x030   1     EEPROM: address
/// 0x038   6     the station address the EEPROM holds (from Attach)
/// 0x100   256   the register file, as `RTL8139Register` lays it out
/// ```
///
/// Stored registers hold what a read returns, except: CR holds RE and TE only (BUFE is
/// computed, RST completes at once), TCTR and TSAD (all) are computed, 9346CR's EEDO comes
/// from the EEPROM.
struct RTL8139Snapshot {
    let base: UnsafeMutableRawPointer

    static let appliedSequenceOffset = 0x000
    static let lastReplyOffset = 0x008
    static let timerBaseOffset = 0x010
    static let pendingHeaderAddressOffset = 0x018
    static let pendingHeaderValueOffset = 0x020
    static let flagsOffset = 0x024
    static let nextTransmitOffset = 0x028
    static let eepromOffset = 0x029
    static let stationAddressOffset = 0x038
    static let registersOffset = 0x100

    static let pendingHeaderFlag: UInt32 = 1
    static let appliedFlag: UInt32 = 2

    // SAFETY (every accessor below): `base` points at a copy of `RTL8139StateLayout.snapshotSize`
    // bytes inside the device-state mapping, and every offset plus width stays inside it
    // (register offsets are checked against `RTL8139Register.count` by the callers).

    func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    var appliedSequence: UInt64 {
        get { load(UInt64.self, at: Self.appliedSequenceOffset) }
        nonmutating set { store(newValue, at: Self.appliedSequenceOffset) }
    }
    var lastReply: UInt64 {
        get { load(UInt64.self, at: Self.lastReplyOffset) }
        nonmutating set { store(newValue, at: Self.lastReplyOffset) }
    }
    var timerBase: UInt64 {
        get { load(UInt64.self, at: Self.timerBaseOffset) }
        nonmutating set { store(newValue, at: Self.timerBaseOffset) }
    }
    var pendingHeaderAddress: UInt64 {
        get { load(UInt64.self, at: Self.pendingHeaderAddressOffset) }
        nonmutating set { store(newValue, at: Self.pendingHeaderAddressOffset) }
    }
    var pendingHeaderValue: UInt32 {
        get { load(UInt32.self, at: Self.pendingHeaderValueOffset) }
        nonmutating set { store(newValue, at: Self.pendingHeaderValueOffset) }
    }
    var flags: UInt32 {
        get { load(UInt32.self, at: Self.flagsOffset) }
        nonmutating set { store(newValue, at: Self.flagsOffset) }
    }
    var hasPendingHeader: Bool {
        get { flags & Self.pendingHeaderFlag != 0 }
        nonmutating set { flags = newValue ? flags | Self.pendingHeaderFlag : flags & ~Self.pendingHeaderFlag }
    }
    var hasApplied: Bool {
        get { flags & Self.appliedFlag != 0 }
        nonmutating set { flags = newValue ? flags | Self.appliedFlag : flags & ~Self.appliedFlag }
    }
    var nextTransmit: Int {
        get { Int(load(UInt8.self, at: Self.nextTransmitOffset)) % RTL8139Register.transmitDescriptors }
        nonmutating set { store(UInt8(truncatingIfNeeded: newValue % RTL8139Register.transmitDescriptors), at: Self.nextTransmitOffset) }
    }
    var eeprom: EEPROM93C46State {
        get {
            EEPROM93C46State(
                mode: load(UInt8.self, at: Self.eepromOffset), tick: load(UInt8.self, at: Self.eepromOffset + 1),
                wires: load(UInt8.self, at: Self.eepromOffset + 2), input: load(UInt16.self, at: Self.eepromOffset + 3),
                output: load(UInt16.self, at: Self.eepromOffset + 5), address: load(UInt8.self, at: Self.eepromOffset + 7))
        }
        nonmutating set {
            store(newValue.mode, at: Self.eepromOffset)
            store(newValue.tick, at: Self.eepromOffset + 1)
            store(newValue.wires, at: Self.eepromOffset + 2)
            store(newValue.input, at: Self.eepromOffset + 3)
            store(newValue.output, at: Self.eepromOffset + 5)
            store(newValue.address, at: Self.eepromOffset + 7)
        }
    }
    var stationAddress: [UInt8] {
        get { (0..<6).map { load(UInt8.self, at: Self.stationAddressOffset + $0) } }
        nonmutating set { for (i, byte) in newValue.prefix(6).enumerated() { store(byte, at: Self.stationAddressOffset + i) } }
    }

    // MARK: registers

    func register8(_ offset: Int) -> UInt8 { load(UInt8.self, at: Self.registersOffset + offset) }
    func register16(_ offset: Int) -> UInt16 { load(UInt16.self, at: Self.registersOffset + offset) }
    func register32(_ offset: Int) -> UInt32 { load(UInt32.self, at: Self.registersOffset + offset) }
    func setRegister8(_ offset: Int, _ value: UInt8) { store(value, at: Self.registersOffset + offset) }
    func setRegister16(_ offset: Int, _ value: UInt16) { store(value, at: Self.registersOffset + offset) }
    func setRegister32(_ offset: Int, _ value: UInt32) { store(value, at: Self.registersOffset + offset) }

    /// The stored register of `width` bytes at `offset`, widened.
    func register(_ offset: Int, width: Int) -> UInt32 {
        switch width {
        case 4: register32(offset)
        case 2: UInt32(register16(offset))
        default: UInt32(register8(offset))
        }
    }

    func setRegister(_ offset: Int, width: Int, _ value: UInt32) {
        switch width {
        case 4: setRegister32(offset, value)
        case 2: setRegister16(offset, UInt16(truncatingIfNeeded: value))
        default: setRegister8(offset, UInt8(truncatingIfNeeded: value))
        }
    }

    var command: UInt8 {
        get { register8(RTL8139Register.cr) }
        nonmutating set { setRegister8(RTL8139Register.cr, newValue) }
    }
    var interruptStatus: UInt16 {
        get { register16(RTL8139Register.isr) }
        nonmutating set { setRegister16(RTL8139Register.isr, newValue & RTL8139Interrupt.all) }
    }
    var interruptMask: UInt16 {
        get { register16(RTL8139Register.imr) }
        nonmutating set { setRegister16(RTL8139Register.imr, newValue & RTL8139Interrupt.all) }
    }
    /// ISR & IMR: non-zero while the interrupt line is asserted.
    var pendingInterrupts: UInt16 { interruptStatus & interruptMask }
    var receiveConfiguration: UInt32 { register32(RTL8139Register.rcr) }

    func transmitStatus(_ descriptor: Int) -> UInt32 { register32(RTL8139Register.tsd0 + 4 * descriptor) }
    func setTransmitStatus(_ descriptor: Int, _ value: UInt32) { setRegister32(RTL8139Register.tsd0 + 4 * descriptor, value) }
    func transmitAddress(_ descriptor: Int) -> UInt32 { register32(RTL8139Register.tsad0 + 4 * descriptor) }

    // MARK: the receive ring

    /// Bytes of the ring, without its 16 spare bytes: 8, 16, 32 or 64 KiB (RCR.RBLEN).
    var ringSize: Int { 8192 << Int((receiveConfiguration >> RTL8139ReceiveConfiguration.ringLengthShift) & 3) }
    /// Whether a frame that runs past the end of the ring wraps to its start (RCR.WRAP = 0, or
    /// a 64 KiB ring, where WRAP is ignored).
    var ringWraps: Bool {
        receiveConfiguration & RTL8139ReceiveConfiguration.noWrap == 0 || ringSize == 65536
    }
    /// CBR: where the next frame's header goes.
    var writeOffset: Int { Int(register16(RTL8139Register.cbr)) % ringSize }
    /// CAPR + 16: the first byte the driver has not read yet.
    var readOffset: Int { (Int(register16(RTL8139Register.capr)) + 16) % ringSize }
    var ringEmpty: Bool { readOffset == writeOffset }
    /// Bytes the device may fill before reaching the driver's read position.
    var ringFree: Int { ringEmpty ? ringSize : (readOffset - writeOffset + ringSize) % ringSize }
}

/// The two copies of the device-state area and which one is current.
struct RTL8139StateStore {
    let base: UnsafeMutableRawPointer

    /// Over `area`; nil when it is too small.
    init?(area: UnsafeMutableRawBufferPointer) {
        guard let base = area.baseAddress, area.count >= RTL8139StateLayout.size,
              Int(bitPattern: base) % 8 == 0 else { return nil }
        self.base = base
    }

    /// Whether the area holds a device of this layout (a predecessor's, to be continued).
    var holdsDevice: Bool {
        // SAFETY: aligned header fields inside the area (checked in init).
        bh_atomic_load_acquire_u64(base + RTL8139StateLayout.magicOffset) == RTL8139StateLayout.magic
            && bh_atomic_load_acquire_u32(base + RTL8139StateLayout.versionOffset) == RTL8139StateLayout.version
    }

    var currentIndex: Int {
        // SAFETY: aligned header field inside the area. Only 0 and 1 are ever stored; `& 1`
        // keeps a damaged value inside the area.
        Int(bh_atomic_load_acquire_u32(base + RTL8139StateLayout.currentOffset) & 1)
    }

    func snapshot(_ index: Int) -> RTL8139Snapshot {
        // SAFETY: index is 0 or 1: both copies lie inside the area.
        RTL8139Snapshot(base: base + RTL8139StateLayout.snapshotOffset + (index & 1) * RTL8139StateLayout.snapshotSize)
    }

    var current: RTL8139Snapshot { snapshot(currentIndex) }

    /// The copy that is not current, filled with the current one: where the next change is made.
    func beginChange() -> (index: Int, snapshot: RTL8139Snapshot) {
        let index = 1 - currentIndex
        let next = snapshot(index)
        // SAFETY: two distinct, non-overlapping copies of `snapshotSize` bytes inside the area.
        next.base.copyMemory(from: current.base, byteCount: RTL8139StateLayout.snapshotSize)
        return (index, next)
    }

    /// Makes copy `index` current: the change is done.
    func commit(_ index: Int) {
        // SAFETY: aligned header field; the release orders every write to the copy before it.
        bh_atomic_store_release_u32(base + RTL8139StateLayout.currentOffset, UInt32(index & 1))
    }

    /// Writes a fresh area: copy 0 made by `initialize`, current, and the magic last.
    func create(_ initialize: (RTL8139Snapshot) -> Void) {
        // SAFETY: the area is at least `size` bytes, aligned (init).
        bh_atomic_store_release_u64(base + RTL8139StateLayout.magicOffset, 0)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: RTL8139StateLayout.size)
        initialize(snapshot(0))
        bh_atomic_store_release_u32(base + RTL8139StateLayout.versionOffset, RTL8139StateLayout.version)
        bh_atomic_store_release_u32(base + RTL8139StateLayout.currentOffset, 0)
        bh_atomic_store_release_u64(base + RTL8139StateLayout.magicOffset, RTL8139StateLayout.magic)
    }
}
