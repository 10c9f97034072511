extension SplitVirtqueue {
    /// True when the driver has made a chain available that `popAvailable` has not taken:
    /// what a device polls on while it spins before re-enabling notifications.
    public var hasAvailable: Bool {
        loadAvailIndex() != lastAvailIndex
    }
}
