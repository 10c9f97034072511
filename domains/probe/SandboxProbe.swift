import BulkheadSandbox
import BulkheadSystem
import CBulkheadSandbox
#if canImport(Glibc)
import Glibc
#endif

/// A test-only domain kind that enters the sandbox as a real domain does and then tries one
/// thing a compromised domain would: `bulkhead-domain probe <id> <what> [options]`.
///
/// fds: 3 is the report pipe (one line `BULKHEAD-PROBE <what> <verdict> <detail>`); `idle`
/// also uses 4 (it waits until 4 reaches end of file) and maps 5 if it is a memfd.
/// Exit status: 0 the attempt was refused (verdict `blocked`), 1 it succeeded (`BREACH`),
/// 2 a usage or sandbox error. A seccomp kill leaves no report: the parent sees SIGSYS.
///
/// Options: `--allow SYSCALL` adds a call to the allowlist, so that a test can check the layer
/// under seccomp (empty root, uid, rlimits) on its own; `--core-pid N` names the core's pid
/// (in the core's pid namespace) for `ptrace` and `kill-parent`; `--no-seccomp` loads none.
enum SandboxProbe {
    static let reportFD: Int32 = 3
    static let holdFD: Int32 = 4
    static let sharedMemoryFD: Int32 = 5
    /// The memory-limit attempt's blocks (one process, one attempt: no concurrent access).
    nonisolated(unsafe) static var keptBlocks: [UnsafeMutableRawPointer] = []

    static func main(id: String, arguments: [String]) -> Int32 {
        guard let what = arguments.first else {
            return fail("usage: bulkhead-domain probe <id> <what> [--allow SYSCALL]... [--core-pid N] [--no-seccomp]")
        }
        var extra: [SeccompPolicy.Rule] = []
        var corePid: Int32 = 0
        var seccomp = true
        var index = 1
        while index < arguments.count {
            let option = arguments[index]
            let value = index + 1 < arguments.count ? arguments[index + 1] : ""
            switch option {
            case "--allow": extra.append(.init(value, "allowed by the test (--allow)")); index += 2
            case "--core-pid": corePid = Int32(value) ?? 0; index += 2
            case "--no-seccomp": seccomp = false; index += 1
            default: return fail("unknown option \(option)")
            }
        }
        let configuration = SandboxConfiguration(
            hostname: id, seccomp: seccomp ? SeccompPolicy.probe.adding(extra) : nil)
        do {
            try Sandbox.enter(configuration)
        } catch {
            return fail("\(error)")
        }
        return attempt(what, corePid: corePid)
    }

