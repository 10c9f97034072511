import BulkheadCore
import Synchronization
import Testing

/// A port device that records what reaches it and answers reads with `0xA0 + offset`.
private final class RecordingDevice: PortIODevice {
    let accesses = Mutex<[(offset: UInt16, size: Int, value: UInt32?)]>([])
    func read(offset: UInt16, size: Int) -> UInt32 {
        accesses.withLock { $0.append((offset, size, nil)) }
        return 0xa0 + UInt32(offset)
    }
    func write(offset: UInt16, size: Int, value: UInt32) { accesses.withLock { $0.append((offset, size, value)) } }
}

/// PCI configuration mechanism #1 and BAR routing, the way a guest's PCI scan and a driver
/// use them (the core's side of an emulated device).
@Suite("PCI bus: configuration space and I/O BAR routing")
struct PCITests {
    fileprivate let device = RecordingDevice()
    fileprivate let memoryDevice = RecordingDevice()
    let bus: PCIBus
    let window: PCIIOWindow
    let memoryWindow: PCIMemoryWindow

    init() {
        let function = PCIFunction(identity: .init(vendorID: 0x10ec, deviceID: 0x8139, classCode: 0x020000, revision: 0x10),
                                   ioSize: 256, ioBase: 0xc000, interruptLine: 16, device: device,
                                   memory: (size: 256, base: 0xe000_1000, device: memoryDevice))
        bus = PCIBus(functions: [function])
        window = PCIIOWindow(functions: [function])
        memoryWindow = PCIMemoryWindow(functions: [function])
    }

    func config(device: Int, register: UInt32, size: Int = 4) -> UInt32 {
        bus.write(offset: 0, size: 4, value: 0x8000_0000 | UInt32(device) << 11 | (register & 0xfc))
        return bus.read(offset: 4 + UInt16(register & 3), size: size)
    }

    func setConfig(device: Int, register: UInt32, value: UInt32, size: Int = 4) {
        bus.write(offset: 0, size: 4, value: 0x8000_0000 | UInt32(device) << 11 | (register & 0xfc))
        bus.write(offset: 4 + UInt16(register & 3), size: size, value: value)
    }

    @Test("a scan finds the host bridge and the NIC, and nothing else")
    func scan() {
        #expect(config(device: 0, register: 0) == 0x0008_1b36)
        #expect(config(device: 0, register: 8) >> 8 == 0x060000)
        #expect(config(device: 1, register: 0) == 0x8139_10ec)
        #expect(config(device: 1, register: 8) == 0x0200_0010)
        #expect(config(device: 1, register: 2, size: 2) == 0x8139)
        #expect(config(device: 1, register: 0x3d, size: 1) == 1) // INTA#
        #expect(config(device: 1, register: 0x3c, size: 1) == 16)
        for absent in 2..<32 { #expect(config(device: absent, register: 0) == 0xffff_ffff) }
        bus.write(offset: 0, size: 4, value: 0x8001_0800) // bus 1
        #expect(bus.read(offset: 4, size: 4) == 0xffff_ffff)
        bus.write(offset: 0, size: 4, value: 0x0000_0800) // enable bit clear
        #expect(bus.read(offset: 4, size: 2) == 0xffff)
    }

    @Test("BAR 0 is pre-assigned, sizes as 256 bytes of I/O, and moves")
    func barSizing() {
        #expect(config(device: 1, register: 0x10) == 0xc001)
        setConfig(device: 1, register: 0x10, value: 0xffff_ffff)
        #expect(config(device: 1, register: 0x10) == 0xff01)
        setConfig(device: 1, register: 0x10, value: 0xd0ff) // low bits are not address bits
        #expect(config(device: 1, register: 0x10) == 0xd001)
        #expect(config(device: 1, register: 0x18) == 0) // BAR 2: none
    }

    @Test("BAR 1 is 256 bytes of memory and decodes only with memory enabled")
    func memoryBAR() {
        #expect(config(device: 1, register: 0x14) == 0xe000_1000)
        setConfig(device: 1, register: 0x14, value: 0xffff_ffff)
        #expect(config(device: 1, register: 0x14) == 0xffff_ff00)
        setConfig(device: 1, register: 0x14, value: 0xe000_2000)
        let word = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 4)
        defer { word.deallocate() }
        memoryWindow.read(offset: 0x2010, data: word)
        #expect(word.load(as: UInt32.self) == 0xffff_ffff) // COMMAND.MEMORY still clear
        setConfig(device: 1, register: 4, value: 0x6, size: 2) // memory + bus master
        memoryWindow.read(offset: 0x2010, data: word)
        #expect(word.load(as: UInt32.self) == 0xb0)
        word.storeBytes(of: 0x1234_5678, as: UInt32.self)
        memoryWindow.write(offset: 0x2040, data: UnsafeRawBufferPointer(word))
        let seen = memoryDevice.accesses.withLock { $0 }
        #expect(seen.count == 2 && seen[1].offset == 0x40 && seen[1].value == 0x1234_5678)
        #expect(device.accesses.withLock { $0 }.isEmpty) // the I/O BAR saw none of it
    }

    @Test("the window decodes the BAR only with I/O enabled, at the BAR's current address")
    func routing() {
        #expect(window.read(offset: 0x10, size: 1) == 0xff) // COMMAND.IO still clear
        setConfig(device: 1, register: 4, value: 0x5, size: 2) // I/O + bus master
        #expect(config(device: 1, register: 4, size: 2) == 0x5)
        #expect(window.read(offset: 0x10, size: 4) == 0xb0)
        window.write(offset: 0x37, size: 1, value: 0x10)
        #expect(window.read(offset: 0x100, size: 2) == 0xffff) // past the 256-byte BAR
        setConfig(device: 1, register: 0x10, value: 0xc400)
        #expect(window.read(offset: 0x10, size: 4) == 0xffff_ffff)
        #expect(window.read(offset: 0x404, size: 2) == 0xa4)
        let seen = device.accesses.withLock { $0 }
        #expect(seen.count == 3)
        #expect(seen[1].offset == 0x37 && seen[1].size == 1 && seen[1].value == 0x10)
    }
}
