import BulkheadTestSupport
import Foundation
import Testing

/// End-to-end: the `bulkhead` executable boots real guests under real KVM.
@Suite("Boot under KVM", .serialized, .enabled(if: Checkout.hasKVM, "needs /dev/kvm (read-write); skipped"))
struct BootTests {
    static let guestNeeded = Checkout.hasGuest && Checkout.hasBulkhead

    func bulkhead(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        try runProcess(Checkout.bulkhead, arguments, environment: environment, timeout: 120)
    }

    @Test("hello reports the vCPUs and memory it was given", .enabled(if: guestNeeded, "needs guest/build/guest.elf and the bulkhead build"))
    func hello() throws {
        let result = try bulkhead(["run", "--kernel", Checkout.guest, "--cmdline", "workload=hello", "--vcpus", "2"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.resultLines == ["BULKHEAD-RESULT hello status=ok vcpus=2 mem_mib=256"], "stdout: \(result.stdout)")
    }

    @Test("hello sees other memory sizes", .enabled(if: guestNeeded, "needs guest/build/guest.elf and the bulkhead build"),
          arguments: [("64M", 64), ("1G", 1024), ("4G", 4096)])
    func memorySizes(memory: String, mib: Int) throws {
        let result = try bulkhead(["run", "--kernel", Checkout.guest, "--cmdline", "workload=hello", "--memory", memory])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.resultLines == ["BULKHEAD-RESULT hello status=ok vcpus=1 mem_mib=\(mib)"], "stdout: \(result.stdout)")
    }

    @Test("smp: every vCPU checks in", .enabled(if: guestNeeded, "needs guest/build/guest.elf and the bulkhead build"))
    func smp() throws {
        let result = try bulkhead(["run", "--kernel", Checkout.guest, "--cmdline", "workload=smp", "--vcpus", "4"])
        #expect(result.status == 0, "stderr: \(result.stderr)\nstdout: \(result.stdout)")
        #expect(result.resultLines == ["BULKHEAD-RESULT smp status=ok vcpus=4 checked_in=4"], "stdout: \(result.stdout)")
    }

    @Test("without --kernel, the test guest runs", .enabled(if: guestNeeded, "needs guest/build/guest.elf and the bulkhead build"))
    func defaultKernel() throws {
        let result = try bulkhead(["run", "--cmdline", "workload=hello"], environment: ["BULKHEAD_GUEST": Checkout.guest])
        #expect(result.status == 0)
        #expect(result.resultLines.first?.hasPrefix("BULKHEAD-RESULT hello status=ok") == true)
    }

    @Test("an unknown workload fails with a non-zero status", .enabled(if: guestNeeded, "needs guest/build/guest.elf and the bulkhead build"))
    func unknownWorkload() throws {
        let result = try bulkhead(["run", "--kernel", Checkout.guest, "--cmdline", "workload=no-such-thing"])
        #expect(result.status != 0 && !result.signaled)
        #expect(result.resultLines.first?.hasPrefix("BULKHEAD-RESULT no-such-thing status=fail") == true, "stdout: \(result.stdout)")
    }

    @Test("UART output and the debug-exit value reach the host", arguments: [0, 7, 255] as [UInt8])
    func debugExitStatus(code: UInt8) throws {
        let kernel = try writeTemporary(MiniKernel.exit(code: code, printing: "from the guest\n"))
        defer { try? FileManager.default.removeItem(atPath: kernel) }
        let result = try bulkhead(["run", "--kernel", kernel])
        #expect(result.status == Int32(code))
        #expect(result.stdout == "from the guest\n")
    }

