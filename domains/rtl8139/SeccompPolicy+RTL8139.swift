import BulkheadChannel
import BulkheadSandbox

extension SeccompPolicy {
    /// The rtl8139 domain's allowlist: what every domain's shared server calls
    /// (`SeccompPolicy.virtioDomain`: doorbells, irqfd, standby activation, test hooks,
    /// shutdown), plus one `readv` or `writev` per frame on the tap — only on the tap's fd (8),
    /// which the core opened and attached. No kick eventfds (register accesses arrive on the
    /// control ring). No open, no socket, no ioctl, no process creation.
    static let rtl8139 = SeccompPolicy.virtioDomain.adding([
        .init("readv", "one received frame from the tap (fd 8) into the domain's frame buffer",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
        .init("writev", "one transmitted frame to the tap (fd 8), copied out of guest memory before OWN was set",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
    ])
}
