import BulkheadSystem

/// The one error type of `BulkheadVirtio`: what went wrong (`code`), the descriptor chain it
/// concerns when there is one to complete (`head`), a sentence for humans, and the system
/// error underneath when a system call failed.
///
/// How a device answers each code:
/// - `malformedChain` (with a `head`): the chain was consumed and recorded in flight; complete
///   it (`pushUsed(head:length: 0)`) — with an error status for blk, as a drop for net.
/// - `headOutOfRange`, `headInFlight` (no `head`): the driver broke the spec; the available
///   entry was consumed and there is nothing the device may complete. Keep going.
/// - `availIndexJump`, `usedIndexCorrupt`, `recoveryBlockMismatch`: the queue is broken; stop
///   using it (the transport sets DEVICE_NEEDS_RESET). No state was changed.
/// - `invalidConfiguration`, `invalidGuestRAM`: refused at setup.
/// - `headNotInFlight`, `notRecovered`: a bug in the caller (double completion, no recover()).
/// - `io`: a disk system call failed (the blk engine turns this into `VIRTIO_BLK_S_IOERR`).
public struct VirtioError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable, Hashable {
        case invalidGuestRAM
        case invalidConfiguration
        case availIndexJump
        case headOutOfRange
        case headInFlight
        case malformedChain
        case headNotInFlight
        case usedIndexCorrupt
        case recoveryBlockMismatch
        case notRecovered
        case io
    }

    public let code: Code
    /// The head of the descriptor chain to complete with an error, when there is one.
    public let head: UInt16?
    public let detail: String
    public let underlyingError: SystemError?

    public init(_ code: Code, head: UInt16? = nil, _ detail: String, underlying: SystemError? = nil) {
        self.code = code
        self.head = head
        self.detail = detail
        self.underlyingError = underlying
    }

    public var description: String {
        var text = "virtio \(code): \(detail)"
        if let head { text += " (chain head \(head))" }
        if let underlyingError { text += ": \(underlyingError)" }
        return text
    }
}
