import BulkheadTestSupport
import Foundation
import Testing

/// The test guest is our common yardstick: QEMU's microvm must print the same result lines.
@Suite("Same guest under QEMU", .serialized,
       .enabled(if: Checkout.hasKVM, "needs /dev/kvm (read-write); skipped"),
       .enabled(if: QEMU.path != nil, "needs qemu-system-x86_64 (apt-get install qemu-system-x86); skipped"),
       .enabled(if: Checkout.hasGuest && Checkout.hasBulkhead, "needs guest/build/guest.elf and the bulkhead build"))
struct QEMUComparisonTests {
    @Test(arguments: [("workload=hello", 2), ("workload=hello", 1), ("workload=smp", 4)])
    func sameResultLine(cmdline: String, vcpus: Int) throws {
        let qemu = try runProcess(QEMU.path ?? "", QEMU.arguments(cmdline: cmdline, vcpus: vcpus), timeout: 120)
        let bulkhead = try runProcess(Checkout.bulkhead, [
            "run", "--kernel", Checkout.guest, "--cmdline", cmdline, "--vcpus", "\(vcpus)", "--memory", "256M",
        ])
        // isa-debug-exit: QEMU exits with (value << 1) | 1; Bulkhead with the value itself.
        #expect(qemu.status == 1, "QEMU stderr: \(qemu.stderr)")
        #expect(bulkhead.status == 0, "Bulkhead stderr: \(bulkhead.stderr)")
        #expect(!qemu.resultLines.isEmpty, "QEMU stdout: \(qemu.stdout)")
        #expect(qemu.resultLines == bulkhead.resultLines)
    }
}

enum QEMU {
    static let path = Checkout.which("qemu-system-x86_64")

    /// microvm with KVM, COM1 on stdio and the debug-exit port where Bulkhead has it.
    /// `-arch-capabilities`: this host's KVM refuses QEMU's IA32_ARCH_CAPABILITIES MSR value.
    static func arguments(cmdline: String, vcpus: Int, memory: String = "256M") -> [String] {
        ["-accel", "kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities", "-m", memory, "-smp", "\(vcpus)",
         "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
         "-device", "isa-debug-exit,iobase=0x501,iosize=2",
         "-kernel", Checkout.guest, "-append", cmdline]
    }
}
