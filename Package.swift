// swift-tools-version: 6.0
import PackageDescription

// Dependencies point one way: executables → core → {kvm, boot} → system → C shim.

// Our modules do without the two modules Swift imports implicitly, _Concurrency and
// _StringProcessing (Regex): a statically linked release binary then carries neither (about
// 0.5 MiB of RSS per process; orchestration/bench/RESULTS.md). String.contains(String) and
// friends are _StringProcessing's: split on a Character instead.
let withoutImplicitImports: [SwiftSetting] = [
    .unsafeFlags([
        "-Xfrontend", "-disable-implicit-concurrency-module-import",
        "-Xfrontend", "-disable-implicit-string-processing-module-import",
    ]),
]

// Release executables are static PIEs: the Swift runtime, glibc and libstdc++ linked in (only
// what is used: the pages a process touches are its RSS), position-independent so ASLR still
// applies, relocations packed (RELR, which GNU ld has and gold lacks). Against the shared-library
// build this takes a domain from 8.9 to 3.9 MiB RSS and the core from 14.2 to 7.9 MiB, and
// saves the dynamic loading at launch (orchestration/bench/RESULTS.md). The linker is GNU ld
// through orchestration/scripts/static-pie-ld, which drops SwiftPM's `-rpath=$ORIGIN` (a static
// PIE with a RUNPATH crashes in glibc's start-up code). Nothing is loaded at run time: glibc's
// link-time warnings about dlopen and getpw*/getgr* (NSS) name code that the Swift runtime and
// FoundationEssentials reach only on request (a prespecialization library, home directory
// lookups), never in a sandboxed domain. Debug builds (the tests) stay dynamic.
let staticRelease: [LinkerSetting] = [
    .unsafeFlags([
        "-static-executable", "-Xclang-linker", "-static-pie",
        "-Xclang-linker", "--ld-path=\(Context.packageDirectory)/orchestration/scripts/static-pie-ld",
        "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
    ], .when(configuration: .release)),
]

// FoundationEssentials' own static dependencies, for the core (swift-argument-parser links
// FoundationEssentials). `swift build --static-swift-stdlib` would name them itself; this way a
// plain `swift build -c release` links too.
let staticFoundation: [LinkerSetting] = [
    .unsafeFlags([
        "-Xlinker", "--start-group", "-lFoundationEssentials", "-l_FoundationCShims", "-l_FoundationCollections",
        "-Xlinker", "--end-group",
    ], .when(configuration: .release)),
]

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
        .target(name: "BulkheadSystem", dependencies: ["CBulkheadLinux"], swiftSettings: withoutImplicitImports),
        // KVM: the VM, vCPUs, their exits. Knows nothing about devices.
        .target(name: "BulkheadKVM", dependencies: ["BulkheadSystem", "CBulkheadLinux"], swiftSettings: withoutImplicitImports),
        // Generated protobuf-c code for proto/bulkhead.proto (regenerate with
        // orchestration/scripts/gen-proto.sh; never edited by hand).
        .target(
            name: "CBulkheadProto", path: "proto", exclude: ["bulkhead.proto", "README.md"],
            sources: ["c"], publicHeadersPath: "c/include",
            linkerSettings: [.linkedLibrary("protobuf-c")]
        ),
        // The core<->domain messages as Swift values, encoded with protobuf-c. No Foundation.
        .target(name: "BulkheadProtocol", dependencies: ["CBulkheadProto"], swiftSettings: withoutImplicitImports),
        // The control channel: shared-memory region, SPSC byte rings, doorbells, recovery area.
        .target(name: "BulkheadChannel", dependencies: ["BulkheadSystem", "BulkheadProtocol", "CBulkheadLinux"], swiftSettings: withoutImplicitImports),
        // Split virtqueues over guest memory (descriptor chains, used ring, EVENT_IDX,
        // in-flight recovery), the virtio-blk request engine and the virtio-net frame engine. No Foundation.
        .target(name: "BulkheadVirtio", dependencies: ["BulkheadSystem", "CBulkheadLinux"], swiftSettings: withoutImplicitImports),
        // Emulated (non-virtio) devices a stock guest drives with its in-tree driver: the RTL8139
        // register model, its transmit and receive ring in guest memory, its restartable state.
        .target(name: "BulkheadEmulated", dependencies: ["BulkheadVirtio", "BulkheadSystem", "CBulkheadLinux"],
                swiftSettings: withoutImplicitImports),
        // C for the sandbox: spawning a domain into new namespaces with its fds, libseccomp.
        .target(name: "CBulkheadSandbox", linkerSettings: [.linkedLibrary("seccomp")]),
        // Entering a domain's sandbox: namespaces, empty root, uid, capabilities, rlimits, seccomp.
        .target(name: "BulkheadSandbox", dependencies: ["BulkheadSystem", "CBulkheadSandbox"], swiftSettings: withoutImplicitImports),
        // Every driver domain: `bulkhead-domain <kind> <id>`; one folder per kind under domains/.
        .executableTarget(
            name: "bulkhead-domain",
            dependencies: ["BulkheadSystem", "BulkheadChannel", "BulkheadProtocol", "BulkheadVirtio", "BulkheadEmulated", "BulkheadSandbox", "CBulkheadLinux"],
            path: "domains", exclude: ["README.md", "blk/README.md", "net/README.md", "probe/README.md", "rtl8139/README.md"],
            swiftSettings: withoutImplicitImports,
            linkerSettings: staticRelease
        ),
        // Boot protocols: ELF/PVH loader, hvm_start_info, memory map, ACPI tables. Pure logic.
        .target(name: "BulkheadBoot", dependencies: [], swiftSettings: withoutImplicitImports),
        // The core: guest memory, platform devices, the I/O bus, the vCPU runner.
        .target(
            name: "BulkheadCore",
            dependencies: [
                "BulkheadSystem", "BulkheadKVM", "BulkheadBoot", "CBulkheadLinux",
                "BulkheadChannel", "BulkheadProtocol", "BulkheadVirtio", "BulkheadSandbox",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: withoutImplicitImports
        ),
        // The operator API on a unix socket (JSON over HTTP/1.1, Prometheus text) and its client.
        .target(
            name: "BulkheadAPI",
            dependencies: ["BulkheadCore", "BulkheadProtocol", "BulkheadSystem", .product(name: "Logging", package: "swift-log")],
            swiftSettings: withoutImplicitImports
        ),
        .executableTarget(
            name: "bulkhead",
            dependencies: [
                "BulkheadCore", "BulkheadBoot", "BulkheadProtocol", "BulkheadAPI", "BulkheadSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: withoutImplicitImports,
            linkerSettings: staticRelease + staticFoundation
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
