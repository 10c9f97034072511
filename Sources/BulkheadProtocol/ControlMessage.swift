/// One message of the core ↔ driver-domain control channel, as a Swift value.
///
/// The wire form is `bulkhead.Envelope` from `proto/bulkhead.proto`, encoded by protobuf-c
/// (`encode()`, `decode(_:)`). Which side sends which message is noted on each case; the
/// channel does not enforce it, the receiver does (an unexpected message is a protocol fault
/// of the domain). Addresses and features are the guest's raw `UInt64`s here: this module
/// depends on nothing but the generated C, so that domains stay small.
public enum ControlMessage: Sendable, Equatable {
    /// Domain → core, first message of every domain process.
    case hello(Hello)
    /// Core → domain: start (or resume after a restart) serving the device.
    case attach(Attach)
    /// Domain → core: `attach` done, the device is live.
    case attached(Attached)
    /// Core → domain: the guest reset the device; stop touching the queues.
    case reset
    /// Domain → core: reset done, nothing in flight.
    case resetDone
    /// Core → domain: exit cleanly.
    case shutdown
    /// Core → domain: control round-trip probe.
    case ping(Ping)
    /// Domain → core: answer to `ping`, echoing it.
    case pong(Pong)
    /// Domain → core: counters of this generation.
    case stats(Stats)
    /// Domain → core: something went wrong that the domain cannot fix.
    case faultReport(FaultReport)
    /// Domain → core: a log line.
    case log(Log)
    /// Core → domain: the guest read a register of an emulated device.
    case registerRead(RegisterRead)
    /// Domain → core: the value of a `registerRead`.
    case registerReadReply(RegisterReadReply)
    /// Core → domain: the guest wrote a register of an emulated device (posted).
    case registerWrite(RegisterWrite)
    /// Core → domain: test hook, misbehave on purpose.
    case injectFault(InjectFault)
}

extension ControlMessage {
    /// At most this many queues in an `Attach`; a decoded message with more is rejected.
    public static let maxQueues = 8

    /// Who a domain is and which protocol it speaks (`bulkhead.Hello`).
    public struct Hello: Sendable, Equatable {
        /// Must equal `ControlProtocol.version`; see `ControlProtocol.check(_:)`.
        public var protocolVersion: UInt32
        /// Device kind, e.g. `blk`.
        public var kind: String
        /// Device id from the VM spec, e.g. `blk0`.
        public var id: String
        /// The domain's pid as it sees itself.
        public var pid: Int32

        public init(protocolVersion: UInt32 = ControlProtocol.version, kind: String, id: String, pid: Int32) {
            self.protocolVersion = protocolVersion
            self.kind = kind
            self.id = id
            self.pid = pid
        }
    }

    /// One virtqueue as the guest configured it (`bulkhead.QueueConfig`).
    public struct QueueConfig: Sendable, Equatable {
        public var index: UInt32
        /// QueueNum: number of descriptors.
        public var size: UInt32
        /// Guest-physical address of the descriptor table.
        public var descriptorAddress: UInt64
        /// Guest-physical address of the available (driver) ring.
        public var availableAddress: UInt64
        /// Guest-physical address of the used (device) ring.
        public var usedAddress: UInt64
        /// QueueReady.
        public var ready: Bool

        public init(
            index: UInt32, size: UInt32, descriptorAddress: UInt64, availableAddress: UInt64,
            usedAddress: UInt64, ready: Bool
        ) {
            self.index = index
            self.size = size
            self.descriptorAddress = descriptorAddress
            self.availableAddress = availableAddress
            self.usedAddress = usedAddress
            self.ready = ready
        }
    }

    /// Everything a (re)started domain needs to serve its device (`bulkhead.Attach`).
    public struct Attach: Sendable, Equatable {
        public var protocolVersion: UInt32
        /// Restart count of the device: 0 for its first domain.
        public var generation: UInt64
        /// Features negotiated with the guest driver.
        public var deviceFeatures: UInt64
        /// At most `ControlMessage.maxQueues`.
        public var queues: [QueueConfig]
        /// Bytes of the guest memory memfd.
        public var guestMemorySize: UInt64
        /// VIRTIO_F_EVENT_IDX negotiated.
        public var eventIndex: Bool
        /// The backend is read-only.
        public var readOnly: Bool
        /// virtio-blk capacity in 512-byte sectors.
        public var capacitySectors: UInt64
        /// Device-specific configuration, opaque to the channel.
        public var config: [UInt8]

        public init(
            protocolVersion: UInt32 = ControlProtocol.version, generation: UInt64, deviceFeatures: UInt64,
            queues: [QueueConfig], guestMemorySize: UInt64, eventIndex: Bool = false, readOnly: Bool = false,
            capacitySectors: UInt64 = 0, config: [UInt8] = []
        ) {
            self.protocolVersion = protocolVersion
            self.generation = generation
            self.deviceFeatures = deviceFeatures
            self.queues = queues
            self.guestMemorySize = guestMemorySize
            self.eventIndex = eventIndex
            self.readOnly = readOnly
            self.capacitySectors = capacitySectors
            self.config = config
        }
    }

