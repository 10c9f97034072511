import BulkheadChannel
import BulkheadSandbox
import CBulkheadLinux
#if canImport(Glibc)
import Glibc
#endif

extension SeccompPolicy {
    /// The blk domain's allowlist: `virtioDomain` (the shared virtio loop), plus the request
    /// queue's kick and disk I/O on the backend fd (8) the core passed, and on nothing else. No
    /// open, no socket, no ioctl, no process creation. The disk's size was read (`fstat`) before
    /// `Sandbox.enter`, for RLIMIT_FSIZE. No `fallocate`: DISCARD and WRITE_ZEROES are not offered,
    /// and `BlockRequestEngine` answers them UNSUPP unless negotiated.
    static let block = SeccompPolicy.virtioDomain.adding([
        .init("read", "drains the request queue's ioeventfd (the guest's kicks)",
              when: [.fileDescriptor(DomainFileDescriptors.queueNotify(0))]),
        .init("pread64", "FileBlockStorage.read: VIRTIO_BLK_T_IN (and O_DIRECT reads)",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
        .init("pwrite64", "FileBlockStorage.write: VIRTIO_BLK_T_OUT (and O_DIRECT writes)",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
        .init("fdatasync", "FileBlockStorage.flush: VIRTIO_BLK_T_FLUSH",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
        .init("lseek", "FileBlockStorage.init sizes the disk (SEEK_END, also right for block devices) at Attach",
              when: [.fileDescriptor(DomainFileDescriptors.backend)]),
        // cache=none: aligned reads and writes in flight together on the AIO context set up
        // before the sandbox (BlockAIO); its iocbs name fd 8 only (the kernel checks each
        // iocb's fd, seccomp cannot look into them).
        .init("io_submit", "BlockAIO.submit: PREADV/PWRITEV of O_DIRECT requests, straight from guest memory"),
        .init("io_getevents", "BlockAIO.reap: their completions"),
    ])
}
