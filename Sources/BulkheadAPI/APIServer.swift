import BulkheadCore
import BulkheadProtocol
import BulkheadSystem
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The operator API of a running VM, on a unix socket (`--api-socket PATH`, mode 0600), in the
/// style of Firecracker's: JSON over HTTP/1.1, one request per connection.
///
/// | request | answer |
/// |---|---|
/// | `GET /vm` | vCPUs, memory, uptime, kernel |
/// | `GET /domains` | every domain's status |
/// | `GET /domains/{id}` | one domain's status, with its exit reasons and recovery times |
/// | `POST /domains/{id}/inject` `{"fault": "crash", "argument": 0}` | 202; the fault is on its way |
/// | `GET /domains/{id}/ping[?count=N]` | control-path probe: N (1-100000, default 100) Ping/Pong round trips core → domain → core, µs |
/// | `GET /metrics` | Prometheus text format |
/// | `GET /events[?after=N]` | JSON lines, one per domain event, streamed until the client hangs up |
///
/// Requests run on a dedicated thread each; a malformed request gets a 4xx with
/// `{"error": "..."}`.
public final class APIServer: @unchecked Sendable {
    public let path: String
    let machine: Machine
    let logger: Logger
    let listener: FileDescriptor

    public init(path: String, machine: Machine, logger: Logger) throws(SystemError) {
        self.path = path
        self.machine = machine
        self.logger = logger
        listener = try UnixSocket.listen(at: path)
    }

    deinit { unlink(path) }