    /// `bulkhead.Attached`.
    public struct Attached: Sendable, Equatable {
        /// In-flight requests found in the recovery area and replayed.
        public var replayed: UInt32
        public init(replayed: UInt32) { self.replayed = replayed }
    }

    /// `bulkhead.Ping` and `bulkhead.Pong` (a pong echoes its ping).
    public struct Ping: Sendable, Equatable {
        public var sequence: UInt64
        /// The sender's `CLOCK_MONOTONIC` nanoseconds.
        public var sentNanoseconds: UInt64
        public init(sequence: UInt64, sentNanoseconds: UInt64) {
            self.sequence = sequence
            self.sentNanoseconds = sentNanoseconds
        }
    }

    /// `bulkhead.Pong`: the same fields as the `Ping` it answers.
    public typealias Pong = Ping

    /// Counters of one domain generation (`bulkhead.Stats`).
    public struct Stats: Sendable, Equatable {
        public var requests: UInt64
        public var readBytes: UInt64
        public var writtenBytes: UInt64
        public var errors: UInt64
        public var inFlight: UInt64
        public var replayed: UInt64
        public init(
            requests: UInt64 = 0, readBytes: UInt64 = 0, writtenBytes: UInt64 = 0, errors: UInt64 = 0,
            inFlight: UInt64 = 0, replayed: UInt64 = 0
        ) {
            self.requests = requests
            self.readBytes = readBytes
            self.writtenBytes = writtenBytes
            self.errors = errors
            self.inFlight = inFlight
            self.replayed = replayed
        }
    }

    /// `bulkhead.FaultReport`.
    public struct FaultReport: Sendable, Equatable {
        /// Short machine-readable kind, e.g. `descriptor`, `backend-io`.
        public var kind: String
        public var detail: String
        public init(kind: String, detail: String) {
            self.kind = kind
            self.detail = detail
        }
    }

    /// A log line from a domain (`bulkhead.Log`); the core logs it under the domain's name.
    public struct Log: Sendable, Equatable {
        /// The swift-log levels, in the same order.
        public enum Level: UInt32, Sendable, Equatable, CaseIterable {
            case trace = 0, debug, info, notice, warning, error, critical
        }
        public var level: Level
        public var message: String
        public init(level: Level, message: String) {
            self.level = level
            self.message = message
        }
    }

    /// `bulkhead.RegisterRead`.
    public struct RegisterRead: Sendable, Equatable {
        public var bar: UInt32
        public var offset: UInt64
        /// Access size in bytes: 1, 2, 4 or 8.
        public var size: UInt32
        /// Echoed in the reply.
        public var sequence: UInt64
        public init(bar: UInt32, offset: UInt64, size: UInt32, sequence: UInt64) {
            self.bar = bar
            self.offset = offset
            self.size = size
            self.sequence = sequence
        }
    }

    /// `bulkhead.RegisterReadReply`.
    public struct RegisterReadReply: Sendable, Equatable {
        public var sequence: UInt64
        public var value: UInt64
        public init(sequence: UInt64, value: UInt64) {
            self.sequence = sequence
            self.value = value
        }
    }

    /// `bulkhead.RegisterWrite`.
    public struct RegisterWrite: Sendable, Equatable {
        public var bar: UInt32
        public var offset: UInt64
        public var size: UInt32
        public var value: UInt64
        /// Echoed in the `RegisterReadReply` that acknowledges the write.
        public var sequence: UInt64
        public init(bar: UInt32, offset: UInt64, size: UInt32, value: UInt64, sequence: UInt64) {
            self.bar = bar
            self.offset = offset
            self.size = size
            self.value = value
            self.sequence = sequence
        }
    }

    /// A test hook (`bulkhead.InjectFault`).
    public struct InjectFault: Sendable, Equatable {
        public enum Kind: UInt32, Sendable, Equatable, CaseIterable {
            /// `abort()`.
            case crash = 0
            /// Dereference a bad pointer.
            case segv = 1
            /// Stop making progress (no heartbeat) forever.
            case hang = 2
            /// Add `argument` microseconds to each request.
            case slow = 3
            /// Write a garbage frame into the domain → core ring.
            case corruptMessage = 4
            /// Make a syscall outside the seccomp allowlist.
            case seccomp = 5
            /// `exit(argument)`.
            case exit = 6
        }
        public var kind: Kind
        public var argument: UInt64
        public init(kind: Kind, argument: UInt64 = 0) {
            self.kind = kind
            self.argument = argument
        }
    }
}
