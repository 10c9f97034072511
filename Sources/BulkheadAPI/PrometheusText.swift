import BulkheadCore

/// `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written directly:
/// a handful of families, each with HELP and TYPE lines.
public enum PrometheusText {
    static func render(machine: Machine) -> String {
        render(vcpus: machine.configuration.vcpus, memoryBytes: machine.configuration.memorySize,
               uptimeSeconds: machine.uptimeSeconds, statuses: machine.domainStatuses)
    }

    /// The families for a VM of `vcpus` and `memoryBytes`, up `uptimeSeconds`, and its domains.
    public static func render(vcpus: Int, memoryBytes: UInt64, uptimeSeconds: Double, statuses: [DomainSupervisor.Status]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples {
                let labels = sample.labels.isEmpty ? "" :
                    "{" + sample.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(name)\(labels) \(format(sample.value))\n"
            }
        }
        func perDomain(_ value: (DomainSupervisor.Status) -> Double?) -> [(labels: [(String, String)], value: Double)] {
            statuses.compactMap { status in value(status).map { (labels: [("domain", status.id), ("kind", status.kind)], value: $0) } }
        }
        family("bulkhead_vm_vcpus", "gauge", "vCPUs of the VM.", [(labels: [], value: Double(vcpus))])
        family("bulkhead_vm_memory_bytes", "gauge", "Guest memory.", [(labels: [], value: Double(memoryBytes))])
        family("bulkhead_vm_uptime_seconds", "gauge", "Seconds since the VM was created.", [(labels: [], value: uptimeSeconds)])
        family("bulkhead_domain_up", "gauge", "1 while the domain serves its device.",
               perDomain { $0.state == .running ? 1 : 0 })
        family("bulkhead_domain_failed", "gauge", "1 once the device failed (past its restart budget).",
               perDomain { $0.state == .failed ? 1 : 0 })
        family("bulkhead_domain_restarts_total", "counter", "Restarts of the domain.", perDomain { Double($0.restarts) })
        var exits: [(labels: [(String, String)], value: Double)] = []
        for status in statuses {
            for (reason, count) in status.exitReasons.map(category).occurrenceCounts() {
                exits.append((labels: [("domain", status.id), ("kind", status.kind), ("reason", reason)], value: Double(count)))
            }
        }
        family("bulkhead_domain_exits_total", "counter", "Domain processes that ended, by reason.", exits)
        family("bulkhead_domain_requests_total", "counter", "Requests the domain completed (all generations).",
               perDomain { Double($0.requests) })
        family("bulkhead_domain_failed_requests_total", "counter", "Requests answered with an error after the device failed.",
               perDomain { Double($0.failedRequests) })
        family("bulkhead_domain_in_flight", "gauge", "Requests the domain holds.", perDomain { Double($0.inFlight) })
        family("bulkhead_domain_recoveries_total", "counter", "Restarts that completed a request afterwards.",
               perDomain { Double($0.recoveryMilliseconds.count) })
        family("bulkhead_domain_last_recovery_seconds", "gauge", "From the last death to the next completed request.",
               perDomain { $0.lastRecoveryMilliseconds.map { $0 / 1000 } })
        family("bulkhead_domain_rss_bytes", "gauge", "Resident memory of the serving process.", perDomain { $0.rssBytes.map(Double.init) })
        family("bulkhead_domain_cpu_seconds_total", "counter", "CPU time of the serving process.", perDomain { $0.cpuSeconds })
        return out
    }

    /// A short label for an exit reason: `signal SIGKILL`, `seccomp`, `exit 3`, `watchdog`, ...
    static func category(_ reason: String) -> String {
        if reason.hasPrefix("killed by ") { return "signal " + reason.dropFirst("killed by ".count).prefix(while: { $0 != " " }) }
        if reason.hasPrefix("seccomp") { return "seccomp" }
        if reason.hasPrefix("exited with status ") { return "exit " + reason.dropFirst("exited with status ".count) }
        if reason.hasPrefix("watchdog") { return "watchdog" }
        if reason.hasPrefix("protocol fault") { return "protocol fault" }
        return "other"
    }

    static func escape(_ value: String) -> String {
        value.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"").replacingAll("\n", "\\n")
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

extension String {
    func replacingAll(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            out += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Substring.Index>? {
        guard let first = target.first else { return nil }
        var index = startIndex
        while let found = self[index...].firstIndex(of: first) {
            if self[found...].hasPrefix(target) { return found..<self.index(found, offsetBy: target.count) }
            index = self.index(after: found)
        }
        return nil
    }
}
