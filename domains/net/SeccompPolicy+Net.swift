import BulkheadChannel
import BulkheadSandbox

extension SeccompPolicy {
    /// The net domain's allowlist: `virtioDomain` (the shared virtio loop), plus both queues'
    /// kicks and frame I/O on the tap fd (8) the core passed, and on nothing else. No open, no
    /// socket, no ioctl (the core attached the tap), no process creation.
    static let net = SeccompPolicy.virtioDomain.adding([
        .init("read", "drains receiveq's ioeventfd (the guest posted buffers)",
              when: [.fileDescriptor(DomainFileDescriptors.queueNotify(NetDomain.receiveQueue))]),
        .init("read", "drains transmitq's ioeventfd (the guest queued frames)",
              when: [.fileDescriptor(DomainFileDescriptors.queueNotify(NetDomain.transmitQueue))]),
        .init("readv", "receiveBatch: one frame from the tap, straight into the guest's buffers",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
        .init("writev", "send: one frame to the tap, straight from the guest's buffers",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
    ])
}
