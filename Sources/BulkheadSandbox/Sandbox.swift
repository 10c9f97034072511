import BulkheadSystem
import CBulkheadLinux
import CBulkheadSandbox
#if canImport(Glibc)
import Glibc
#endif

/// The domain's side of the sandbox: called once, early, before the domain reads any guest
/// data or message, by a process that `DomainProcess.spawn` started (root, in new namespaces).
public enum Sandbox {
    /// Confines the calling process for good. In this order:
    ///
    /// 1. **Filesystem** (needs `CAP_SYS_ADMIN`): a mount namespace of its own (unshared here
    ///    too, so a mistake can never touch the host's mounts), every mount private, a
    ///    read-only, `nosuid,nodev,noexec` tmpfs as the new root (`pivot_root`), the old root
    ///    detached, `chdir("/")`.
    /// 2. **Hostname** in a UTS namespace of its own (`CAP_SYS_ADMIN`).
    /// 3. **Resource limits** that need no privilege to lower: files, core dumps (0), data.
    /// 4. **Capability bounding set** emptied (`CAP_SETPCAP`, so before the uid change).
    /// 5. **Identity**: no supplementary groups, then gid, then uid (the gid change needs the
    ///    uid still 0). The kernel clears the capability sets with the uid change; they are
    ///    cleared again explicitly, with the ambient set.
    /// 6. **After the uid change**: `RLIMIT_NPROC` (counted per uid), the parent-death signal
    ///    again (a credential change clears it; a core dying in the microseconds between the two
    ///    leaves the domain running until its control channel goes quiet), `PR_SET_DUMPABLE` 0,
    ///    `PR_SET_NO_NEW_PRIVS`.
    /// 7. **Seccomp** last: every step above needs calls the allowlist forbids. From here on a
    ///    call outside the list kills the process with `SIGSYS`.
    public static func enter(_ configuration: SandboxConfiguration) throws(SandboxError) {
        if configuration.emptyRoot { try enterEmptyRoot() }
        if let hostname = configuration.hostname { try setHostname(hostname) }

        try setLimit(BH_SANDBOX_RLIMIT_NOFILE, "RLIMIT_NOFILE", configuration.maxOpenFiles)
        try setLimit(BH_SANDBOX_RLIMIT_CORE, "RLIMIT_CORE", 0)
        try setLimit(BH_SANDBOX_RLIMIT_DATA, "RLIMIT_DATA", configuration.maxDataBytes)
        if let maxFileSize = configuration.maxFileSize {
            try setLimit(BH_SANDBOX_RLIMIT_FSIZE, "RLIMIT_FSIZE", maxFileSize)
        }

        try dropBoundingSet()
        try changeIdentity(user: configuration.userID, group: configuration.groupID)
        try setLimit(BH_SANDBOX_RLIMIT_NPROC, "RLIMIT_NPROC", configuration.maxProcesses)
        try prctl(PR_SET_PDEATHSIG, UInt(SIGKILL), "PR_SET_PDEATHSIG")
        try prctl(PR_SET_DUMPABLE, 0, "PR_SET_DUMPABLE")
        try prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")

        if let policy = configuration.seccomp { try policy.load() }
    }

    private static func enterEmptyRoot() throws(SandboxError) {
        let fs = SandboxError.Code.filesystem
        try sandboxCall(fs, "a mount namespace of its own", "unshare(CLONE_NEWNS)") {
            unshare(Int32(BH_SANDBOX_CLONE_NEWNS))
        }
        try sandboxCall(fs, "make every mount private", "mount(/, MS_REC|MS_PRIVATE)") {
            mount(nil, "/", nil, UInt(MS_REC | MS_PRIVATE), nil)
        }
        // The new root is mounted on /tmp of the old one (any directory will do), read-only
        // from the start: nothing is ever created in it.
        let flags = UInt(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        try sandboxCall(fs, "mount the empty root", "mount(tmpfs on /tmp)") {
            mount("bulkhead-empty", "/tmp", "tmpfs", flags, "size=4k,nr_inodes=2,mode=0555")
        }
        try sandboxCall(fs, "enter the empty root", "chdir(/tmp)") { chdir("/tmp") }
        // pivot_root(".", "."): the old root ends up stacked on top of the new one, at ".",
        // and is detached right away.
        try sandboxCall(fs, "pivot_root into the empty root", "pivot_root(., .)") {
            bh_sandbox_pivot_root(".", ".")
        }
        try sandboxCall(fs, "detach the old root", "umount2(., MNT_DETACH)") {
            umount2(".", Int32(MNT_DETACH))
        }
        try sandboxCall(fs, "enter the empty root", "chdir(/)") { chdir("/") }
    }

    private static func setHostname(_ hostname: String) throws(SandboxError) {
        try sandboxCall(.hostname, "a UTS namespace of its own", "unshare(CLONE_NEWUTS)") {
            unshare(Int32(BH_SANDBOX_CLONE_NEWUTS))
        }
        try sandboxCall(.hostname, "set the hostname to \(hostname)", "sethostname(\(hostname))") {
            // SAFETY: sethostname reads exactly utf8.count bytes of the C string.
            hostname.withCString { sethostname($0, hostname.utf8.count) }
        }
    }

    private static func setLimit(_ resource: Int32, _ name: String, _ value: UInt64) throws(SandboxError) {
        try sandboxCall(.resourceLimit, "limit \(name) to \(value)", "setrlimit(\(name))") {
            bh_sandbox_setrlimit(resource, value, value)
        }
    }

    private static func prctl(_ option: Int32, _ value: UInt, _ name: String) throws(SandboxError) {
        try sandboxCall(.privileges, "set \(name) to \(value)", "prctl(\(name))") {
            bh_prctl(option, value, 0, 0, 0)
        }
    }

    private static func dropBoundingSet() throws(SandboxError) {
        // Capabilities are numbered from 0 without holes; the first EINVAL is past the last.
        var capability: UInt = 0
        while true {
            if bh_prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 {
                let errno = Errno.current
                if errno == Errno(rawValue: EINVAL) && capability > 0 { return }
                throw SandboxError(
                    .privileges, "drop capability \(capability) from the bounding set",
                    underlyingError: SystemError(call: "prctl(PR_CAPBSET_DROP)", errno: errno))
            }
            capability += 1
        }
    }

    private static func changeIdentity(user: UInt32, group: UInt32) throws(SandboxError) {
        try sandboxCall(.identity, "drop supplementary groups", "setgroups(0)") { setgroups(0, nil) }
        try sandboxCall(.identity, "become group \(group)", "setresgid(\(group))") {
            setresgid(group, group, group)
        }
        try sandboxCall(.identity, "become user \(user)", "setresuid(\(user))") {
            setresuid(user, user, user)
        }
        try sandboxCall(.privileges, "clear the ambient capabilities", "prctl(PR_CAP_AMBIENT_CLEAR_ALL)") {
            bh_prctl(PR_CAP_AMBIENT, UInt(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
        }
        try sandboxCall(.privileges, "clear the capability sets", "capset(0)") { bh_sandbox_clear_capabilities() }
    }
}
