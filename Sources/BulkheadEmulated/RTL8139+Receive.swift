import CBulkheadLinux
import Synchronization

/// Receive: while CR.RE is set, frames from the wire that pass the filter (RCR, MAR) go into
/// the ring at RBSTART, each as a 4-byte header (status, length including the CRC), the frame
/// (padded to 60 bytes), its 4-byte CRC, rounded up to 4 bytes; CBR moves past it and ISR.ROK
/// is set. A frame that does not fit before CAPR + 16 is dropped: ISR.RXOVW, MPC + 1.
///
/// The frame's bytes are written first, the header last — after the change that moves CBR is
/// committed, with release ordering — so that a driver polling the header in guest memory
/// never sees a frame before its bytes. With the frame's bytes the device also zeroes the 4
/// bytes after it, where the next header will go: a polling driver that has caught up reads 0
/// there until the next frame is published, whatever older bytes the ring held (a previous
/// lap's frames, a frame a dying domain half wrote). A domain killed before the commit leaves
/// nothing published (its successor writes the next frame at the same place); one killed
/// after it leaves the header recorded as pending, and the successor writes it.
extension RTL8139 {
    /// What happened to a frame offered to the device.
    public enum ReceiveOutcome: Equatable, Sendable {
        /// In the ring, header published.
        case delivered
        /// Not for this station (RCR, MAR): dropped, as the chip does.
        case filtered
        /// No room in the ring: dropped, ISR.RXOVW and MPC.
        case overflow
        /// Longer than 1792 bytes: dropped.
        case oversize
        /// Shorter than an Ethernet header: dropped.
        case runt
        /// The ring lies outside guest memory: dropped, ISR.SERR.
        case dmaFault
        /// CR.RE is off: not received.
        case receiverDisabled
        /// A test stopped the change (as a crash would).
        case stopped
    }

    /// Whether the device takes frames now: the receiver is on and the ring has room for the
    /// largest frame. While it does not, frames wait in the tap (its queue, then the kernel
    /// drops).
    public var receiverReady: Bool {
        let state = store.current
        return state.command & RTL8139Command.receiverEnable != 0 && state.ringFree > Self.roomForLargestFrame
    }

    /// Moves up to `limit` frames from the wire into the ring while `receiverReady`; returns
    /// how many frames it took from the wire (delivered or dropped).
    public func receiveFromWire(limit: Int) -> Int {
        var taken = 0
        while taken < limit && receiverReady {
            guard let length = wire.receive(into: receiveBuffer) else { break }
            taken += 1
            _ = deliverReceived(length: length)
        }
        return taken
    }

