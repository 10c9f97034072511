import BulkheadSandbox

extension SeccompPolicy {
    /// The net domain's allowlist: the common set every domain needs, plus frame I/O on the tap
    /// fd the core passed. No open, no socket, no ioctl (the core attached the tap), no process
    /// creation.
    static let net = SeccompPolicy.common.adding([
        .init("readv", "one received frame from the tap, straight into the guest's buffers"),
        .init("writev", "one transmitted frame to the tap, straight from the guest's buffers"),
        .init("pause", "test hook: hang"),
        .init("prctl", "PR_SET_NAME only: a standby renames itself (comm) when it takes over",
              when: [.init(0, .equal(15))]),
    ])
}
