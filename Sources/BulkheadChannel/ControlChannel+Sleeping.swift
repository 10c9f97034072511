import BulkheadSystem
import CBulkheadLinux

extension ControlChannel {
    /// For a side that sleeps on its incoming doorbell *together with other fds* (a domain
    /// waits on its kick eventfd too; the supervisor on the pidfd): marks this side sleeping so
    /// that the peer rings the doorbell, then re-checks the ring. Returns false, with the flag
    /// cleared, when a message is already waiting: then don't sleep. After the wait, call
    /// `finishSleeping()`.
    public func prepareToSleep() -> Bool {
        // SAFETY: aligned u32 in the header page.
        bh_atomic_store_seq_cst_u32(incoming.receiverSleeping, 1)
        bh_atomic_fence_seq_cst()
        if incoming.hasData(tail: tail) {
            bh_atomic_store_release_u32(incoming.receiverSleeping, 0)
            return false
        }
        return true
    }

    /// Clears the sleeping flag set by `prepareToSleep()` and drains the doorbell counter.
    public func finishSleeping() {
        // SAFETY: aligned u32 in the header page.
        bh_atomic_store_release_u32(incoming.receiverSleeping, 0)
        var counter: UInt64 = 0
        _ = try? withUnsafeMutableBytes(of: &counter) { (bytes) throws(SystemError) in
            try incomingDoorbell.read(into: bytes)
        }
    }
}
