import ArgumentParser
import BulkheadAPI
import BulkheadBoot
import BulkheadCore
import BulkheadProtocol
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead run`: boot a kernel and exit with the guest's status.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot a PVH kernel (by default the project's test guest) and run it to completion.",
        discussion: """
            The exit status is the byte the guest writes to the debug-exit port (0x501), 0 when the \
            guest resets the machine, 125 when the guest crashes or KVM fails, and 1 for bad input.
            """
    )

    @Option(help: ArgumentHelp("PVH ELF kernel to boot (default: the test guest, guest/build/guest.elf).", valueName: "path"))
    var kernel: String?

    @Option(help: ArgumentHelp("Kernel command line, e.g. \"workload=hello\".", valueName: "string"))
    var cmdline: String = ""

    @Option(help: ArgumentHelp("Guest memory: 256M, 1G, 512MiB; a bare number is MiB.", valueName: "size"))
    var memory: String = "256M"

    @Option(help: "Number of vCPUs.")
    var vcpus: Int = 1

    @Option(name: .customLong("disk"), help: ArgumentHelp(
        "A raw disk image served by a virtio-blk driver domain: PATH[,readonly]. Repeat for more disks.", valueName: "disk"))
    var disks: [String] = []

    @Option(help: ArgumentHelp("Restarts a domain may use within --restart-window before its device fails.", valueName: "n"))
    var restartBudget: Int = 100

    @Option(help: ArgumentHelp("The window of the restart budget, in seconds.", valueName: "seconds"))
    var restartWindow: Double = 60

    @Option(help: ArgumentHelp("Serve the operator API (status, metrics, events, fault injection) on this unix socket.",
                               valueName: "path"))
    var apiSocket: String?

    @Option(name: .customLong("watchdog-ms"), help: ArgumentHelp(
        "A domain that stops heart-beating this long while work is pending is killed and restarted.", valueName: "ms"))
    var watchdogMilliseconds: Double = 1000

    @Option(name: .customLong("inject-fault"), help: ArgumentHelp(
        "Test hook: at SECONDS after boot, make DOMAIN run a fault: DOMAIN:KIND@SECONDS[:ARG], KIND one of "
            + "crash, segv, hang, slow, corrupt-message, seccomp, exit. Repeatable.", valueName: "fault", visibility: .hidden))
    var injectFaults: [String] = []

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical.", valueName: "level"))
    var logLevel: String = "warning"

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "bulkhead")

        guard let memorySize = MemorySize.parse(memory) else {
            fail("--memory \(memory) is not a size (examples: 256M, 1G, 512MiB)")
        }
        let kernelPath: String
        if let kernel {
            kernelPath = kernel
        } else if let found = TestGuest.locate() {
            kernelPath = found
        } else {
            fail("no --kernel given and the test guest is not built: run `make -C guest` (or set BULKHEAD_GUEST)")
        }
        var configuration = MachineConfiguration(
            kernelPath: kernelPath, commandLine: cmdline, memorySize: memorySize, vcpus: vcpus)
        do {
            for disk in disks { configuration.disks.append(try DiskConfiguration.parse(disk)) }
        } catch {
            fail("\(error)")
        }
        guard restartBudget >= 0 else { fail("--restart-budget \(restartBudget) must not be negative") }
        guard restartWindow > 0 else { fail("--restart-window \(restartWindow) must be positive") }
        configuration.restartPolicy.budget = restartBudget
        configuration.restartPolicy.windowSeconds = restartWindow
        guard watchdogMilliseconds >= 10 else { fail("--watchdog-ms \(watchdogMilliseconds) is too short: at least 10") }
        configuration.watchdogMilliseconds = watchdogMilliseconds
        if let explicit = getenv("BULKHEAD_DOMAIN") { configuration.domainExecutable = String(cString: explicit) }
        var schedule: [FaultSchedule] = []
        for text in injectFaults {
            guard let item = FaultSchedule(text) else {
                fail("--inject-fault \(text): expected DOMAIN:KIND@SECONDS[:ARG] (kinds: crash, segv, hang, slow, corrupt-message, seccomp, exit)")
            }
            guard configuration.disks.indices.contains(where: { "blk\($0)" == item.domain }) else {
                fail("--inject-fault \(text): no domain \(item.domain)")
            }
            schedule.append(item)
        }

        let console = Console()
        let machine: Machine
        do {
            machine = try Machine(configuration, logger: logger, consoleOutput: { byte in console.write(byte) })
        } catch {
            fail("\(error)")
        }
        var api: APIServer?
        if let apiSocket {
            do {
                api = try APIServer(path: apiSocket, machine: machine, logger: logger)
            } catch {
                fail("--api-socket \(apiSocket): \(error)")
            }
            api?.start()
        }
        console.forwardInput(to: machine)
        for item in schedule { FaultSchedule.start(item, on: machine) }
        let exit = machine.run()
        console.flush()
        for report in machine.domainReports { printError("bulkhead: " + report.summary) }
        if let api { unlink(api.path) }
        switch exit {
        case .debugExit, .reset:
            logger.info("\(exit)")
        case .tripleFault, .vcpuFailure:
            printError("bulkhead: \(exit)")
        }
        Glibc.exit(exit.exitStatus)
    }

    func fail(_ message: String) -> Never {
        printError("bulkhead: error: \(message)")
        Glibc.exit(1)
    }
}

/// Finds the project's test guest: $BULKHEAD_GUEST, or guest/build/guest.elf in the current
/// directory or in a directory above the executable (a checkout's .build/<config>/bulkhead).
enum TestGuest {
    static let relativePath = "guest/build/guest.elf"

    static func locate() -> String? {
        if let explicit = getenv("BULKHEAD_GUEST") { return String(cString: explicit) }
        var candidates = [relativePath]
        var directory = executablePath()
        for _ in 0..<6 {
            guard let slash = directory.lastIndex(of: "/") else { break }
            directory = String(directory[..<slash])
            candidates.append((directory.isEmpty ? "" : directory) + "/" + relativePath)
        }
        return candidates.first { access($0, R_OK) == 0 }
    }

    /// The resolved path of this executable (/proc/self/exe).
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One `--inject-fault DOMAIN:KIND@SECONDS[:ARG]`: a test hook that asks a domain to misbehave.
struct FaultSchedule: Sendable {
    let domain: String
    let fault: ControlMessage.InjectFault
    let seconds: Double

    static let kinds: [String: ControlMessage.InjectFault.Kind] = [
        "crash": .crash, "segv": .segv, "hang": .hang, "slow": .slow, "corrupt-message": .corruptMessage,
        "seccomp": .seccomp, "exit": .exit,
    ]

    init?(_ text: String) {
        let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        let target = parts[0].split(separator: ":").map(String.init)
        let when = parts[1].split(separator: ":").map(String.init)
        guard target.count == 2, let kind = Self.kinds[target[1]], let seconds = Double(when[0]), seconds >= 0,
              when.count <= 2 else { return nil }
        var argument: UInt64 = 0
        if when.count == 2 {
            guard let value = UInt64(when[1]) else { return nil }
            argument = value
        }
        domain = target[0]
        fault = ControlMessage.InjectFault(kind: kind, argument: argument)
        self.seconds = seconds
    }

    static func start(_ item: FaultSchedule, on machine: Machine) {
        _ = DedicatedThread.start(name: "inject") {
            usleep(useconds_t(item.seconds * 1_000_000))
            machine.injectFault(domain: item.domain, item.fault)
        }
    }
}
