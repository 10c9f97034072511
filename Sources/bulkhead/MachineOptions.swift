import ArgumentParser
import BulkheadAPI
import BulkheadBoot
import BulkheadCore
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What a VM is made of, from flags and an optional spec file (`--config`); shared by
/// `bulkhead run` and `bulkhead chaos`. A flag overrides the spec file.
struct MachineOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A VM spec file (JSON): kernel, command line, devices, restart policy, watchdog.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp("PVH ELF kernel to boot (default: the test guest, guest/build/guest.elf).", valueName: "path"))
    var kernel: String?

    @Option(help: ArgumentHelp("Kernel command line, e.g. \"workload=hello\".", valueName: "string"))
    var cmdline: String?

    @Option(help: ArgumentHelp("Guest memory: 256M, 1G, 512MiB; a bare number is MiB (default 256M).", valueName: "size"))
    var memory: String?

    @Option(help: "Number of vCPUs (default 1).")
    var vcpus: Int?

    @Option(name: .customLong("disk"), help: ArgumentHelp(
        "A raw disk image served by a virtio-blk driver domain: PATH[,readonly][,cache=none|writeback]. cache=none opens it O_DIRECT. Repeat for more disks.", valueName: "disk"))
    var disks: [String] = []

    @Option(name: .customLong("net"), help: ArgumentHelp(
        "A NIC on a host tap device (created when missing), served by a driver domain: "
            + "tap=IFNAME[,mac=xx:xx:xx:xx:xx:xx][,model=virtio|rtl8139] (virtio-net, or an emulated RTL8139 on PCI). "
            + "Repeat for more NICs.", valueName: "net"))
    var nets: [String] = []

    @Option(help: ArgumentHelp("Restarts a domain may use within --restart-window before its device fails (default 100).", valueName: "n"))
    var restartBudget: Int?

    @Option(help: ArgumentHelp("The window of the restart budget, in seconds (default 60).", valueName: "seconds"))
    var restartWindow: Double?

    @Option(help: ArgumentHelp("Serve the operator API (status, metrics, events, fault injection) on this unix socket.",
                               valueName: "path"))
    var apiSocket: String?

    @Option(name: .customLong("watchdog-ms"), help: ArgumentHelp(
        "A domain that stops heart-beating this long while work is pending is killed and restarted (default 1000).", valueName: "ms"))
    var watchdogMilliseconds: Double?

    @Option(help: ArgumentHelp("Log level: trace, debug, info, notice, warning, error, critical.", valueName: "level"))
    var logLevel: String = "warning"

    /// The configuration, or one line naming the flag or file at fault and exit 1.
    func configuration() -> (MachineConfiguration, apiSocket: String?) {
        var spec = VMSpec()
        if let config {
            do { spec = try VMSpec.load(config) } catch { fail("\(error)") }
        }
        let memoryText = memory ?? spec.memory ?? "256M"
        guard let memorySize = MemorySize.parse(memoryText) else {
            fail("\(memory != nil ? "--memory" : "memory in \(config ?? "")") \(memoryText) is not a size (examples: 256M, 1G, 512MiB)")
        }
        let kernelPath: String
        if let path = kernel ?? spec.kernel {
            kernelPath = path
        } else if let found = TestGuest.locate() {
            kernelPath = found
        } else {
            fail("no --kernel given and the test guest is not built: run `make -C guest` (or set BULKHEAD_GUEST)")
        }
        var configuration = MachineConfiguration(
            kernelPath: kernelPath, commandLine: cmdline ?? spec.cmdline ?? "", memorySize: memorySize, vcpus: vcpus ?? spec.vcpus ?? 1)
        do {
            for disk in spec.disks ?? [] {
                var parsed = DiskConfiguration(path: disk.path, readOnly: disk.readonly ?? false)
                if let cache = disk.cache { parsed.cache = try .parse(cache, context: "cache of disk \(disk.path) in \(config ?? "")") }
                parsed.watchdogMilliseconds = disk.watchdog_ms  // its restart policy is resolved below
                configuration.disks.append(parsed)
            }
            for disk in disks { configuration.disks.append(try DiskConfiguration.parse(disk)) }
            for net in spec.nets ?? [] {
                configuration.nets.append(try NetConfiguration.parse(
                    "tap=\(net.tap)" + (net.mac.map { ",mac=\($0)" } ?? "") + (net.model.map { ",model=\($0)" } ?? "")))
            }
            for net in nets { configuration.nets.append(try NetConfiguration.parse(net)) }
        } catch {
            fail("\(error)")
        }
        let budget = restartBudget ?? spec.restart_policy?.budget ?? configuration.restartPolicy.budget
        let window = restartWindow ?? spec.restart_policy?.window_seconds ?? configuration.restartPolicy.windowSeconds
        guard budget >= 0 else { fail("--restart-budget \(budget) must not be negative") }
        guard window > 0 else { fail("--restart-window \(window) must be positive") }
        configuration.restartPolicy.budget = budget
        configuration.restartPolicy.windowSeconds = window
        if let backoff = spec.restart_policy?.initial_backoff_ms { configuration.restartPolicy.initialBackoffMilliseconds = max(0, backoff) }
        if let backoff = spec.restart_policy?.max_backoff_ms { configuration.restartPolicy.maximumBackoffMilliseconds = max(0, backoff) }
        let watchdog = watchdogMilliseconds ?? spec.watchdog_ms ?? configuration.watchdogMilliseconds
        guard watchdog >= 10 else { fail("--watchdog-ms \(watchdog) is too short: at least 10") }
        configuration.watchdogMilliseconds = watchdog
        // Per-disk policies refine the machine's, which the flags and the spec set just above.
        for (index, disk) in (spec.disks ?? []).enumerated() where index < configuration.disks.count {
            if let policy = disk.restart_policy { configuration.disks[index].restartPolicy = policy.applied(to: configuration.restartPolicy) }
            if let watchdog = disk.watchdog_ms, watchdog < 10 {
                fail("\(config ?? "--config"): disks[\(index)].watchdog_ms \(watchdog) is too short: at least 10")
            }
        }
        for (index, net) in (spec.nets ?? []).enumerated() where index < configuration.nets.count {
            if let policy = net.restart_policy { configuration.nets[index].restartPolicy = policy.applied(to: configuration.restartPolicy) }
            if let watchdog = net.watchdog_ms {
                guard watchdog >= 10 else { fail("\(config ?? "--config"): nets[\(index)].watchdog_ms \(watchdog) is too short: at least 10") }
                configuration.nets[index].watchdogMilliseconds = watchdog
            }
        }
        if let explicit = getenv("BULKHEAD_DOMAIN") { configuration.domainExecutable = String(cString: explicit) }
        return (configuration, apiSocket ?? spec.api_socket)
    }

    func makeLogger() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "bulkhead")
    }

    /// The names of the domains the configuration creates (`blk0`, ..., `net0`, ...).
    static func domainIDs(_ configuration: MachineConfiguration) -> [String] {
        configuration.disks.indices.map { "blk\($0)" } + configuration.nets.indices.map { "net\($0)" }
    }
}

/// Boots `configuration`, serves the API if asked, runs `whileRunning` once the machine is up,
/// and returns how the machine ended once every vCPU stopped (the console is flushed and the
/// domain reports printed).
func runMachine(_ configuration: MachineConfiguration, apiSocket: String?, logger: Logger,
                whileRunning: (Machine) -> Void = { _ in }) -> (Machine, MachineExit) {
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
    whileRunning(machine)
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
    return (machine, exit)
}

/// One line on stderr naming what is wrong, exit status 1.
func fail(_ message: String) -> Never {
    printError("bulkhead: error: \(message)")
    Glibc.exit(1)
}
