import BulkheadBoot
import BulkheadKVM
import BulkheadSystem

/// The one error type of the core: what the VMM was doing, to what, and why it failed.
public struct CoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable {
        case invalidConfiguration(String)
        case kernelUnreadable(path: String)
        case boot
        case kvm
        case system
        case guestMemory(String)
        case domainSetup(String)
    }

    public let code: Code
    public let underlyingError: (any Error & Sendable)?

    public init(_ code: Code, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.underlyingError = underlying
    }

    public var description: String {
        switch code {
        case .invalidConfiguration(let text): return text
        case .kernelUnreadable(let path):
            let why = (underlyingError as? SystemError).map { "\($0.errno)" } ?? "unreadable"
            return "cannot read kernel \(path): \(why)"
        case .boot, .kvm, .system:
            return underlyingError.map { "\($0)" } ?? "failed"
        case .guestMemory(let text), .domainSetup(let text): return text
        }
    }
}
