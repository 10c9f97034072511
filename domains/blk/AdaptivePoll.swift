/// How long the blk domain polls an idle queue before it sleeps, adapted to what polling
/// achieves (in the spirit of KVM's halt polling).
///
/// Polling saves the guest a kick (~26 µs of its time on this PVM host) and the domain a
/// wake-up, but only while the domain and the vCPU that feeds it run on different CPUs. When
/// the host has no idle CPU, the scheduler wakes the domain on the vCPU's own CPU (the kick
/// comes from it): then the guest cannot submit while the domain polls, every poll runs to its
/// end, and the request the poll waited for arrives just after it (measured with `perf trace`
/// at randwrite 4k qd1 on a loaded 2-CPU host: each request waited out the whole 50 µs poll,
/// then a kick). So: a poll that finds work keeps the full window; one that runs out halves it,
/// down to no polling at all; without polling, one idle period in `probeInterval` still polls
/// the full window to find out whether polling pays again.
struct AdaptivePoll {
    static let maximumNanoseconds: UInt64 = 50_000
    /// Below this a window is not worth a poll: it becomes 0.
    static let minimumNanoseconds: UInt64 = 5_000
    static let probeInterval = 32

    private(set) var windowNanoseconds: UInt64 = maximumNanoseconds
    private var idleWithoutPolling = 0

    /// The window for this idle period.
    mutating func window() -> UInt64 {
        guard windowNanoseconds == 0 else { return windowNanoseconds }
        idleWithoutPolling += 1
        guard idleWithoutPolling >= Self.probeInterval else { return 0 }
        idleWithoutPolling = 0
        return Self.maximumNanoseconds
    }

    /// What the poll of this idle period found.
    mutating func record(foundWork: Bool) {
        if foundWork {
            windowNanoseconds = Self.maximumNanoseconds
        } else {
            let half = windowNanoseconds / 2
            windowNanoseconds = half < Self.minimumNanoseconds ? 0 : half
        }
    }
}
