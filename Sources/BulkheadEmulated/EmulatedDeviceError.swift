/// The one error type of `BulkheadEmulated`: what went wrong and a sentence for humans.
public struct EmulatedDeviceError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable, Hashable {
        /// The device-state area is smaller than the device's layout, or misaligned.
        case stateAreaTooSmall
        /// The configuration from the core is unusable (e.g. a station address that is not 6 bytes).
        case invalidConfiguration
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "emulated device \(code): \(detail)" }
}
