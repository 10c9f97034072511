import BulkheadChannel
import BulkheadKVM
import BulkheadSystem
import CBulkheadLinux
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// virtio-net as the core sees it: its identity, features and configuration space. The frames
/// themselves are moved by the `net` driver domain, between the guest's queues and the tap.
enum VirtioNet {
    static let deviceID: UInt32 = 1
    static let queueMaxSize: UInt16 = 256
    /// Queue 0 receives (device → driver), queue 1 transmits.
    static let queueCount = 2

    // Feature bits (virtio 1.2, 5.1.3 and 6). No checksum or segmentation offloads, no
    // mergeable receive buffers, no control queue, one queue pair.
    static let featureMAC: UInt64 = 1 << 5
    static let featureStatus: UInt64 = 1 << 16
    static let featureEventIndex: UInt64 = 1 << 29
    static let featureVersion1: UInt64 = 1 << 32

    /// `VIRTIO_NET_S_LINK_UP` in the config space's status field.
    static let statusLinkUp: UInt16 = 1
    /// `VIRTIO_MMIO_INT_CONFIG`: the configuration space changed.
    static let interruptConfigurationChange: UInt32 = 2

    /// A locally administered unicast MAC derived from the device index: 52:54:00:b4:00:NN.
    static func defaultMAC(index: Int) -> [UInt8] {
        [0x52, 0x54, 0x00, 0xb4, UInt8(truncatingIfNeeded: index >> 8), UInt8(truncatingIfNeeded: index)]
    }

    static func description(mac: [UInt8]) -> VirtioDeviceDescription {
        VirtioDeviceDescription(deviceID: deviceID, features: featureVersion1 | featureEventIndex | featureMAC | featureStatus,
                                queueCount: queueCount, queueMaxSize: queueMaxSize, config: config(mac: mac, linkUp: true))
    }

    /// struct virtio_net_config: mac (u8[6] @0), status (u16 @6). No max_virtqueue_pairs
    /// (no VIRTIO_NET_F_MQ), no mtu.
    static func config(mac: [UInt8], linkUp: Bool) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 8)
        for (i, byte) in mac.prefix(6).enumerated() { bytes[i] = byte }
        let status = linkUp ? statusLinkUp : 0
        bytes[6] = UInt8(truncatingIfNeeded: status)
        bytes[7] = UInt8(truncatingIfNeeded: status >> 8)
        return bytes
    }
}

extension Machine {
    /// Opens and attaches the tap, creates the irqfd and one ioeventfd per queue, the
    /// supervisor of the `net` domain and its transport.
    static func makeNetDevice(
        index: Int, net: NetConfiguration, base: GuestAddress, irq: UInt32, vm: VirtualMachine, memory: GuestMemory,
        configuration: MachineConfiguration, logger: Logger, events: DomainEventLog
    ) throws(CoreError) -> (any MMIODevice, DomainSupervisor) {
        let id = "net\(index)"
        let tap = try openTap(net.tap)
        let mac = net.mac ?? VirtioNet.defaultMAC(index: index)
        let description = VirtioNet.description(mac: mac)
        let (irqfd, kicks) = try makeNotifiers(queueCount: description.queueCount, base: base, irq: irq, vm: vm)

        let spec = DomainSupervisor.Specification(
            kind: "net", id: id, executable: configuration.domainExecutable ?? defaultDomainExecutable(),
            queueCount: description.queueCount, readOnly: false, capacitySectors: 0,
            config: description.config, policy: net.restartPolicy ?? configuration.restartPolicy,
            watchdogMilliseconds: net.watchdogMilliseconds ?? configuration.watchdogMilliseconds)
        let link = LinkDownLatch()
        let supervisor = try DomainSupervisor(spec: spec, guestMemory: memory, backend: tap, irqfd: irqfd, kicks: kicks,
                                              logger: logger, events: events, onFailure: { link.fire() })
        let transport = NetTransport(VirtioMMIOTransport(name: id, description: description, backend: supervisor), mac: mac)
        link.transport = transport
        link.supervisor = supervisor
        return (transport, supervisor)
    }

