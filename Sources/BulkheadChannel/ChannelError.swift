/// The one error type of `BulkheadChannel`: what went wrong, a sentence naming what was being
/// done, and the underlying error (`SystemError`, `ProtocolError`) when there is one.
///
/// Everything read from the shared region is hostile input: a corrupt index, length or message
/// is a `ChannelError`, never a trap. The core treats `corruptFrame` and `malformedMessage` as a
/// protocol fault of the domain and restarts it.
public struct ChannelError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// A system call failed (`underlying` is the `SystemError`).
        case system
        /// The region does not start with the control region magic.
        case badMagic
        /// The region has another layout version or ring geometry.
        case unsupportedLayout
        /// The memfd is smaller than `ControlRegionLayout.size`.
        case regionTooSmall
        /// A ring index or frame length read from the shared region is impossible.
        case corruptFrame
        /// A frame decoded, but not to a valid message (`underlying` is the `ProtocolError`).
        case malformedMessage
        /// The message to send is larger than `ControlRegionLayout.maxFrameSize`.
        case frameTooLarge
        /// The ring has no room for the frame (the peer is not reading).
        case ringFull
    }

    public let code: Code
    /// What was being done, and to what.
    public let detail: String
    public let underlying: (any Error)?

    public init(_ code: Code, _ detail: String, underlying: (any Error)? = nil) {
        self.code = code
        self.detail = detail
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return detail }
        return "\(detail): \(underlying)"
    }
}
