/// What `Sandbox.enter` does to the calling domain process.
public struct SandboxConfiguration: Sendable {
    /// The hostname in the domain's own UTS namespace (the domain id, e.g. `blk0`); nil keeps
    /// the inherited one. Never touches the host's: `enter` unshares a UTS namespace first.
    public var hostname: String?
    /// Replace the filesystem by an empty read-only tmpfs (the domain opens nothing by path).
    public var emptyRoot: Bool
    /// The unprivileged identity the domain runs as (65534, `nobody`, by default).
    public var userID: UInt32
    public var groupID: UInt32
    /// `RLIMIT_NOFILE`: the most fds the domain may hold (numbers above it, passed at spawn,
    /// stay usable).
    public var maxOpenFiles: UInt64
    /// `RLIMIT_NPROC`, set after the uid change: 0 forbids fork and threads.
    public var maxProcesses: UInt64
    /// `RLIMIT_DATA`: private writable memory (heap, malloc's mmaps). Guest memory and the
    /// control region are shared mappings and do not count. `RLIMIT_AS` is never set: it
    /// would count guest memory.
    public var maxDataBytes: UInt64
    /// `RLIMIT_FSIZE` (a write past it raises `SIGXFSZ`); nil leaves it. A block domain may set
    /// it to its disk's size so that a bad offset cannot grow the file.
    public var maxFileSize: UInt64?
    /// The seccomp allowlist loaded last; nil loads none (tests of the other layers only).
    public var seccomp: SeccompPolicy?

    public init(
        hostname: String? = nil,
        emptyRoot: Bool = true,
        userID: UInt32 = 65534,
        groupID: UInt32 = 65534,
        maxOpenFiles: UInt64 = 64,
        maxProcesses: UInt64 = 0,
        maxDataBytes: UInt64 = 256 << 20,
        maxFileSize: UInt64? = nil,
        seccomp: SeccompPolicy? = .common
    ) {
        self.hostname = hostname
        self.emptyRoot = emptyRoot
        self.userID = userID
        self.groupID = groupID
        self.maxOpenFiles = maxOpenFiles
        self.maxProcesses = maxProcesses
        self.maxDataBytes = maxDataBytes
        self.maxFileSize = maxFileSize
        self.seccomp = seccomp
    }
}
