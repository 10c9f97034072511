import ArgumentParser
import BulkheadAPI
#if canImport(Glibc)
import Glibc
#endif

/// The operator's side: status, fault injection, events and metrics of a running VM.
struct APISocketOption: ParsableArguments {
    @Option(help: ArgumentHelp("The API socket of the VM (bulkhead run --api-socket).", valueName: "path"))
    var apiSocket: String

    func client() -> APIClient { APIClient(path: apiSocket) }

    func request(_ method: String, _ target: String, body: String = "") -> APIClient.Response {
        do {
            return try client().request(method, target, body: body)
        } catch {
            printError("bulkhead: error: cannot reach the API at \(apiSocket): \(error.errno) (is `bulkhead run --api-socket \(apiSocket)` running?)")
            Glibc.exit(1)
        }
    }
}

/// Prints an API error body's message and exits 1 when the status is not 2xx.
func requireSuccess(_ response: APIClient.Response) {
    guard !(200..<300).contains(response.status) else { return }
    let message = JSON.parse(response.body)?["error"]?.stringValue ?? response.body
    printError("bulkhead: error: \(message) (HTTP \(response.status))")
    Glibc.exit(1)
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the state of each driver domain of a running VM.")

    @OptionGroup var api: APISocketOption
    @Flag(help: "Print the API's JSON instead of a table.")
    var json = false

    func run() throws {
        let response = api.request("GET", "/domains")
        requireSuccess(response)
        if json { print(response.body, terminator: ""); return }
        guard case .array(let domains)? = JSON.parse(response.body) else {
            printError("bulkhead: error: the API answered something that is not a list of domains")
            Glibc.exit(1)
        }
        var rows = [["DOMAIN", "KIND", "STATE", "PID", "RESTARTS", "LAST EXIT", "UPTIME", "RECOVERY", "REQUESTS", "IN FLIGHT", "RSS"]]
        for domain in domains {
            func text(_ key: String) -> String {
                switch domain[key] {
                case .string(let s)?: return s
                case .number(let n)?: return n == n.rounded() ? String(Int64(n)) : String(n)
                default: return "-"
                }
            }
            let uptime = domain["uptime_seconds"]?.numberValue.map { formatDecimal($0, 1) + " s" } ?? "-"
            let recovery = domain["last_recovery_ms"]?.numberValue.map { formatDecimal($0, 2) + " ms" } ?? "-"
            let rss = domain["rss_bytes"]?.numberValue.map { formatDecimal($0 / 1_048_576, 1) + " MiB" } ?? "-"
            rows.append([text("id"), text("kind"), text("state"), text("pid"), text("restarts"), text("last_exit_reason"),
                         uptime, recovery, text("requests"), text("in_flight"), rss])
        }
        printTable(rows)
    }
}

struct Inject: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inject a fault into a driver domain of a running VM.",
        discussion: "Faults: crash (SIGKILL from the core), segv, hang, slow (ARGUMENT µs per request), corrupt-message, seccomp, exit.")

    @OptionGroup var api: APISocketOption
    @Argument(help: "The domain, e.g. blk0.") var domain: String
    @Argument(help: "The fault kind.") var fault: String
    @Argument(help: "The fault's argument (slow: µs per request).") var argument: UInt64 = 0

    func run() throws {
        let body = JSON.object([("fault", .string(fault)), ("argument", .int(argument))]).serialized
        let response = api.request("POST", "/domains/\(domain)/inject", body: body)
        requireSuccess(response)
        print("injected \(fault) into \(domain)")
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stream domain events (exited, restarted, recovered, failed) as JSON lines.")

    @OptionGroup var api: APISocketOption

    func run() throws {
        do {
            try api.client().stream("/events") { line in
                print(line)
                fflush(nil)
            }
        } catch {
            printError("bulkhead: error: cannot reach the API at \(api.apiSocket): \(error.errno)")
            Glibc.exit(1)
        }
    }
}

struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the VM's metrics in Prometheus text format.")

    @OptionGroup var api: APISocketOption

    func run() throws {
        let response = api.request("GET", "/metrics")
        requireSuccess(response)
        print(response.body, terminator: "")
    }
}

func formatDecimal(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int64((value * scale).rounded())
    let whole = scaled / Int64(scale), fraction = abs(scaled % Int64(scale))
    var fractionText = String(fraction)
    while fractionText.count < digits { fractionText = "0" + fractionText }
    return digits == 0 ? String(whole) : "\(whole).\(fractionText)"
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = first.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        let line = row.enumerated().map { i, cell in cell + String(repeating: " ", count: widths[i] - cell.count) }.joined(separator: "  ")
        print(String(line.reversed().drop(while: { $0 == " " }).reversed()))
    }
}
