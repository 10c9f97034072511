import BulkheadSystem
import CBulkheadLinux

#if canImport(Glibc)
import Glibc
#endif

/// Sleeping on the incoming doorbell, for a side that waits on it *together with other fds*
/// (a domain also waits on its queue kicks; the supervisor on the pidfd):
///
/// ```
/// if channel.prepareToSleep() {
///     poll([kick, channel.incomingDoorbell, …], timeout)
///     channel.finishSleeping()
/// }
/// while let message = try channel.tryReceive() { … }
/// ```
///
/// `receive(timeoutMilliseconds:)` does the same when the doorbell is the only fd.
extension ControlChannel {
    /// Marks this side sleeping so that the peer rings the doorbell, then re-checks the ring
    /// (after a full barrier, pairing with the sender's). Returns false, with the flag cleared,
    /// when a message is already waiting: then don't sleep. After sleeping, call
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

    /// Clears the sleeping flag set by `prepareToSleep()` and drains the doorbell's counter
    /// if it was rung (never blocks, whether the eventfd is non-blocking or not).
    public func finishSleeping() {
        // SAFETY: aligned u32 in the header page.
        bh_atomic_store_release_u32(incoming.receiverSleeping, 0)
        drainDoorbell()
    }

    /// Reads the doorbell's counter to zero if it is readable now.
    func drainDoorbell() {
        var descriptor = pollfd(fd: incomingDoorbell.rawValue, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 0) > 0, descriptor.revents & Int16(POLLIN) != 0 else { return }
        var counter: UInt64 = 0
        // A failure here (EAGAIN: another reader won the race) leaves nothing to do: the ring,
        // not the counter, says whether there is a message.
        _ = try? withUnsafeMutableBytes(of: &counter) { (bytes) throws(SystemError) in
            try incomingDoorbell.read(into: bytes)
        }
    }

    /// Blocks in `poll` on the doorbell alone for at most `timeoutMilliseconds` (-1: forever).
    func sleepOnDoorbell(timeoutMilliseconds: Int32) throws(ChannelError) {
        var descriptor = pollfd(fd: incomingDoorbell.rawValue, events: Int16(POLLIN), revents: 0)
        do throws(SystemError) {
            _ = try systemCall("poll(doorbell fd \(incomingDoorbell.rawValue))") {
                Int(poll(&descriptor, 1, timeoutMilliseconds))
            }
        } catch {
            throw ChannelError(.system, "waiting on the doorbell of \(incoming.name)", underlying: error)
        }
    }
}
