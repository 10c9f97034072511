/// The file descriptor numbers a driver domain finds open when it starts.
///
/// The core opens everything (a domain opens nothing by path) and places each descriptor at
/// its number before `exec`; every other descriptor is closed. Numbers are fixed so that a
/// restarted domain needs no arguments to find them.
///
/// | fd | what | direction |
/// |---|---|---|
/// | 3 | control region memfd (`ControlRegion`) | shared |
/// | 4 | guest memory memfd | shared |
/// | 5 | doorbell core → domain (eventfd) | domain waits |
/// | 6 | doorbell domain → core (eventfd) | domain writes |
/// | 7 | irqfd: the device's interrupt into the guest (eventfd registered with KVM) | domain writes |
/// | 8 | backend: the disk image file, or the tap device | domain reads/writes |
/// | 9 | warm standby's activation eventfd (standbys only) | domain waits |
/// | 10 + q | ioeventfd of virtqueue q: the guest's QueueNotify kick | domain waits |
public enum DomainFileDescriptors {
    /// The control region memfd.
    public static let controlRegion: Int32 = 3
    /// The guest memory memfd.
    public static let guestMemory: Int32 = 4
    /// Eventfd the core writes when it has put a message in the core → domain ring and the domain sleeps.
    public static let coreToDomainDoorbell: Int32 = 5
    /// Eventfd the domain writes when it has put a message in the domain → core ring and the core sleeps.
    public static let domainToCoreDoorbell: Int32 = 6
    /// The irqfd raising the device's interrupt in the guest.
    public static let irqfd: Int32 = 7
    /// The backend: disk image file or tap device.
    public static let backend: Int32 = 8
    /// A warm standby's activation eventfd: it waits here, sandboxed, until the core lets it
    /// take over from a domain that died.
    public static let standbyActivation: Int32 = 9
    /// The first queue's ioeventfd; queue q is at `firstQueueNotify + q`.
    public static let firstQueueNotify: Int32 = 10

    /// The ioeventfd of virtqueue `queue` (0 ..< `ControlRegionLayout.maxQueues`).
    public static func queueNotify(_ queue: Int) -> Int32 { firstQueueNotify + Int32(queue) }

    /// One past the highest number a domain can be given.
    public static let end: Int32 = firstQueueNotify + Int32(ControlRegionLayout.maxQueues)
}
