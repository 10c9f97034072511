import BulkheadAPI
import BulkheadBoot
import BulkheadCore
import BulkheadSystem
#if canImport(Glibc)
import Glibc
#endif

/// A VM spec file (`--config FILE`): JSON naming the kernel, command line, devices, each
/// domain's restart policy and watchdog deadline. Flags on the command line override it.
///
/// ```json
/// {
///   "kernel": "guest/build/guest.elf",
///   "cmdline": "workload=blk-verify seconds=10",
///   "memory": "256M",
///   "vcpus": 1,
///   "disks": [{"path": "disk.img", "readonly": false, "cache": "none", "watchdog_ms": 500, "restart_policy": {"budget": 20}}],
///   "nets": [{"tap": "tap0", "mac": "52:54:00:12:34:56"}],
///   "restart_policy": {"budget": 100, "window_seconds": 60, "initial_backoff_ms": 10, "max_backoff_ms": 1000},
///   "watchdog_ms": 1000,
///   "api_socket": "/run/bulkhead/vm0.sock"
/// }
/// ```
struct VMSpec: Decodable {
    struct Disk: Decodable {
        var path: String
        var readonly: Bool?
        /// "none" (O_DIRECT) or "writeback" (the default), as `--disk PATH,cache=`.
        var cache: String?
        /// This disk's domain only; the top-level values otherwise.
        var restart_policy: Policy?
        var watchdog_ms: Double?
    }

    struct Net: Decodable {
        var tap: String
        var mac: String?
        /// "virtio" (the default) or "rtl8139", as `--net ...,model=`.
        var model: String?
        /// This NIC's domain only; the top-level values otherwise.
        var restart_policy: Policy?
        var watchdog_ms: Double?
    }

    struct Policy: Decodable {
        var budget: Int?
        var window_seconds: Double?
        var initial_backoff_ms: Double?
        var max_backoff_ms: Double?
    }

    var kernel: String?
    var cmdline: String?
    var memory: String?
    var vcpus: Int?
    var disks: [Disk]?
    var nets: [Net]?
    var restart_policy: Policy?
    var watchdog_ms: Double?
    var api_socket: String?

    /// Reads and decodes `path`; errors name the file and, for bad JSON, what is wrong.
    static func load(_ path: String) throws(CoreError) -> VMSpec {
        guard let text = readWholeFile(path) else {
            throw CoreError(.invalidConfiguration("--config \(path): cannot read the file"))
        }
        do {
            return try JSON.decode(VMSpec.self, from: text)
        } catch let DecodingError.keyNotFound(key, context) {
            throw CoreError(.invalidConfiguration("--config \(path): missing \"\(key.stringValue)\" at \(where_(context))"))
        } catch let DecodingError.typeMismatch(type, context) {
            throw CoreError(.invalidConfiguration("--config \(path): \(where_(context)) should be a \(type)"))
        } catch let DecodingError.valueNotFound(type, context) {
            throw CoreError(.invalidConfiguration("--config \(path): \(where_(context)) should be a \(type), not null"))
        } catch let DecodingError.dataCorrupted(context) {
            throw CoreError(.invalidConfiguration("--config \(path): not valid JSON (\(context.debugDescription))"))
        } catch {
            throw CoreError(.invalidConfiguration("--config \(path): \(error)"))
        }
    }

    private static func where_(_ context: DecodingError.Context) -> String {
        let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return path.isEmpty ? "the top level" : String(path.dropFirst(path.hasPrefix(".") ? 1 : 0))
    }
}

/// The whole of a small text file (at most 16 MiB), or nil.
func readWholeFile(_ path: String) -> String? {
    (try? FileDescriptor.readContents(of: path, limit: 16 << 20)).map { String(decoding: $0, as: UTF8.self) }
}

extension VMSpec.Policy {
    /// `base` with the fields this policy sets.
    func applied(to base: RestartPolicy) -> RestartPolicy {
        var policy = base
        if let budget { policy.budget = max(0, budget) }
        if let window_seconds, window_seconds > 0 { policy.windowSeconds = window_seconds }
        if let initial_backoff_ms { policy.initialBackoffMilliseconds = max(0, initial_backoff_ms) }
        if let max_backoff_ms { policy.maximumBackoffMilliseconds = max(0, max_backoff_ms) }
        return policy
    }
}