    /// Accepts connections on a dedicated thread until the process ends.
    public func start() {
        _ = DedicatedThread.start(name: "api") { [self] in
            while true {
                let client = accept(listener.rawValue, nil, nil)
                if client >= 0 { _ = fcntl(client, F_SETFD, FD_CLOEXEC) }
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    logger.error("API socket accept failed", metadata: ["api.socket": "\(path)", "errno": "\(Errno.current)"])
                    return
                }
                let connection = SharedFileDescriptor(FileDescriptor(owning: client))
                if DedicatedThread.start(name: "api-conn", { [self] in self.serve(connection) }) == nil {
                    logger.warning("cannot start a thread for an API connection")
                }
            }
        }
    }

    func serve(_ connection: SharedFileDescriptor) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(connection.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let request: HTTPRequest
        while true {
            let n = chunk.withUnsafeMutableBytes { read(connection.rawValue, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            buffer += chunk[0..<n]
            do {
                request = try HTTPRequest.parse(buffer)
                break
            } catch .incomplete {
                continue
            } catch .tooLarge {
                send(.error(413, "request too large"), on: connection)
                return
            } catch .malformed(let why) {
                send(.error(400, "malformed request: \(why)"), on: connection)
                return
            } catch {
                return
            }
        }
        if request.method == "GET" && request.path == "/events" {
            streamEvents(request, on: connection)
            return
        }
        send(route(request), on: connection)
    }

    /// Answers one request (everything but the event stream).
    public func route(_ request: HTTPRequest) -> HTTPResponse {
        let parts = request.path.split(separator: "/").map(String.init)
        switch (request.method, parts.count, parts.first) {
        case ("GET", 1, "vm"):
            return .json(vmJSON)
        case ("GET", 1, "domains"):
            return .json(.array(machine.domainStatuses.map { Self.json($0, detailed: false) }))
        case ("GET", 2, "domains"):
            guard let status = machine.domainStatuses.first(where: { $0.id == parts[1] }) else {
                return .error(404, "no domain \(parts[1]) (domains: \(machine.domainStatuses.map(\.id).joined(separator: ", ")))")
            }
            return .json(Self.json(status, detailed: true))
        case ("POST", 3, "domains") where parts[2] == "inject":
            return inject(domain: parts[1], body: request.body)
        case ("GET", 3, "domains") where parts[2] == "ping":
            return ping(domain: parts[1], count: request.query["count"])
        case ("GET", 1, "metrics"):
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: PrometheusText.render(machine: machine))
        case (_, 1, "vm"), (_, 1, "domains"), (_, 2, "domains"), (_, 3, "domains"), (_, 1, "metrics"), (_, 1, "events"):
            return .error(405, "\(request.method) is not allowed on \(request.path)")
        default:
            return .error(404, "no such resource: \(request.path)")
        }
    }

    func inject(domain: String, body: [UInt8]) -> HTTPResponse {
        guard machine.domainStatuses.contains(where: { $0.id == domain }) else { return .error(404, "no domain \(domain)") }
        guard let json = JSON.parse(String(decoding: body, as: UTF8.self)) else {
            return .error(400, "the body must be a JSON object like {\"fault\": \"crash\"}")
        }
        guard let name = json["fault"]?.stringValue else { return .error(400, "missing \"fault\" (a string)") }
        guard let kind = FaultKind.parse(name) else {
            return .error(400, "unknown fault \"\(name)\" (known: \(FaultKind.names.joined(separator: ", ")))")
        }
        var argument: UInt64 = 0
        if let value = json["argument"] {
            guard let number = value.numberValue, number >= 0, number <= 1e12, number == number.rounded() else {
                return .error(400, "\"argument\" must be a non-negative integer")
            }
            argument = UInt64(number)
        }
        guard machine.injectFault(domain: domain, ControlMessage.InjectFault(kind: kind, argument: argument)) else {
            return .error(409, "domain \(domain) is not serving right now (restarting or failed)")
        }
        logger.notice("fault injected through the API", metadata: ["domain.id": "\(domain)", "fault.kind": "\(name)"])
        return .json(.object([("domain", .string(domain)), ("fault", .string(name)), ("argument", .int(argument))]), status: 202)
    }

    func ping(domain: String, count: String?) -> HTTPResponse {
        guard machine.domainStatuses.contains(where: { $0.id == domain }) else { return .error(404, "no domain \(domain)") }
        guard let count = count.map({ Int($0) }) ?? 100, (1...100_000).contains(count) else {
            return .error(400, "\"count\" must be an integer from 1 to 100000")
        }
        guard let roundTrips = machine.pingDomain(domain, count: count), !roundTrips.isEmpty else {
            return .error(409, "domain \(domain) did not answer (restarting or failed)")
        }
        let sorted = roundTrips.sorted()
        let at = { (q: Double) in sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))] }
        return .json(.object([
            ("domain", .string(domain)), ("count", .int(sorted.count)), ("median_us", .number(at(0.5))),
            ("p99_us", .number(at(0.99))), ("min_us", .number(sorted[0])), ("max_us", .number(sorted[sorted.count - 1])),
        ]))
    }

    var vmJSON: JSON {
        let configuration = machine.configuration
        return .object([
            ("state", .string("running")),
            ("vcpus", .int(configuration.vcpus)),
            ("memory_bytes", .int(configuration.memorySize)),
            ("kernel", .string(configuration.kernelPath)),
            ("uptime_seconds", .number(machine.uptimeSeconds)),
            ("domains", .array(machine.domainStatuses.map { .string($0.id) })),
        ])
    }

    /// A domain's status as `GET /domains` (`detailed`: `GET /domains/{id}`) shows it.
    public static func json(_ status: DomainSupervisor.Status, detailed: Bool) -> JSON {
        var members: [(String, JSON)] = [
            ("id", .string(status.id)), ("kind", .string(status.kind)), ("state", .string(status.state.rawValue)),
            ("pid", status.pid.map { .int($0) } ?? .null), ("restarts", .int(status.restarts)),
            ("last_exit_reason", .optional(status.lastExitReason)), ("uptime_seconds", .optional(status.uptimeSeconds)),
            ("last_recovery_ms", .optional(status.lastRecoveryMilliseconds)), ("requests", .int(status.requests)),
            ("read_bytes", .int(status.readBytes)), ("written_bytes", .int(status.writtenBytes)),
            ("in_flight", .int(status.inFlight)), ("errors", .int(status.errors)),
            ("failed_requests", .int(status.failedRequests)),
            ("rss_bytes", status.rssBytes.map { .int($0) } ?? .null), ("cpu_seconds", .optional(status.cpuSeconds)),
        ]
        if detailed {
            members.append(("exit_reasons", .array(status.exitReasons.map { .string($0) })))
            members.append(("recovery_ms", .array(status.recoveryMilliseconds.map { .number($0) })))
            members.append(("heartbeat", .int(status.heartbeat)))
        }
        return .object(members)
    }

    func streamEvents(_ request: HTTPRequest, on connection: SharedFileDescriptor) {
        var after = request.query["after"].flatMap(UInt64.init) ?? 0
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        guard write(Array(head.utf8), to: connection) else { return }
        while true {
            for event in machine.events.events(after: after) {
                after = event.sequence
                let line = JSON.object([
                    ("sequence", .int(event.sequence)), ("time", .number(event.time)), ("event", .string(event.kind.rawValue)),
                    ("domain", .string(event.domain)), ("detail", .string(event.detail)),
                ]).serialized + "\n"
                guard write(Array(line.utf8), to: connection) else { return }
            }
            // A client that hung up shows as POLLHUP/readable-EOF.
            var fd = pollfd(fd: connection.rawValue, events: Int16(POLLIN), revents: 0)
            if poll(&fd, 1, 50) > 0 {
                var byte: UInt8 = 0
                if recv(connection.rawValue, &byte, 1, Int32(MSG_DONTWAIT)) <= 0 { return }
            }
        }
    }

    func send(_ response: HTTPResponse, on connection: SharedFileDescriptor) {
        _ = write(response.serialized, to: connection)
    }

    func write(_ bytes: [UInt8], to connection: SharedFileDescriptor) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                // SAFETY: offset < raw.count.
                let n = Glibc.send(connection.rawValue, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
    }
}

/// Fault kinds by their API names.
public enum FaultKind {
    public static let table: [(String, ControlMessage.InjectFault.Kind)] = [
        ("crash", .crash), ("segv", .segv), ("hang", .hang), ("slow", .slow), ("corrupt-message", .corruptMessage),
        ("seccomp", .seccomp), ("exit", .exit),
    ]
    public static var names: [String] { table.map(\.0) }
    public static func parse(_ name: String) -> ControlMessage.InjectFault.Kind? { table.first { $0.0 == name }?.1 }
}
