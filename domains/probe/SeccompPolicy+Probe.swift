import BulkheadSandbox

extension SeccompPolicy {
    /// The probe domain's allowlist: `common`, as every domain, plus what its reports and its
    /// attempts need. Every forbidden thing it tries is outside this list on purpose.
    static let probe = SeccompPolicy.common.adding([
        .init("uname", "the probe reports the hostname of its UTS namespace"),
        .init("getuid", "the probe reports its uid"),
        .init("eventfd2", "the fd-limit attempt creates eventfds until EMFILE"),
    ])
}
