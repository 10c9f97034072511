import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif
import BulkheadAPI
import BulkheadBoot
import BulkheadCore

/// Fuzzes the VM spec file (`bulkhead run --config FILE`): `VMSpec` is compiled in from
/// `Sources/bulkhead/VMSpec.swift` (a symlink), decoded with `JSON.decode` (BulkheadAPI's parser
/// and `Decoder`) exactly as `VMSpec.load` does, and its fields go through the parsing
/// `MachineOptions` applies: `MemorySize.parse`, `NetConfiguration.parse` of `tap=…,mac=…`, the
/// restart policies, and `MachineConfiguration.validate()`. Errors are fine; traps are not.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVMSpec(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: data == nil ? 0 : count), as: UTF8.self)
    guard let spec = try? JSON.decode(VMSpec.self, from: text) else { return 0 }
    let memory = spec.memory.flatMap { MemorySize.parse($0) } ?? (256 << 20)
    _ = MemorySize.describe(memory)
    var configuration = MachineConfiguration(
        kernelPath: spec.kernel ?? "guest.elf", commandLine: spec.cmdline ?? "", memorySize: memory, vcpus: spec.vcpus ?? 1)
    for disk in spec.disks ?? [] {
        var parsed = DiskConfiguration(path: disk.path, readOnly: disk.readonly ?? false)
        parsed.watchdogMilliseconds = disk.watchdog_ms
        parsed.restartPolicy = disk.restart_policy?.applied(to: configuration.restartPolicy)
        configuration.disks.append(parsed)
    }
    for net in spec.nets ?? [] {
        if var parsed = try? NetConfiguration.parse("tap=\(net.tap)" + (net.mac.map { ",mac=\($0)" } ?? "")) {
            parsed.restartPolicy = net.restart_policy?.applied(to: configuration.restartPolicy)
            configuration.nets.append(parsed)
        }
    }
    if let policy = spec.restart_policy { configuration.restartPolicy = policy.applied(to: configuration.restartPolicy) }
    if let watchdog = spec.watchdog_ms { configuration.watchdogMilliseconds = watchdog }
    _ = try? configuration.validate()
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzVMSpec(data, size) })
