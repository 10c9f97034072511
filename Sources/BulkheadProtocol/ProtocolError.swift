/// The one error type of `BulkheadProtocol`: what went wrong, and a sentence for the log.
///
/// A malformed message from a domain is a `ProtocolError`, never a trap; the core treats it
/// as a protocol fault of that domain and restarts it.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The bytes are not a valid `bulkhead.Envelope` (truncated, garbage).
        case malformed
        /// A valid envelope with no known message in it (empty, or from a newer peer).
        case unknownMessage
        /// A field holds a value outside its range (too many queues, unknown enum value, ...).
        case invalidField
        /// The peer speaks another `ControlProtocol.version`.
        case versionMismatch
        /// The caller's buffer cannot hold the encoded message.
        case bufferTooSmall
    }

    public let code: Code
    /// What was being done, and to what.
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }
}
