import BulkheadProtocol

/// Where everything lives in a control region. All offsets are bytes from the start of the
/// region; all integers are little-endian (host order: the core and its domains share a host).
///
/// ```
/// offset    size      field                         written by
/// 0x0000    8         magic "BLKHDCTL"              core (create)
/// 0x0008    4         layout version (1)            core (create)
/// 0x000C    4         ring capacity (65536)         core (create)
/// 0x0010    8         region size                   core (create)
/// 0x0018    8         generation                    core (resetRings)
/// 0x0040    4         domainState (DomainState)     domain
/// 0x0048    8         heartbeat                     domain (increments)
/// 0x0080    4         interruptStatus               domain ORs bits in, core clears on ack
/// 0x00C0    4         coreToDomainSleeping          domain (waits on doorbell fd 5)
/// 0x0100    4         domainToCoreSleeping          core (waits on doorbell fd 6)
/// 0x0140    8         core→domain producer index    core
/// 0x0180    8         core→domain consumer index    domain
/// 0x01C0    8         domain→core producer index    domain
/// 0x0200    8         domain→core consumer index    core
///  …        (rest of the 4 KiB header page reserved, zero)
/// 0x01000   64 KiB    core→domain ring data
/// 0x11000   64 KiB    domain→core ring data
/// 0x21000   8×16 KiB  recovery area: queue q at 0x21000 + q × 0x4000
/// 0x41000   64 KiB    device-state area (emulated devices), opaque
/// 0x51000             end (331,776 bytes)
/// ```
///
/// Shared fields are only accessed with atomics (`bh_atomic_*`). Each ring index and each
/// sleeping flag has a 64-byte cache line of its own (its writer differs from its neighbours');
/// `domainState` and `heartbeat` share one, both written by the domain. Ring indices are free-running byte counts (`UInt64`, wrapping); a frame
/// is a `UInt32` payload length followed by the payload, padded to 8 bytes, so a length never
/// straddles the end of the ring (a payload may).
public enum ControlRegionLayout {
    /// "BLKHDCTL" as the first eight bytes of the region.
    public static let magic: UInt64 = Array("BLKHDCTL".utf8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    public static let version: UInt32 = 1

    public static let headerSize = 4096
    public static let ringCapacity = 64 * 1024
    /// Largest payload in one frame: the largest encoded message.
    public static let maxFrameSize = ControlProtocol.maxMessageSize
    /// Frames are padded to this many bytes.
    public static let frameAlignment = 8

    public static let maxQueues = 8
    public static let queueRecoveryStride = 16 * 1024
    public static let deviceStateSize = 64 * 1024

    // Header fields.
    static let magicOffset = 0x000
    static let versionOffset = 0x008
    static let ringCapacityOffset = 0x00C
    static let regionSizeOffset = 0x010
    static let generationOffset = 0x018
    static let domainStateOffset = 0x040
    static let heartbeatOffset = 0x048
    static let interruptStatusOffset = 0x080
    static let coreToDomainSleepingOffset = 0x0C0
    static let domainToCoreSleepingOffset = 0x100
    static let coreToDomainProducerOffset = 0x140
    static let coreToDomainConsumerOffset = 0x180
    static let domainToCoreProducerOffset = 0x1C0
    static let domainToCoreConsumerOffset = 0x200

    // Areas.
    public static let coreToDomainRingOffset = headerSize
    public static let domainToCoreRingOffset = coreToDomainRingOffset + ringCapacity
    public static let recoveryOffset = domainToCoreRingOffset + ringCapacity
    public static let deviceStateOffset = recoveryOffset + maxQueues * queueRecoveryStride
    /// Bytes of the whole region (the memfd's size).
    public static let size = deviceStateOffset + deviceStateSize
}
