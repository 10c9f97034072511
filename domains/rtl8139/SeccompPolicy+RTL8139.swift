import BulkheadChannel
import BulkheadSandbox

extension SeccompPolicy {
    /// The rtl8139 domain's allowlist: the common set every domain needs, plus one `readv` or
    /// `writev` per frame on the tap — only on the tap's fd (8), which the core opened and
    /// attached. No open, no socket, no ioctl, no process creation.
    static let rtl8139 = SeccompPolicy.common.adding([
        .init("readv", "one received frame from the tap (fd 8) into the domain's frame buffer",
              when: [.init(0, .equal(UInt64(DomainFileDescriptors.backend)))]),
        .init("writev", "one transmitted frame to the tap (fd 8), copied out of guest memory before OWN was set",
              when: [.init(0, .equal(UInt64(DomainFileDescriptors.backend)))]),
        .init("pause", "test hook: hang"),
        .init("prctl", "PR_SET_NAME only: a standby renames itself (comm) when it takes over",
              when: [.init(0, .equal(15))]),
    ])
}
