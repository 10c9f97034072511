import BulkheadSandbox

extension SeccompPolicy {
    /// The blk domain's allowlist: the common set every domain needs, plus disk I/O on the
    /// backend fd the core passed. No open, no socket, no ioctl, no process creation.
    static let block = SeccompPolicy.common.adding([
        .init("pread64", "virtio-blk reads from the disk fd"),
        .init("pwrite64", "virtio-blk writes to the disk fd"),
        .init("preadv", "vectored reads (glibc may use them)"),
        .init("pwritev", "vectored writes"),
        .init("fdatasync", "VIRTIO_BLK_T_FLUSH"),
        .init("fsync", "VIRTIO_BLK_T_FLUSH where fdatasync is not enough"),
        .init("fallocate", "VIRTIO_BLK_T_DISCARD punches holes"),
        .init("fstat", "sizing the disk and guest memory fds"),
        .init("newfstatat", "glibc's fstat"),
        .init("lseek", "sizing the disk fd"),
        .init("pause", "test hook: hang"),
        .init("prctl", "PR_SET_NAME only: a standby renames itself (comm) when it takes over",
              when: [.init(0, .equal(15))]),
    ])
}