    @Test("an i8042 reset stops the VM with status 0")
    func reset() throws {
        let kernel = try writeTemporary(MiniKernel.reset(printing: "bye\n"))
        defer { try? FileManager.default.removeItem(atPath: kernel) }
        let result = try bulkhead(["run", "--kernel", kernel, "--vcpus", "2"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout == "bye\n")
    }

    @Test("a spec file (--config) gives the kernel, memory, vCPUs and policies; flags override it")
    func specFile() throws {
        let kernel = try writeTemporary(MiniKernel.exit(code: 3, printing: "spec\n"))
        defer { try? FileManager.default.removeItem(atPath: kernel) }
        let spec = try writeTemporaryJSON("""
            {"kernel": "\(kernel)", "memory": "64M", "vcpus": 2, "unknown_key": [1, {"x": null}],
             "restart_policy": {"budget": 5, "window_seconds": 10.5, "initial_backoff_ms": 1, "max_backoff_ms": 50},
             "watchdog_ms": 500}
            """)
        defer { try? FileManager.default.removeItem(atPath: spec) }
        let result = try bulkhead(["run", "--config", spec])
        #expect(result.status == 3, "stderr: \(result.stderr)")
        #expect(result.stdout == "spec\n")
        let overridden = try bulkhead(["run", "--config", spec, "--vcpus", "0"])
        #expect(overridden.status == 1 && overridden.stderr.contains("--vcpus 0 is out of range"), "stderr: \(overridden.stderr)")
    }

    @Test("a triple fault is reported, not hung on")
    func tripleFault() throws {
        let kernel = try writeTemporary(MiniKernel.tripleFault())
        defer { try? FileManager.default.removeItem(atPath: kernel) }
        let result = try bulkhead(["run", "--kernel", kernel])
        #expect(result.status == 125)
        #expect(result.stderr.contains("triple-fault"), "stderr: \(result.stderr)")
    }
}

/// Bad input gets one clear line naming what is wrong and exit status 1, never a trap.
@Suite("Bad input", .enabled(if: Checkout.hasBulkhead, "needs the bulkhead build"))
struct BadInputTests {
    static let cases: [(name: String, arguments: [String], environment: [String: String], expected: String)] = {
        let mini = (try? writeTemporary(MiniKernel.exit(code: 0))) ?? "/nonexistent"
        return [
            ("missing file", ["run", "--kernel", "/nonexistent/vmlinux"], [:], "cannot read kernel /nonexistent/vmlinux: No such file"),
            ("a directory", ["run", "--kernel", "/tmp"], [:], "cannot read kernel /tmp"),
            ("not an ELF", ["run", "--kernel", "/etc/hostname"], [:], "/etc/hostname: not an ELF file"),
            ("no PVH note", ["run", "--kernel", "/bin/ls"], [:], "/bin/ls: no PVH entry point"),
            ("memory too small", ["run", "--kernel", mini, "--memory", "8M"], [:], "--memory 8 MiB is too small"),
            ("memory not a size", ["run", "--kernel", mini, "--memory", "lots"], [:], "--memory lots is not a size"),
            ("zero vCPUs", ["run", "--kernel", mini, "--vcpus", "0"], [:], "--vcpus 0 is out of range"),
            ("no /dev/kvm", ["run", "--kernel", mini], ["BULKHEAD_KVM_DEVICE": "/nonexistent/kvm"], "cannot use /dev/kvm"),
            ("no kernel and no test guest", ["run"], ["BULKHEAD_GUEST": "/nonexistent/guest.elf"], "cannot read kernel /nonexistent/guest.elf"),
            ("missing disk", ["run", "--kernel", mini, "--disk", "/nonexistent/disk.img"], [:], "--disk /nonexistent/disk.img: cannot open"),
            ("bad disk option", ["run", "--kernel", mini, "--disk", "/tmp/x.img,fast"], [:], "unknown option \"fast\""),
            ("bad cache mode", ["run", "--kernel", mini, "--disk", "/tmp/x.img,cache=fast"], [:], "--disk /tmp/x.img,cache=fast: unknown cache mode \"fast\""),
            ("O_DIRECT on a size that is not whole blocks", ["run", "--kernel", mini, "--disk", "/bin/ls,readonly,cache=none"], [:],
             "--disk /bin/ls,cache=none: \(BadInputTests.size("/bin/ls")) bytes is not a multiple of 4096"),
            ("bad fault schedule", ["run", "--kernel", mini, "--inject-fault", "blk0:crash"], [:], "--inject-fault blk0:crash: expected"),
            ("no domain executable", ["run", "--kernel", mini, "--disk", "/bin/ls,readonly"], ["BULKHEAD_DOMAIN": "/nonexistent/bulkhead-domain"],
             "/nonexistent/bulkhead-domain is missing or not executable"),
            ("bad spec file", ["run", "--config", "/etc/hostname"], [:], "--config /etc/hostname: not valid JSON"),
            ("missing spec file", ["run", "--config", "/nonexistent/vm.json"], [:], "--config /nonexistent/vm.json: cannot read"),
        ] + badSpecs.map(specCase)
    }()

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? -1
    }

    static func specCase(_ spec: (text: String, expected: String)) -> (String, [String], [String: String], String) {
        let path: String = (try? writeTemporaryJSON(spec.text)) ?? "/nonexistent/spec.json"
        let expected: String = "--config " + path + ": " + spec.expected
        return ("spec " + spec.text, ["run", "--config", path], [:], expected)
    }

    /// Spec files the decoder rejects, and what the one line says after "--config FILE: ".
    static let badSpecs: [(text: String, expected: String)] = [
        (#"{"disks": [{"readonly": true}]}"#, #"missing "path" at disks[0]"#),
        (#"{"vcpus": "two"}"#, "vcpus should be a Int"),
        (#"{"vcpus": 1.5}"#, "vcpus should be a Int"),
        (#"{"disks": {"path": "x"}}"#, "disks should be a Array<Any>"),
        (#"{"disks": [{"path": "/tmp/x", "readonly": "yes"}]}"#, "disks[0].readonly should be a Bool"),
        (#"{"nets": [{"tap": "tap0", "restart_policy": {"window_seconds": "x"}}]}"#,
         "nets[0].restart_policy.window_seconds should be a Double"),
        (#"{"disks": [{"path": null}]}"#, "disks[0].path should be a String, not null"),
        ("[1, 2]", "the top level should be a Dictionary<String, Any>"),
        (#"{"vcpus": 1"#, "not valid JSON (at line 1, column 12)"),
        ("{\n  \"vcpus\": 1,\n}", "not valid JSON (at line 3, column 1)"),
    ]

    @Test(arguments: cases.indices)
    func rejected(index: Int) throws {
        let item = Self.cases[index]
        let result = try runProcess(Checkout.bulkhead, item.arguments, environment: item.environment, timeout: 60)
        #expect(result.status == 1 && !result.signaled, "\(item.name): status \(result.status), stderr: \(result.stderr)")
        let lines = result.stderr.split(whereSeparator: \.isNewline)
        #expect(lines.count == 1, "\(item.name): \(result.stderr)")
        #expect(result.stderr.hasPrefix("bulkhead: error: "), "\(item.name): \(result.stderr)")
        #expect(result.stderr.contains(item.expected), "\(item.name): \(result.stderr)")
    }
}

/// Writes `text` to a new `.json` file in the temporary directory and returns its path.
func writeTemporaryJSON(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "bulkhead-test-\(UUID().uuidString).json"
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

/// Writes `bytes` to a new file in the temporary directory and returns its path.
func writeTemporary(_ bytes: [UInt8]) throws -> String {
    let path = NSTemporaryDirectory() + "bulkhead-test-\(UUID().uuidString).elf"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}
