import ArgumentParser
import BulkheadBoot
import BulkheadCore
import Foundation
import Logging

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
        let configuration = MachineConfiguration(
            kernelPath: kernelPath, commandLine: cmdline, memorySize: memorySize, vcpus: vcpus)

        let console = Console()
        let machine: Machine
        do {
            machine = try Machine(configuration, logger: logger, consoleOutput: { byte in console.write(byte) })
        } catch {
            fail("\(error)")
        }
        console.forwardInput(to: machine)
        let exit = machine.run()
        console.flush()
        switch exit {
        case .debugExit, .reset:
            logger.info("\(exit)")
        case .tripleFault, .vcpuFailure:
            FileHandle.standardError.write(Data("bulkhead: \(exit)\n".utf8))
        }
        Foundation.exit(exit.exitStatus)
    }

    func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("bulkhead: error: \(message)\n".utf8))
        Foundation.exit(1)
    }
}

/// Finds the project's test guest: $BULKHEAD_GUEST, or guest/build/guest.elf in the current
/// directory or above the executable (a checkout's .build/<config>/bulkhead).
enum TestGuest {
    static let relativePath = "guest/build/guest.elf"

    static func locate() -> String? {
        let files = FileManager.default
        if let explicit = ProcessInfo.processInfo.environment["BULKHEAD_GUEST"] { return explicit }
        var candidates = [files.currentDirectoryPath + "/" + relativePath]
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(directory.appendingPathComponent(relativePath).path)
            directory = directory.deletingLastPathComponent()
        }
        return candidates.first { files.fileExists(atPath: $0) }
    }
}
