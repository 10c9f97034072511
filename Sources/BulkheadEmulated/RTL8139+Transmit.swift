/// Transmit: four descriptors, each a TSAD (the frame's guest address) and a TSD (its size and
/// status). The driver writes TSDn with OWN = 0; the device copies SIZE bytes from TSADn,
/// pads them to 60, sets OWN and TOK in TSDn and TOK in ISR — in the committed state — and
/// only then writes the frame to the wire. A domain killed in between loses the frame (the
/// guest saw it transmitted, as after a collision on a real wire); a restarted one never sends
/// it twice.
extension RTL8139 {
    /// TSDn written: SIZE, OWN and ERTXTH are stored, the status bits cleared; OWN = 0 hands the
    /// descriptor to the device, which sends it now (or when TE is turned on).
    func writeTransmitStatus(_ state: RTL8139Snapshot, descriptor: Int, _ value: UInt32) {
        let status = value & RTL8139TransmitStatus.writable
        state.setTransmitStatus(descriptor, status)
        if status & RTL8139TransmitStatus.own == 0 && state.command & RTL8139Command.transmitterEnable != 0 {
            transmit(state, descriptor: descriptor)
        }
    }

    /// TE turned on: sends every descriptor the driver handed over, starting at the one the
    /// transmitter looks at next.
    func transmitPending(_ state: RTL8139Snapshot) {
        let first = state.nextTransmit
        for k in 0..<RTL8139Register.transmitDescriptors {
            let descriptor = (first + k) % RTL8139Register.transmitDescriptors
            if state.transmitStatus(descriptor) & RTL8139TransmitStatus.own == 0 { transmit(state, descriptor: descriptor) }
        }
    }

    /// Copies descriptor `descriptor`'s frame out of guest memory and marks it done; the frame
    /// goes to the wire after the change is committed (`send`). A SIZE above 1792 or a buffer
    /// outside guest memory aborts it (TABT, ISR.TER).
    func transmit(_ state: RTL8139Snapshot, descriptor: Int) {
        let status = state.transmitStatus(descriptor)
        let size = Int(status & RTL8139TransmitStatus.sizeMask)
        state.nextTransmit = descriptor + 1
        guard size <= Self.maximumFrameLength,
              let source = memory.buffer(at: UInt64(state.transmitAddress(descriptor)), length: UInt64(size))
        else {
            state.setTransmitStatus(descriptor, status | RTL8139TransmitStatus.own | RTL8139TransmitStatus.aborted)
            state.interruptStatus |= RTL8139Interrupt.transmitError
            counters.drops.transmitAborted += 1
            return
        }
        let length = max(size, Self.minimumFrameLength)
        let buffer = transmitBuffer(descriptor)
        // SAFETY: size <= length <= 1792 < transmitBufferSize; `source` was bounds-checked by GuestRAM.
        UnsafeMutableRawBufferPointer(rebasing: buffer[..<size]).copyMemory(from: UnsafeRawBufferPointer(source))
        UnsafeMutableRawBufferPointer(rebasing: buffer[size..<length]).initializeMemory(as: UInt8.self, repeating: 0)
        state.setTransmitStatus(descriptor, status | RTL8139TransmitStatus.own | RTL8139TransmitStatus.transmitOK)
        state.interruptStatus |= RTL8139Interrupt.transmitOK
        outgoing.append((descriptor, length))
    }

    /// After the commit: the frame copied for `descriptor` goes to the wire.
    func send(descriptor: Int, length: Int) {
        let buffer = transmitBuffer(descriptor)
        if wire.send(UnsafeRawBufferPointer(rebasing: buffer[..<length])) {
            counters.transmittedFrames += 1
            counters.transmittedBytes += UInt64(length)
        } else {
            counters.drops.transmitRefused += 1
        }
    }

    func transmitBuffer(_ descriptor: Int) -> UnsafeMutableRawBufferPointer {
        let start = descriptor * Self.transmitBufferSize
        return UnsafeMutableRawBufferPointer(rebasing: transmitBuffers[start..<start + Self.transmitBufferSize])
    }
}