    /// `/dev/net/tun` attached to the tap `name` (created when it does not exist):
    /// `IFF_TAP | IFF_NO_PI` (plain Ethernet frames, no packet-information prefix, no
    /// `IFF_VNET_HDR`: the domain strips and writes the virtio-net header itself), non-blocking.
    /// The core keeps it for the life of the VM, so a restarted domain gets the same fd and the
    /// host side of the tap never sees the link flap.
    static func openTap(_ name: String) throws(CoreError) -> FileDescriptor {
        let tap: FileDescriptor
        do {
            tap = try FileDescriptor.open("/dev/net/tun", flags: O_RDWR | O_NONBLOCK)
        } catch {
            throw CoreError(.invalidConfiguration("--net tap=\(name): cannot open /dev/net/tun: \(error.errno)"), underlying: error)
        }
        guard name.utf8.count < Int(BH_IFNAMSIZ) else {
            throw CoreError(.invalidConfiguration("--net tap=\(name): the name is longer than \(BH_IFNAMSIZ - 1) characters"))
        }
        let fd = tap.rawValue
        do {
            try systemCall32("ioctl(TUNSETIFF \(name))") { bh_tun_set_iff(fd, name, BH_IFF_TAP | BH_IFF_NO_PI) }
        } catch {
            throw CoreError(.invalidConfiguration(
                "--net tap=\(name): cannot attach to the tap (TUNSETIFF): \(error.errno) (busy, not a tap, or no CAP_NET_ADMIN?)"),
                underlying: error)
        }
        return tap
    }
}

/// The virtio-mmio register file of a NIC: the shared transport, with a config space whose
/// link status can change (link down once the device failed). Config-space reads and
/// ConfigGeneration are answered here; everything else goes to the transport.
final class NetTransport: MMIODevice {
    let transport: VirtioMMIOTransport
    private struct State {
        var config: [UInt8]
        var generation: UInt32 = 0
    }
    private let state: Mutex<State>
    private let mac: [UInt8]

    init(_ transport: VirtioMMIOTransport, mac: [UInt8]) {
        self.transport = transport
        self.mac = mac
        state = Mutex(State(config: VirtioNet.config(mac: mac, linkUp: true)))
    }

    /// Sets the link status the guest reads (VIRTIO_NET_S_LINK_UP) and bumps ConfigGeneration;
    /// the caller raises the configuration-change interrupt.
    func setLink(up: Bool) {
        state.withLock { s in
            s.config = VirtioNet.config(mac: mac, linkUp: up)
            s.generation &+= 1
        }
    }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        if offset >= 0x100 {
            let start = Int(offset - 0x100)
            state.withLock { s in
                for i in 0..<data.count { data[i] = start + i < s.config.count ? s.config[start + i] : 0 }
            }
            return
        }
        transport.read(offset: offset, data: data)
        if offset == 0x0fc, data.count == 4 {
            let generation = UInt32(truncatingIfNeeded: UnsafeRawBufferPointer(data).littleEndianValue) &+ state.withLock { $0.generation }
            data.storeLittleEndian(UInt64(generation))
        }
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        transport.write(offset: offset, data: data)
    }
}

/// Takes a NIC's link down when its domain is past its restart budget: clears
/// VIRTIO_NET_S_LINK_UP and raises a configuration-change interrupt. The guest keeps running;
/// its frames go nowhere, as on a NIC whose cable was pulled.
final class LinkDownLatch: @unchecked Sendable {
    weak var transport: NetTransport?
    weak var supervisor: DomainSupervisor?

    func fire() {
        guard let transport, let supervisor else { return }
        transport.setLink(up: false)
        _ = supervisor.region.raiseInterrupt(VirtioNet.interruptConfigurationChange)
        signalEventfd(supervisor.irqfd.rawValue)
    }
}
