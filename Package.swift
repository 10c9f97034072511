// swift-tools-version: 6.0
import PackageDescription

// Dependencies point one way: executables → core → {kvm, boot} → system → C shim.
let package = Package(
    name: "Bulkhead",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "bulkhead", targets: ["bulkhead"]),
        .executable(name: "bulkhead-domain", targets: ["bulkhead-domain"]),
        // For the fuzz package (Fuzz/, its own Package.swift): the modules its targets call into.
        .library(name: "BulkheadProtocol", targets: ["BulkheadProtocol"]),
        .library(name: "BulkheadChannel", targets: ["BulkheadChannel"]),
        .library(name: "BulkheadVirtio", targets: ["BulkheadVirtio"]),
        .library(name: "BulkheadEmulated", targets: ["BulkheadEmulated"]),
        .library(name: "BulkheadBoot", targets: ["BulkheadBoot"]),
        .library(name: "BulkheadCore", targets: ["BulkheadCore"]),
        .library(name: "BulkheadAPI", targets: ["BulkheadAPI"]),
        .library(name: "BulkheadSystem", targets: ["BulkheadSystem"]),
        .library(name: "BulkheadSandbox", targets: ["BulkheadSandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // C shim: ioctl request numbers, fixed-argument wrappers, struct layouts. No logic.
        .target(name: "CBulkheadLinux"),
        // Linux system layer: owned fds, mappings, the syscall funnel, Errno-carrying errors.
        .target(name: "BulkheadSystem", dependencies: ["CBulkheadLinux"]),
        // KVM: the VM, vCPUs, their exits. Knows nothing about devices.
        .target(name: "BulkheadKVM", dependencies: ["BulkheadSystem", "CBulkheadLinux"]),
        // Generated protobuf-c code for proto/bulkhead.proto (regenerate with
        // orchestration/scripts/gen-proto.sh; never edited by hand).
        .target(
            name: "CBulkheadProto", path: "proto", exclude: ["bulkhead.proto", "README.md"],
            sources: ["c"], publicHeadersPath: "c/include",
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),
        // The core<->domain messages as Swift values, encoded with protobuf-c. No Foundation.
        .target(name: "BulkheadProtocol", dependencies: ["CBulkheadProto"]),
        // The control channel: shared-memory region, SPSC byte rings, doorbells, recovery area.
        .target(name: "BulkheadChannel", dependencies: ["BulkheadSystem", "BulkheadProtocol", "CBulkheadLinux"]),
        // Split virtqueues over guest memory (descriptor chains, used ring, EVENT_IDX,
        // in-flight recovery), the virtio-blk request engine and the virtio-net frame engine. No Foundation.
        .target(name: "BulkheadVirtio", dependencies: ["BulkheadSystem", "CBulkheadLinux"]),
        // Emulated (non-virtio) devices a stock guest drives with its in-tree driver: the RTL8139
        // register model, its transmit and receive ring in guest memory, its restartable state.
        .target(name: "BulkheadEmulated", dependencies: ["BulkheadVirtio", "BulkheadSystem", "CBulkheadLinux"]),
        // C for the sandbox: spawning a domain into new namespaces with its fds, libseccomp.
        .target(name: "CBulkheadSandbox", linkerSettings: [.linkedLibrary("seccomp")]),
        // Entering a domain's sandbox: namespaces, empty root, uid, capabilities, rlimits, seccomp.
        .target(name: "BulkheadSandbox", dependencies: ["BulkheadSystem", "CBulkheadSandbox"]),
        // Every driver domain: `bulkhead-domain <kind> <id>`; one folder per kind under domains/.
        .executableTarget(
            name: "bulkhead-domain",
            dependencies: ["BulkheadSystem", "BulkheadChannel", "BulkheadProtocol", "BulkheadVirtio", "BulkheadEmulated", "BulkheadSandbox", "CBulkheadLinux"],
            path: "domains", exclude: ["README.md", "blk/README.md", "net/README.md", "probe/README.md", "rtl8139/README.md"]
        ),
        // Boot protocols: ELF/PVH loader, hvm_start_info, memory map, ACPI tables. Pure logic.
        .target(name: "BulkheadBoot", dependencies: []),
        // The core: guest memory, platform devices, the I/O bus, the vCPU runner.
        .target(
            name: "BulkheadCore",
            dependencies: [
                "BulkheadSystem", "BulkheadKVM", "BulkheadBoot", "CBulkheadLinux",
                "BulkheadChannel", "BulkheadProtocol", "BulkheadVirtio", "BulkheadSandbox",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The operator API on a unix socket (JSON over HTTP/1.1, Prometheus text) and its client.
        .target(
            name: "BulkheadAPI",
            dependencies: ["BulkheadCore", "BulkheadProtocol", "BulkheadSystem", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "bulkhead",
            dependencies: [
                "BulkheadCore", "BulkheadBoot", "BulkheadProtocol", "BulkheadAPI", "BulkheadSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Shared by the test targets: an ELF builder, tiny PVH kernels, a subprocess runner.
        .target(name: "BulkheadTestSupport", path: "Tests/BulkheadTestSupport"),
        .testTarget(name: "BulkheadBootTests", dependencies: ["BulkheadBoot", "BulkheadTestSupport"]),
        .testTarget(name: "BulkheadSystemTests", dependencies: ["BulkheadSystem", "BulkheadCore"]),
        .testTarget(name: "BulkheadProtocolTests", dependencies: ["BulkheadProtocol"]),
        .testTarget(name: "BulkheadChannelTests", dependencies: ["BulkheadChannel", "BulkheadProtocol", "BulkheadSystem"]),
        .testTarget(name: "BulkheadVirtioTests", dependencies: ["BulkheadVirtio"]),
        // The RTL8139 model over a memfd as guest memory and a socket pair as the tap, and the
        // rtl8139 domain process, killed and restarted mid-stream.
        .testTarget(
            name: "BulkheadEmulatedTests",
            dependencies: ["BulkheadEmulated", "BulkheadVirtio", "BulkheadSystem", "BulkheadChannel", "BulkheadProtocol",
                           "BulkheadSandbox", "BulkheadTestSupport", "CBulkheadLinux"]
        ),
        .testTarget(name: "BulkheadCoreTests", dependencies: ["BulkheadCore", "BulkheadProtocol", "BulkheadSandbox"]),
        .testTarget(name: "BulkheadSandboxTests", dependencies: ["BulkheadSandbox", "BulkheadSystem", "BulkheadTestSupport"]),
        // Boots real guests under real KVM by running the `bulkhead` executable.
        .testTarget(name: "BulkheadIntegrationTests", dependencies: ["BulkheadTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