    /// Offers `frame` (without CRC) to the device as if it had arrived on the wire.
    @discardableResult
    public func receive(_ frame: UnsafeRawBufferPointer) -> ReceiveOutcome {
        let length = min(frame.count, receiveBuffer.count - 64)
        UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[..<length])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: frame[..<length]))
        return deliverReceived(length: length)
    }

    /// The frame of `frameLength` bytes at the start of `receiveBuffer`.
    func deliverReceived(length frameLength: Int) -> ReceiveOutcome {
        let current = store.current
        guard current.command & RTL8139Command.receiverEnable != 0 else { return .receiverDisabled }
        guard frameLength >= Self.headerLength else {
            counters.drops.receiveRunt += 1
            return .runt
        }
        guard frameLength <= Self.maximumFrameLength else {
            counters.drops.receiveOversize += 1
            return .oversize
        }
        let length = max(frameLength, Self.minimumFrameLength)
        UnsafeMutableRawBufferPointer(rebasing: receiveBuffer[frameLength..<length]).initializeMemory(as: UInt8.self, repeating: 0)
        guard let status = Self.filter(UnsafeRawBufferPointer(rebasing: receiveBuffer[..<6]), current) else {
            counters.filteredFrames += 1
            return .filtered
        }
        let crc = EthernetCRC.frameCheckSequence(UnsafeRawBufferPointer(rebasing: receiveBuffer[..<length]))
        // SAFETY: length + 4 <= 1796 < receiveBuffer.count.
        receiveBuffer.storeBytes(of: crc.littleEndian, toByteOffset: length, as: UInt32.self)
        let record = UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<(length + 4)])
        let need = Self.ringBytes(length)

        let outcome = change { state -> ReceiveOutcome in
            guard need < state.ringFree else {
                state.interruptStatus |= RTL8139Interrupt.receiveBufferOverflow
                state.setRegister32(RTL8139Register.mpc, (state.register32(RTL8139Register.mpc) &+ 1) & 0x00FF_FFFF)
                counters.drops.receiveOverflow += 1
                return .overflow
            }
            let ringStart = UInt64(state.register32(RTL8139Register.rbstart))
            let offset = state.writeOffset
            let next = (offset + need) % state.ringSize
            let headerAddress = ringStart + UInt64(offset)
            // need < ringFree, both multiples of 4: the next header's 4 bytes are free too.
            guard memory.buffer(at: headerAddress, length: 4) != nil,
                  writeRing(state, start: ringStart, offset: offset + 4, record),
                  let nextHeader = memory.buffer(at: ringStart + UInt64(next), length: 4)
            else {
                state.interruptStatus |= RTL8139Interrupt.systemError
                counters.drops.receiveDMAFault += 1
                return .dmaFault
            }
            nextHeader.initializeMemory(as: UInt8.self, repeating: 0)
            state.setRegister16(RTL8139Register.cbr, UInt16(truncatingIfNeeded: next))
            state.interruptStatus |= RTL8139Interrupt.receiveOK
            state.pendingHeaderAddress = headerAddress
            state.pendingHeaderValue = UInt32(status | RTL8139ReceiveStatus.receiveOK) | UInt32(length + 4) << 16
            state.hasPendingHeader = true
            counters.receivedFrames += 1
            counters.receivedBytes += UInt64(frameLength)
            return .delivered
        }
        return outcome ?? .stopped
    }

    /// The receive filter: the header status bits for a frame to `destination`, or nil when
    /// RCR turns it away. Broadcast needs AB; multicast AM and its hash bit in MAR0–7; this
    /// station's address APM; AAP accepts every frame. The status says which kind the
    /// destination is (BAR, MAR, PAM) whichever bit accepted it.
    static func filter(_ destination: UnsafeRawBufferPointer, _ state: RTL8139Snapshot) -> UInt16? {
        let configuration = state.receiveConfiguration
        let promiscuous = configuration & RTL8139ReceiveConfiguration.acceptAllPhysical != 0
        if destination.allSatisfy({ $0 == 0xFF }) {
            let accepted = promiscuous || configuration & RTL8139ReceiveConfiguration.acceptBroadcast != 0
            return accepted ? RTL8139ReceiveStatus.broadcast : nil
        }
        if destination[0] & 1 != 0 {
            let bit = EthernetCRC.multicastHashIndex(destination)
            let hashed = state.register8(RTL8139Register.mar0 + bit / 8) & (1 << UInt8(bit % 8)) != 0
            let accepted = promiscuous || (configuration & RTL8139ReceiveConfiguration.acceptMulticast != 0 && hashed)
            return accepted ? RTL8139ReceiveStatus.multicast : nil
        }
        let matches = (0..<6).allSatisfy { destination[$0] == state.register8(RTL8139Register.idr0 + $0) }
        if matches {
            let accepted = promiscuous || configuration & RTL8139ReceiveConfiguration.acceptPhysicalMatch != 0
            return accepted ? RTL8139ReceiveStatus.physicalMatch : nil
        }
        return promiscuous ? 0 : nil
    }

    /// Writes `bytes` into the ring at `offset` from `start`: wrapping to the start at the end
    /// of the ring (WRAP = 0, or a 64 KiB ring), or straight on past it into the driver's spare
    /// room (WRAP = 1). False, with nothing published, when a piece lies outside guest memory.
    func writeRing(_ state: RTL8139Snapshot, start: UInt64, offset: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let ringSize = state.ringSize
        guard state.ringWraps else {
            guard let target = memory.buffer(at: start + UInt64(offset), length: UInt64(bytes.count)) else { return false }
            target.copyMemory(from: bytes)
            return true
        }
        var position = offset % ringSize
        var done = 0
        while done < bytes.count {
            let count = min(bytes.count - done, ringSize - position)
            guard let target = memory.buffer(at: start + UInt64(position), length: UInt64(count)) else { return false }
            target.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[done..<done + count]))
            done += count
            position = 0
        }
        return true
    }

    /// Publishes a receive header: release-ordered after the frame's bytes, one 4-byte store.
    func publishHeader(at address: UInt64, _ value: UInt32) {
        guard let target = memory.buffer(at: address, length: 4), let pointer = target.baseAddress else { return }
        if Int(bitPattern: pointer) % 4 == 0 {
            // SAFETY: 4 aligned bytes inside guest memory (checked above).
            bh_atomic_store_release_u32(pointer, value.littleEndian)
        } else {
            atomicMemoryFence(ordering: .releasing)
            // SAFETY: 4 bytes inside guest memory (checked above); RBSTART is not 4-aligned.
            pointer.storeBytes(of: value.littleEndian, as: UInt32.self)
        }
    }
}