    static func attempt(_ what: String, corePid: Int32) -> Int32 {
        switch what {
        case "idle":
            return idle()
        case "open-host-file":
            let fd = open("/etc/passwd", O_RDONLY)
            return fd >= 0 ? breach(what, "opened /etc/passwd as fd \(fd)") : blocked(what, "open(/etc/passwd): \(errnoName())")
        case "socket":
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if fd < 0 { return blocked(what, "socket: \(errnoName())") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(80).bigEndian
            address.sin_addr.s_addr = UInt32(0x0A00_0202).bigEndian  // 10.0.2.2
            let result = withUnsafePointer(to: &address) { pointer in
                // SAFETY: sockaddr_in is a valid sockaddr of its own size.
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            return result == 0 ? breach(what, "connected to 10.0.2.2:80") : blocked(what, "socket ok, connect: \(errnoName())")
        case "fork":
            let pid = fork()
            if pid == 0 { _exit(0) }
            return pid > 0 ? breach(what, "forked pid \(pid)") : blocked(what, "fork: \(errnoName())")
        case "exec":
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup("sh"), strdup("-c"), strdup("true"), nil]
            _ = execv("/bin/sh", argv)
            return blocked(what, "execv(/bin/sh): \(errnoName())")
        case "mount":
            let result = mount("none", "/", "tmpfs", 0, nil)
            return result == 0 ? breach(what, "mounted a tmpfs on /") : blocked(what, "mount: \(errnoName())")
        case "ptrace":
            let result = bh_sandbox_ptrace_attach(corePid)
            return result == 0 ? breach(what, "attached to pid \(corePid)") : blocked(what, "ptrace(ATTACH, \(corePid)): \(errnoName())")
        case "setuid0":
            let result = setuid(0)
            return result == 0 ? breach(what, "became root") : blocked(what, "setuid(0): \(errnoName())")
        case "fd-limit":
            var count = 0
            while count < 100_000 {
                do {
                    _ = try FileDescriptor.eventfd().release()  // kept open on purpose
                } catch {
                    break
                }
                count += 1
            }
            let error = errnoName()
            return count < 64 ? blocked(what, "eventfd #\(count + 1): \(error)") : breach(what, "opened \(count) eventfds")
        case "memory-limit":
            var mebibytes = 0
            // Kept in a global: a block nobody holds on to lets the optimizer drop the malloc and
            // the memset, and a release build then "allocated 4096 MiB" without allocating
            // anything. Never freed (free of a 1 MiB block is munmap, not on the probe's list);
            // the process ends after its report.
            while mebibytes < 4096 {
                guard let block = malloc(1 << 20) else { break }
                // Touch it, so that the limit, not overcommit, is what stops us.
                memset(block, 0xA5, 1 << 20)
                SandboxProbe.keptBlocks.append(block)
                mebibytes += 1
            }
            return mebibytes < 300
                ? blocked(what, "malloc failed after \(mebibytes) MiB")
                : breach(what, "allocated \(mebibytes) MiB")
        case "kill-parent":
            let parent = kill(corePid, SIGKILL)
            let parentError = errnoName()
            // kill(-1) outside a pid namespace would reach every process of our uid: only try
            // it when we are init of our own namespace.
            var everyone = "not tried"
            if getpid() == 1 {
                everyone = kill(-1, SIGKILL) == 0 ? "ok" : errnoName()
            }
            return parent == 0 || everyone == "ok"
                ? breach(what, "kill(\(corePid)): \(parent == 0 ? "ok" : parentError), kill(-1): \(everyone)")
                : blocked(what, "kill(\(corePid)): \(parentError), kill(-1): \(everyone)")
        case "write-other-fd":
            // Writes are allowed on named fds only (the report pipe, stderr): fd 1 (/dev/null
            // here) stands for a memfd a compromised domain would write past its end to grow it.
            var byte: UInt8 = 0x42
            let written = write(1, &byte, 1)
            return written == 1 ? breach(what, "wrote to fd 1") : blocked(what, "write(1): \(errnoName())")
        case "crash":
            // A segfault, to show that a crash is reported as one and not as a seccomp kill.
            let pointer = UnsafeMutablePointer<Int>(bitPattern: 8)
            pointer?.pointee = 1
            return fail("still alive after writing to address 8")
        case "exit":
            return 3
        default:
            return fail("unknown attempt \(what)")
        }
    }

    /// Reports `ready` with what the sandbox looks like from inside, then serves like a
    /// domain's main loop: waits on fd 4, maps fd 5 if there is one, until fd 4 closes.
    static func idle() -> Int32 {
        var name = utsname()
        _ = uname(&name)
        let hostname = withUnsafeBytes(of: &name.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var mapped = "none"
        let mapping = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sharedMemoryFD, 0)
        if let mapping, mapping != MAP_FAILED {
            mapping.storeBytes(of: 0x4275_6c6b, as: UInt32.self)  // "Bulk", seen by the test
            mapped = "ok"
        }
        var counts: [String: Int] = [:]
        counts["ready", default: 0] += 1
        report("idle ready hostname=\(hostname) pid=\(getpid()) uid=\(getuid()) shared=\(mapped)")
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            var pollfd = pollfd(fd: holdFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollfd, 1, 1000)
            if ready < 0 && errno != EINTR { return fail("poll: \(errnoName())") }
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(holdFD, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            counts["message", default: 0] += 1
            report("idle message \(counts["message", default: 0])")
        }
        report("idle done")
        return 0
    }

    static func blocked(_ what: String, _ detail: String) -> Int32 {
        report("\(what) blocked \(detail)")
        return 0
    }

    static func breach(_ what: String, _ detail: String) -> Int32 {
        report("\(what) BREACH \(detail)")
        return 1
    }

    static func fail(_ message: String) -> Int32 {
        report("error \(message)")
        let line = "bulkhead-domain probe: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        return 2
    }

    static func report(_ line: String) {
        let text = "BULKHEAD-PROBE \(line)\n"
        _ = text.withCString { write(reportFD, $0, strlen($0)) }
    }

    static func errnoName() -> String {
        let code = errno
        guard let name = bh_sandbox_errno_name(code) else { return "errno \(code)" }
        return String(cString: name)
    }
}
