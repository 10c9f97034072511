import CBulkheadSandbox

/// The Linux namespaces a domain process is created in (clone flags).
public struct NamespaceSet: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// A mount namespace (`CLONE_NEWNS`): the domain's empty root is invisible to the host.
    public static let mount = NamespaceSet(rawValue: BH_SANDBOX_CLONE_NEWNS)
    /// A pid namespace (`CLONE_NEWPID`): the domain is pid 1 and sees no other process.
    public static let pid = NamespaceSet(rawValue: BH_SANDBOX_CLONE_NEWPID)
    /// An IPC namespace (`CLONE_NEWIPC`): no System V IPC or POSIX queues of the host.
    public static let ipc = NamespaceSet(rawValue: BH_SANDBOX_CLONE_NEWIPC)
    /// A network namespace (`CLONE_NEWNET`): only a down loopback; a tap arrives as an fd.
    public static let network = NamespaceSet(rawValue: BH_SANDBOX_CLONE_NEWNET)
    /// A UTS namespace (`CLONE_NEWUTS`): the hostname becomes the domain id.
    public static let uts = NamespaceSet(rawValue: BH_SANDBOX_CLONE_NEWUTS)
    /// A cgroup namespace (`CLONE_NEWCGROUP`).
    public static let cgroup = NamespaceSet(rawValue: BH_SANDBOX_CLONE_NEWCGROUP)

    /// What every driver domain gets.
    public static let domain: NamespaceSet = [.mount, .pid, .ipc, .network, .uts, .cgroup]
}
