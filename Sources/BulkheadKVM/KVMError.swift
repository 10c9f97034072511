import BulkheadSystem

/// The one error type of the KVM module.
public struct KVMError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// `/dev/kvm` is absent or cannot be opened.
        case unavailable
        /// `KVM_GET_API_VERSION` returned something other than 12.
        case unsupportedAPIVersion(Int32)
        /// The host kernel lacks an extension the VMM needs.
        case missingCapability(String)
        /// An ioctl or other call failed.
        case systemCall
    }

    public let code: Code
    public let underlyingError: SystemError?

    public init(_ code: Code, underlying: SystemError? = nil) {
        self.code = code
        self.underlyingError = underlying
    }

    public var description: String {
        switch code {
        case .unavailable:
            return "cannot use /dev/kvm: \(underlyingError.map { "\($0.errno)" } ?? "not present")"
                + " (is KVM enabled, and may this user open /dev/kvm?)"
        case .unsupportedAPIVersion(let version):
            return "/dev/kvm reports API version \(version); Bulkhead needs 12"
        case .missingCapability(let name):
            return "the host KVM lacks \(name), which Bulkhead needs"
        case .systemCall:
            return underlyingError.map { "\($0)" } ?? "KVM call failed"
        }
    }
}

extension KVMError {
    @discardableResult
    static func wrap<T>(_ body: () throws(SystemError) -> T) throws(KVMError) -> T {
        do { return try body() } catch { throw KVMError(.systemCall, underlying: error) }
    }
}
