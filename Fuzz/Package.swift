// swift-tools-version: 6.0
import PackageDescription

// libFuzzer targets for Bulkhead's parsers of hostile input, in a package of their own so that
// the main build (and CI's `swift build`) never sees `-sanitize=fuzzer`. Build and run them with
// `orchestration/scripts/fuzz.sh`; each executable is one fuzzer (`LLVMFuzzerTestOneInput`).
//
// The targets must be built with `-Xswiftc -sanitize=fuzzer`. SwiftPM renames an executable's
// entry point, so libFuzzer's own `main` is never used: each target's top-level code hands
// `LLVMFuzzerTestOneInput` to `LLVMFuzzerRunDriver` (declared in CLibFuzzer), with the usual
// libFuzzer command line.

let package = Package(
    name: "BulkheadFuzz",
    dependencies: [.package(name: "Bulkhead", path: "..")],
    targets: [
        .target(name: "CLibFuzzer"),
        // (a, b) ControlMessage.decode, the version checks, the re-encoding round trip.
        .executableTarget(
            name: "FuzzControlMessage",
            dependencies: ["CLibFuzzer", .product(name: "BulkheadProtocol", package: "Bulkhead")]),
        // (a) ControlChannel receive over a region whose ring bytes and indices are the input.
        .executableTarget(
            name: "FuzzControlChannel",
            dependencies: [
                "CLibFuzzer",
                .product(name: "BulkheadChannel", package: "Bulkhead"),
                .product(name: "BulkheadProtocol", package: "Bulkhead"),
                .product(name: "BulkheadSystem", package: "Bulkhead"),
            ]),
        // (c) SplitVirtqueue (recover, popAvailable, pushUsed) and BlockRequestEngine over a
        // guest RAM and a recovery block built from the input.
        .executableTarget(
            name: "FuzzVirtqueue",
            dependencies: [
                "CLibFuzzer",
                .product(name: "BulkheadVirtio", package: "Bulkhead"),
                .product(name: "BulkheadSystem", package: "Bulkhead"),
            ]),
        // (d) ELFImage.parse and the PVHBoot plan.
        .executableTarget(
            name: "FuzzELFLoader",
            dependencies: ["CLibFuzzer", .product(name: "BulkheadBoot", package: "Bulkhead")]),
        // (e) The VM spec: Sources/bulkhead/VMSpec.swift itself (a symlink: the executable
        // target cannot be imported), decoded with BulkheadAPI's JSON.decode, then the same
        // parsing of its fields that `bulkhead run` does.
        .executableTarget(
            name: "FuzzVMSpec",
            dependencies: [
                "CLibFuzzer",
                .product(name: "BulkheadAPI", package: "Bulkhead"),
                .product(name: "BulkheadBoot", package: "Bulkhead"),
                .product(name: "BulkheadCore", package: "Bulkhead"),
                .product(name: "BulkheadSystem", package: "Bulkhead"),
            ]),
        // The operator API's own parsers: HTTPRequest.parse and JSON.parse.
        .executableTarget(
            name: "FuzzAPIParsers",
            dependencies: ["CLibFuzzer", .product(name: "BulkheadAPI", package: "Bulkhead")]),
        // The supervisor's handling of what a domain sends (DomainSupervisor.State), frames
        // through a real control channel, in every lifecycle state; the status it renders as
        // JSON and Prometheus text.
        .executableTarget(
            name: "FuzzSupervisorMessages",
            dependencies: [
                "CLibFuzzer",
                .product(name: "BulkheadAPI", package: "Bulkhead"),
                .product(name: "BulkheadChannel", package: "Bulkhead"),
                .product(name: "BulkheadCore", package: "Bulkhead"),
                .product(name: "BulkheadProtocol", package: "Bulkhead"),
                .product(name: "BulkheadSandbox", package: "Bulkhead"),
                .product(name: "BulkheadSystem", package: "Bulkhead"),
            ]),
        // The net domain's frame path (NetFrameEngine) over a memfd guest RAM and a socketpair tap.
        .executableTarget(
            name: "FuzzNetFrames",
            dependencies: [
                "CLibFuzzer",
                .product(name: "BulkheadVirtio", package: "Bulkhead"),
                .product(name: "BulkheadSystem", package: "Bulkhead"),
            ]),
        // Writes the seed corpora under corpus/ (fuzz.sh runs it when a corpus is missing;
        // run it by hand after changing a message or a layout). ELFBuilder is the tests' own
        // (a symlink into Tests/BulkheadTestSupport).
        .executableTarget(
            name: "FuzzSeeds",
            dependencies: [.product(name: "BulkheadProtocol", package: "Bulkhead")]),
    ],
    swiftLanguageModes: [.v6]
)
