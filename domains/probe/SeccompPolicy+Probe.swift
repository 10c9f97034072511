import BulkheadSandbox

extension SeccompPolicy {
    /// The probe domain's allowlist: `common`, as every domain, plus what its reports and its
    /// attempts need. Every forbidden thing it tries is outside this list on purpose.
    static let probe = SeccompPolicy.common.adding([
        .init("write", "the report line on fd 3 (SandboxProbe.report)", when: [.fileDescriptor(SandboxProbe.reportFD)]),
        .init("read", "idle: reads fd 4 until end of file", when: [.fileDescriptor(SandboxProbe.holdFD)]),
        .init("uname", "idle reports the hostname of its UTS namespace"),
        .init("getuid", "idle reports its uid"),
        .init("eventfd2", "fd-limit creates eventfds until EMFILE"),
    ])
}
