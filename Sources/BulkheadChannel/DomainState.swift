/// The life-cycle state a domain publishes in the control region header (`domainState`).
/// Written by the domain, read by the core (for status and for the watchdog: a domain is only
/// expected to heart-beat while `running`).
public enum DomainState: UInt32, Sendable, Equatable, CaseIterable {
    /// No domain has written yet (fresh region, or reset for a new generation).
    case absent = 0
    /// The domain process runs and is attaching.
    case starting = 1
    /// Attached and serving the device.
    case running = 2
    /// Shutting down on request.
    case stopping = 3
}
