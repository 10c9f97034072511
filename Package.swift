// swift-tools-version: 6.0
import PackageDescription

// Dependencies point one way: executables → core → {kvm, boot} → system → C shim.
let package = Package(
    name: "Bulkhead",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "bulkhead", targets: ["bulkhead"]),
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
        // Boot protocols: ELF/PVH loader, hvm_start_info, memory map, ACPI tables. Pure logic.
        .target(name: "BulkheadBoot", dependencies: []),
        // The core: guest memory, platform devices, the I/O bus, the vCPU runner.
        .target(
            name: "BulkheadCore",
            dependencies: [
                "BulkheadSystem", "BulkheadKVM", "BulkheadBoot", "CBulkheadLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "bulkhead",
            dependencies: [
                "BulkheadCore", "BulkheadBoot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Shared by the test targets: an ELF builder, tiny PVH kernels, a subprocess runner.
        .target(name: "BulkheadTestSupport", path: "Tests/BulkheadTestSupport"),
        .testTarget(name: "BulkheadBootTests", dependencies: ["BulkheadBoot", "BulkheadTestSupport"]),
        .testTarget(name: "BulkheadSystemTests", dependencies: ["BulkheadSystem", "BulkheadCore"]),
        // Boots real guests under real KVM by running the `bulkhead` executable.
        .testTarget(name: "BulkheadIntegrationTests", dependencies: ["BulkheadTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
