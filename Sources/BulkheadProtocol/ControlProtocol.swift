/// The version of the control protocol, and the check both sides make of the other's.
public enum ControlProtocol {
    /// Bumped on any incompatible change of `proto/bulkhead.proto` (fields are otherwise only
    /// added, never renumbered). The core and its domains are built from the same tree.
    public static let version: UInt32 = 1

    /// Largest encoded message either side sends or accepts, in bytes (the channel's frame limit).
    public static let maxMessageSize = 16 * 1024

    /// Checks a domain's `Hello`: throws `versionMismatch` naming the domain and both versions.
    public static func check(_ hello: ControlMessage.Hello) throws(ProtocolError) {
        guard hello.protocolVersion == version else {
            throw ProtocolError(
                .versionMismatch,
                "domain \(hello.id) (kind \(hello.kind), pid \(hello.pid)) speaks control protocol version "
                    + "\(hello.protocolVersion), this core speaks version \(version): build the core and "
                    + "bulkhead-domain from the same tree"
            )
        }
    }

    /// Checks the core's `Attach` on the domain side.
    public static func check(_ attach: ControlMessage.Attach) throws(ProtocolError) {
        guard attach.protocolVersion == version else {
            throw ProtocolError(
                .versionMismatch,
                "core speaks control protocol version \(attach.protocolVersion), this domain speaks version "
                    + "\(version): build the core and bulkhead-domain from the same tree"
            )
        }
    }
}
