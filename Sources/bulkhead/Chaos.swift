import ArgumentParser
import BulkheadAPI
import BulkheadCore
import BulkheadProtocol
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `bulkhead chaos --config vm.json --scenario chaos.json`: boots the VM, injects the
/// scenario's faults on schedule while the guest's workload runs, and prints a summary.
struct Chaos: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Boot a VM and inject faults into its driver domains on a schedule; print a summary table.",
        discussion: """
            A scenario is JSON: {"name": "...", "steps": [{"at": 0.5, "domain": "blk0", "fault": "crash"}, \
            {"from": 1, "every": 0.2, "count": 10, "domain": "blk0", "fault": "segv"}, \
            {"at": 3, "domain": "blk0", "fault": "slow", "argument": 200}]}. Faults: \(FaultKind.names.joined(separator: ", ")). \
            The exit status is the guest's.
            """)

    @OptionGroup var options: MachineOptions

    @Option(help: ArgumentHelp("The fault schedule (JSON).", valueName: "file"))
    var scenario: String

    struct Scenario: Decodable {
        struct Step: Decodable {
            var domain: String
            var fault: String
            var argument: UInt64?
            var at: Double?
            var from: Double?
            var every: Double?
            var count: Int?
        }

        var name: String?
        var steps: [Step]
    }

    func run() throws {
        let logger = options.makeLogger()
        let (configuration, apiSocket) = options.configuration()
        let domains = MachineOptions.domainIDs(configuration)
        guard let text = readWholeFile(scenario) else { fail("--scenario \(scenario): cannot read the file") }
        let plan: Scenario
        do { plan = try JSON.decode(Scenario.self, from: text) } catch {
            fail("--scenario \(scenario): not a scenario (\(error))")
        }
        var schedule: [(seconds: Double, domain: String, fault: ControlMessage.InjectFault, name: String)] = []
        for (index, step) in plan.steps.enumerated() {
            let what = "--scenario \(scenario): step \(index + 1)"
            guard domains.contains(step.domain) else { fail("\(what): no domain \(step.domain) (domains: \(domains.joined(separator: ", ")))") }
            guard let kind = FaultKind.parse(step.fault) else {
                fail("\(what): unknown fault \"\(step.fault)\" (known: \(FaultKind.names.joined(separator: ", ")))")
            }
            let fault = ControlMessage.InjectFault(kind: kind, argument: step.argument ?? 0)
            if let at = step.at {
                guard at >= 0 else { fail("\(what): \"at\" must not be negative") }
                schedule.append((at, step.domain, fault, step.fault))
            } else if let every = step.every {
                let count = step.count ?? 1
                guard every > 0, count >= 1, count <= 100_000 else { fail("\(what): needs every > 0 and 1 ≤ count ≤ 100000") }
                for i in 0..<count { schedule.append(((step.from ?? 0) + Double(i) * every, step.domain, fault, step.fault)) }
            } else {
                fail("\(what): give \"at\", or \"every\" (with \"from\", \"count\")")
            }
        }
        schedule.sort { $0.seconds < $1.seconds }
        let timeline = schedule

        let injected = InjectionLog()
        let (machine, exit) = runMachine(configuration, apiSocket: apiSocket, logger: logger) { machine in
            _ = DedicatedThread.start(name: "chaos") {
                let start = monotonicSeconds()
                for item in timeline {
                    let wait = item.seconds - (monotonicSeconds() - start)
                    if wait > 0 { usleep(useconds_t(wait * 1_000_000)) }
                    injected.record(item.name, domain: item.domain, delivered: machine.injectFault(domain: item.domain, item.fault))
                }
            }
        }

        print("\nchaos scenario \(plan.name ?? scenario): \(schedule.count) faults scheduled; \(exit)")
        var rows = [["DOMAIN", "FAULTS SENT", "NOT DELIVERED", "RESTARTS", "EXIT REASONS", "RECOVERY MEDIAN", "P99", "MAX", "STATE"]]
        for status in machine.domainStatuses {
            let sent = injected.counts(domain: status.id)
            let recoveries = status.recoveryMilliseconds.sorted()
            func ms(_ value: Double?) -> String { value.map { formatDecimal($0, 2) + " ms" } ?? "-" }
            let reasons = status.exitReasons.occurrenceCounts()
            rows.append([
                status.id, sent.delivered.isEmpty ? "-" : sent.delivered.map { "\($0.0)×\($0.1)" }.joined(separator: " "),
                "\(sent.undelivered)", "\(status.restarts)",
                reasons.isEmpty ? "-" : reasons.map { "\($0.0) ×\($0.1)" }.joined(separator: "; "),
                ms(recoveries.isEmpty ? nil : recoveries[recoveries.count / 2]),
                ms(recoveries.isEmpty ? nil : recoveries[min(recoveries.count - 1, Int(Double(recoveries.count) * 0.99))]),
                ms(recoveries.last), status.state.rawValue,
            ])
        }
        printTable(rows)
        Glibc.exit(exit.exitStatus)
    }
}

/// Which injections reached a domain (a fault sent while the device restarts is not delivered).
final class InjectionLog: Sendable {
    private let entries = Mutex<[(name: String, domain: String, delivered: Bool)]>([])

    func record(_ name: String, domain: String, delivered: Bool) {
        entries.withLock { $0.append((name, domain, delivered)) }
    }

    func counts(domain: String) -> (delivered: [(String, Int)], undelivered: Int) {
        var delivered: [(String, Int)] = []
        var undelivered = 0
        for entry in entries.withLock({ $0 }) where entry.domain == domain {
            guard entry.delivered else { undelivered += 1; continue }
            if let i = delivered.firstIndex(where: { $0.0 == entry.name }) { delivered[i].1 += 1 } else { delivered.append((entry.name, 1)) }
        }
        return (delivered, undelivered)
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
