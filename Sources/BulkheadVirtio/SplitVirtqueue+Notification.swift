/// Notification suppression (virtio 1.2 2.7.7 "Used Buffer Notification Suppression" and
/// 2.7.10 "Available Buffer Notification Suppression"). On this machine every kick and every
/// interrupt costs tens of microseconds, so the device polls while it has work and asks for
/// kicks only when it goes idle.
extension SplitVirtqueue {
    /// Whether the driver wants a used buffer notification (an interrupt) for what was pushed
    /// since the last call. With EVENT_IDX: `vring_need_event(used_event, used.idx, old)`;
    /// without: unless the driver set `VIRTQ_AVAIL_F_NO_INTERRUPT`. True after `recover()`
    /// until the first call (the state before the crash is unknown).
    public func needsNotification() -> Bool {
        fullFence()  // used.idx is visible before used_event / the flags are read
        let new = usedIndex
        guard configuration.eventIndex else {
            signalledUsed = new
            return loadAvailFlags() & Self.availFlagNoInterrupt == 0
        }
        let usedEvent = loadUsedEvent()
        defer { signalledUsed = new }
        guard let old = signalledUsed else { return true }
        return Self.needEvent(eventIndex: usedEvent, new: new, old: old)
    }

    /// `vring_need_event`: whether moving an index from `old` to `new` crossed `eventIndex`.
    public static func needEvent(eventIndex: UInt16, new: UInt16, old: UInt16) -> Bool {
        (new &- eventIndex &- 1) < (new &- old)
    }

    /// Asks the driver not to kick: `VIRTQ_USED_F_NO_NOTIFY` without EVENT_IDX; with it,
    /// avail_event is simply left behind (the driver kicks only when it crosses it).
    public func disableNotifications() {
        guard !configuration.eventIndex else { return }
        storeUsedFlags(Self.usedFlagNoNotify)
    }

    /// Asks the driver to kick for the next available buffer (avail_event = lastAvailIndex, or
    /// clears `VIRTQ_USED_F_NO_NOTIFY`), then re-reads avail.idx. Returns true when buffers
    /// arrived before the request was visible: the driver may not kick for them, so pop again.
    public func enableNotifications() -> Bool {
        if configuration.eventIndex {
            storeAvailEvent(lastAvailIndex)
        } else {
            storeUsedFlags(0)
        }
        fullFence()  // the request is visible before avail.idx is read again
        return loadAvailIndex() != lastAvailIndex
    }
}
