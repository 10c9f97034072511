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

    @OptionGroup var options: MachineOptions

    @Option(name: .customLong("inject-fault"), help: ArgumentHelp(
        "Test hook: at SECONDS after boot, make DOMAIN run a fault: DOMAIN:KIND@SECONDS[:ARG], KIND one of "
            + "crash, segv, hang, slow, corrupt-message, seccomp, exit. Repeatable.", valueName: "fault", visibility: .hidden))
    var injectFaults: [String] = []

    func run() throws {
        let logger = options.makeLogger()
        let (configuration, apiSocket) = options.configuration()
        let domains = MachineOptions.domainIDs(configuration)
        var schedule: [FaultSchedule] = []
        for text in injectFaults {
            guard let item = FaultSchedule(text) else {
                fail("--inject-fault \(text): expected DOMAIN:KIND@SECONDS[:ARG] (kinds: \(FaultKind.names.joined(separator: ", ")))")
            }
            guard domains.contains(item.domain) else { fail("--inject-fault \(text): no domain \(item.domain)") }
            schedule.append(item)
        }
        let (_, exit) = runMachine(configuration, apiSocket: apiSocket, logger: logger) { machine in
            for item in schedule { FaultSchedule.start(item, on: machine) }
        }
        Glibc.exit(exit.exitStatus)
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

    init?(_ text: String) {
        let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return nil }
        let target = parts[0].split(separator: ":").map(String.init)
        let when = parts[1].split(separator: ":").map(String.init)
        guard target.count == 2, let kind = FaultKind.parse(target[1]), let seconds = Double(when[0]), seconds >= 0,
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
