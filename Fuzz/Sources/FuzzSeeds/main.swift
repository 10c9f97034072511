import BulkheadProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Writes a few valid inputs per fuzz target under `<directory>/<target>/` (default `corpus`):
/// the fuzzers start from the shapes the real code sees and mutate from there.
/// Usage: FuzzSeeds [DIRECTORY]
let root = CommandLine.arguments.dropFirst().first ?? "corpus"

func write(_ target: String, _ name: String, _ bytes: [UInt8]) {
    let directory = "\(root)/\(target)"
    mkdir(root, 0o755)
    mkdir(directory, 0o755)
    let path = "\(directory)/\(name)"
    guard let file = fopen(path, "wb") else { fatalError("cannot write \(path)") }
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    fclose(file)
}

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

// MARK: control messages (FuzzControlMessage: one encoded message; FuzzControlChannel: frames)

let queue = ControlMessage.QueueConfig(
    index: 0, size: 256, descriptorAddress: 0x10_0000, availableAddress: 0x10_1000, usedAddress: 0x10_2000, ready: true)
let messages: [(String, ControlMessage)] = [
    ("hello", .hello(.init(kind: "blk", id: "blk0", pid: 1))),
    ("hello-old-version", .hello(.init(protocolVersion: 0, kind: "net", id: "net0", pid: 7))),
    ("attach", .attach(.init(generation: 3, deviceFeatures: 1 << 32 | 1 << 29 | 1 << 28, queues: [queue, queue],
                             guestMemorySize: 256 << 20, eventIndex: true, readOnly: false, capacitySectors: 8192,
                             config: [0, 0x20, 0, 0, 0, 0, 0, 0]))),
    ("attached", .attached(.init(replayed: 2))),
    ("reset", .reset), ("reset-done", .resetDone), ("shutdown", .shutdown),
    ("ping", .ping(.init(sequence: 1, sentNanoseconds: 123_456_789))),
    ("pong", .pong(.init(sequence: 1, sentNanoseconds: 123_456_789))),
    ("stats", .stats(.init(requests: 1939283, readBytes: 1 << 30, writtenBytes: 1 << 29, errors: 1, inFlight: 3, replayed: 2))),
    ("fault-report", .faultReport(.init(kind: "queue", detail: "avail.idx jumped"))),
    ("log", .log(.init(level: .warning, message: "recovered 2 requests"))),
    ("register-read", .registerRead(.init(bar: 0, offset: 0x70, size: 4, sequence: 9))),
    ("register-read-reply", .registerReadReply(.init(sequence: 9, value: 0xf))),
    ("register-write", .registerWrite(.init(bar: 0, offset: 0x70, size: 4, value: 0xf, sequence: 3))),
    ("inject-fault", .injectFault(.init(kind: .slow, argument: 500))),
]
for (name, message) in messages { write("FuzzControlMessage", name, message.encode()) }

/// One ring frame: u32 length, payload, padding to 8 bytes.
func frame(_ payload: [UInt8]) -> [UInt8] {
    var out = le(UInt32(payload.count)) + payload
    while out.count % 8 != 0 { out.append(0) }
    return out
}
/// FuzzControlChannel's header: warm-up frames, warm-up payload, producer delta.
func channelInput(warmups: UInt8, payload: UInt16, ring: [UInt8]) -> [UInt8] {
    [warmups] + le(payload) + le(UInt64(ring.count)) + ring
}
let stream = messages.filter { ["hello", "attached", "stats", "log", "pong", "fault-report"].contains($0.0) }
    .flatMap { frame($0.1.encode()) }
write("FuzzControlChannel", "domain-messages", channelInput(warmups: 0, payload: 1, ring: stream))
write("FuzzControlChannel", "after-warmup", channelInput(warmups: 3, payload: 15_000, ring: stream))
write("FuzzControlChannel", "wrapping", channelInput(warmups: 4, payload: 16_000, ring: stream))
write("FuzzControlChannel", "garbage-frame", channelInput(warmups: 1, payload: 100, ring: frame([0xff, 0xff, 0xff, 0x7f, 0x08])))

// MARK: virtqueues (FuzzVirtqueue: 16-byte header, then guest RAM from 0)

/// A guest RAM image with the queue at 0x0 (descriptors), 0x1000 (avail), 0x2000 (used) and
/// data from 0x4000, holding `requests` virtio-blk requests (header, data, status).
func virtqueueInput(size: UInt16, flags: UInt8, requests: [(type: UInt32, sector: UInt64, data: Int)],
                    indirect: Bool = false, loop: Bool = false) -> [UInt8] {
    var ram = [UInt8](repeating: 0, count: 0x8000)
    func put(_ bytes: [UInt8], _ at: Int) { ram.replaceSubrange(at..<(at + bytes.count), with: bytes) }
    func descriptor(table: Int, _ index: Int, _ address: Int, _ length: Int, _ flags: UInt16, _ next: Int) {
        put(le(UInt64(address)) + le(UInt32(length)) + le(flags) + le(UInt16(next)), table + 16 * index)
    }
    var slot = 0
    var data = 0x4000
    for (number, request) in requests.enumerated() {
        let header = data, buffer = data + 16, status = data + 16 + request.data
        put(le(request.type) + le(UInt32(0)) + le(request.sector), header)
        let dataFlags: UInt16 = request.type == 0 ? 2 : 0  // VIRTQ_DESC_F_WRITE for reads
        if indirect {
            let table = 0x3000 + 0x100 * number
            descriptor(table: table, 0, header, 16, 1, 1)
            descriptor(table: table, 1, buffer, request.data, dataFlags | 1, 2)
            descriptor(table: table, 2, status, 1, 2, 0)
            descriptor(table: 0, slot, table, 48, 4, 0)
            put(le(UInt16(slot)), 0x1000 + 4 + 2 * number)
            slot += 1
        } else {
            descriptor(table: 0, slot, header, 16, 1, slot + 1)
            descriptor(table: 0, slot + 1, buffer, request.data, dataFlags | 1, slot + 2)
            descriptor(table: 0, slot + 2, status, 1, 2, loop ? slot : 0)
            if loop { descriptor(table: 0, slot + 2, status, 1, 3, slot) }
            put(le(UInt16(slot)), 0x1000 + 4 + 2 * number)
            slot += 3
        }
        data += 16 + request.data + 16
    }
    put(le(UInt16(requests.count)), 0x1000 + 2)
    let header = le(size) + [flags, 0] + le(UInt16(0)) + le(UInt16(0x1000)) + le(UInt16(0x2000)) + le(UInt16(0))
        + [UInt8](repeating: 0, count: 4)
    return header + ram
}
write("FuzzVirtqueue", "read-write-flush",
      virtqueueInput(size: 16, flags: 0, requests: [(1, 0, 512), (0, 0, 512), (4, 0, 0)]))
write("FuzzVirtqueue", "event-idx-getid", virtqueueInput(size: 8, flags: 1, requests: [(8, 0, 20), (0, 7, 1024)]))
write("FuzzVirtqueue", "indirect", virtqueueInput(size: 8, flags: 3, requests: [(1, 3, 1024), (0, 3, 1024)], indirect: true))
write("FuzzVirtqueue", "loop", virtqueueInput(size: 8, flags: 0, requests: [(0, 0, 512)], loop: true))
write("FuzzVirtqueue", "discard-readonly", virtqueueInput(size: 4, flags: 8, requests: [(11, 0, 16), (1, 0, 512)]))

// MARK: ELF kernels (FuzzELFLoader)

write("FuzzELFLoader", "elf64-pvh", ELFBuilder().build())
var elf32 = ELFBuilder(); elf32.is64 = false; elf32.machine = 3
write("FuzzELFLoader", "elf32-pvh", elf32.build())
var note8 = ELFBuilder(); note8.pvhNoteSize = 8
note8.segments = [(0x10_0000, [0x90, 0xf4], 0x1000), (0x20_0000, [1, 2, 3, 4], 0x10_0000)]
write("FuzzELFLoader", "elf64-two-segments-note8", note8.build())
var noPVH = ELFBuilder(); noPVH.pvhEntry = nil
write("FuzzELFLoader", "elf64-no-pvh", noPVH.build())
write("FuzzELFLoader", "mini-exit", MiniKernel.exit(code: 3, printing: "hi"))

// MARK: VM specs (FuzzVMSpec) and API requests (FuzzAPIParsers: first byte 0 = HTTP, 1 = JSON)

let specs = [
    ("example", """
    {"kernel": "guest/build/guest.elf", "cmdline": "workload=blk-verify seconds=10", "memory": "256M", "vcpus": 2,
     "disks": [{"path": "disk.img", "readonly": false, "watchdog_ms": 500, "restart_policy": {"budget": 20}}],
     "nets": [{"tap": "tap0", "mac": "52:54:00:12:34:56"}],
     "restart_policy": {"budget": 100, "window_seconds": 60, "initial_backoff_ms": 10, "max_backoff_ms": 1000},
     "watchdog_ms": 1000, "api_socket": "/run/bulkhead/vm0.sock"}
    """),
    ("minimal", #"{"kernel": "k.elf"}"#),
    ("bad-types", #"{"vcpus": "two", "memory": 1, "disks": [{"readonly": true}]}"#),
]
for (name, text) in specs { write("FuzzVMSpec", name, Array(text.utf8)) }

let requests = [
    ("get-status", "GET /status HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("get-events", "GET /events?since=3&follow=1 HTTP/1.1\r\n\r\n"),
    ("post-fault", "POST /domains/blk0/fault HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"kind\":\"slow\",\"argument\":500.5}"),
]
for (name, text) in requests { write("FuzzAPIParsers", "http-\(name)", [0] + Array(text.utf8)) }
write("FuzzAPIParsers", "json-nested", [1] + Array(#"{"a":[1,-2.5e3,true,null,"\u00e9\n"],"b":{"c":{}}}"#.utf8))

// MARK: the supervisor (FuzzSupervisorMessages: a configuration byte, then steps)

/// Step encodings: a frame (op 0), a domain's end (op 4: how, detail, spawn failures), the
/// driver (op 5), time (op 6), stop (op 7).
func sent(_ message: ControlMessage) -> [UInt8] { let bytes = message.encode(); return [0] + le(UInt16(bytes.count)) + bytes }
func sentRaw(_ bytes: [UInt8]) -> [UInt8] { [0] + le(UInt16(bytes.count)) + bytes }
func ended(how: UInt8, detail: UInt8 = 0, spawnFailures: UInt8 = 0) -> [UInt8] { [4, how, detail, spawnFailures] }
func driver(activate queues: Int) -> [UInt8] { [5, UInt8((queues - 1) << 1)] }
let driverReset: [UInt8] = [5, 1]
func later(_ milliseconds: UInt16) -> [UInt8] { [6] + le(milliseconds) }
let stop: [UInt8] = [7]
/// Configuration: net or blk, the restart budget, activated before the first domain, usage shown.
func supervisorConfiguration(net: Bool, budget: UInt8, activated: Bool = true) -> UInt8 {
    (net ? 1 : 0) | (budget & 7) << 1 | (activated ? 0x10 : 0) | 0x20
}
func serving(_ kind: String, _ id: String, requests: UInt64) -> [UInt8] {
    sent(.hello(.init(kind: kind, id: id, pid: 1))) + sent(.attached(.init(replayed: 2)))
        + sent(.stats(.init(requests: requests, readBytes: requests * 4096, writtenBytes: 512, errors: 1, inFlight: 3, replayed: 2)))
}
let supervisorSeeds: [(String, [UInt8])] = [
    ("serve-crash-recover", [supervisorConfiguration(net: false, budget: 5)] + serving("blk", "blk0", requests: 10)
        + sent(.pong(.init(sequence: 1, sentNanoseconds: 5))) + sent(.log(.init(level: .notice, message: "hi")))
        + sent(.faultReport(.init(kind: "queue", detail: "avail.idx jumped"))) + ended(how: 1, detail: 9)
        + serving("blk", "blk0", requests: 3) + sent(.resetDone) + later(100) + stop),
    ("net-standby", [supervisorConfiguration(net: true, budget: 7)] + serving("net", "net0", requests: 1) + later(1500)
        + sent(.stats(.init(requests: 2))) + ended(how: 0, detail: 75) + serving("net", "net0", requests: 1)
        + ended(how: 4) + ended(how: 3) + stop),
    ("protocol-faults", [supervisorConfiguration(net: false, budget: 3)] + sent(.hello(.init(kind: "net", id: "blk0", pid: 1)))
        + ended(how: 0) + sent(.hello(.init(protocolVersion: 99, kind: "blk", id: "blk0", pid: 1))) + ended(how: 1, detail: 9)
        + sent(.attach(.init(generation: 0, deviceFeatures: 0, queues: [], guestMemorySize: 0))) + ended(how: 0)
        + sentRaw([0xff, 0xff, 0xff, 0x7f, 0x0a, 0xff, 0x01, 0x02]) + ended(how: 3)),
    ("budget-spent", [supervisorConfiguration(net: false, budget: 1)] + serving("blk", "blk0", requests: 1)
        + ended(how: 2, detail: 5, spawnFailures: 1) + ended(how: 0) + ended(how: 0) + later(10) + stop),
    ("reset-reattach", [supervisorConfiguration(net: true, budget: 4, activated: false)] + sent(.hello(.init(kind: "net", id: "net0", pid: 1)))
        + driver(activate: 2) + sent(.attached(.init(replayed: 0))) + driverReset + sent(.resetDone) + driver(activate: 2)
        + sent(.stats(.init(requests: .max, readBytes: .max, writtenBytes: .max, errors: .max, inFlight: .max, replayed: .max)))
        + ended(how: 1, detail: 31) + serving("net", "net0", requests: 7)),
]
for (name, bytes) in supervisorSeeds { write("FuzzSupervisorMessages", name, bytes) }

// MARK: the net frame path (FuzzNetFrames: 21-byte header, frames, guest RAM from 0)

/// Both queues of size 8: receiveq at 0x000 (descriptors), 0x100 (avail), 0x200 (used);
/// transmitq at 0x400, 0x500, 0x600; indirect tables from 0x800; data from 0x1000.
struct NetGuest {
    var ram = [UInt8](repeating: 0, count: 0x1000)
    var availCount = [0, 0]
    let tables = [0x000, 0x400]
    let avails = [0x100, 0x500]

    mutating func put(_ bytes: [UInt8], _ at: Int) {
        if ram.count < at + bytes.count { ram += [UInt8](repeating: 0, count: at + bytes.count - ram.count) }
        ram.replaceSubrange(at..<(at + bytes.count), with: bytes)
    }
    mutating func descriptor(table: Int, _ index: Int, _ address: Int, _ length: Int, _ flags: UInt16, _ next: Int = 0) {
        put(le(UInt64(address)) + le(UInt32(length)) + le(flags) + le(UInt16(next)), table + 16 * index)
    }
    /// Writes a chain of (address, length, writable) at descriptors first, first+1, ... of `queue`.
    mutating func chain(_ queue: Int, first: Int, _ buffers: [(Int, Int, Bool)]) {
        for (offset, buffer) in buffers.enumerated() {
            var flags: UInt16 = buffer.2 ? 2 : 0
            if offset + 1 < buffers.count { flags |= 1 }
            descriptor(table: tables[queue], first + offset, buffer.0, buffer.1, flags, first + offset + 1)
        }
        offer(queue, head: first)
    }
    mutating func offer(_ queue: Int, head: Int) {
        put(le(UInt16(head)), avails[queue] + 4 + 2 * availCount[queue])
        availCount[queue] += 1
        put(le(UInt16(availCount[queue])), avails[queue] + 2)
    }
    func input(flags: UInt8, rounds: Int, restartAt: Int = 0, frames: [(round: Int, length: Int, seed: UInt8)]) -> [UInt8] {
        var header: [UInt8] = [3, 3, flags, UInt8(rounds - 1) | UInt8(restartAt) << 4]
        for address in [0x000, 0x100, 0x200, 0x400, 0x500, 0x600] { header += le(UInt16(address)) }
        header += le(UInt16(0x800)) + le(UInt16(0xC00)) + [UInt8(frames.count)]
        for frame in frames {
            let long = frame.length > 0xFFFF
            header += [UInt8(frame.round) | (long ? 0x10 : 0)] + le(UInt16(long ? frame.length - 1024 : frame.length)) + [frame.seed]
        }
        // Guest RAM past the input is zero: leave trailing zeros out.
        return header + ram[..<((ram.lastIndex { $0 != 0 } ?? -1) + 1)]
    }
}
let rx = 0, tx = 1
var echo = NetGuest()
echo.chain(rx, first: 0, [(0x2000, 1526, true)])
echo.chain(rx, first: 1, [(0x3000, 12, true), (0x3100, 1514, true)])
echo.chain(tx, first: 0, [(0x4000, 12, false), (0x4100, 60, false)])
echo.chain(tx, first: 2, [(0x4200, 74, false)])
write("FuzzNetFrames", "echo", echo.input(flags: 1, rounds: 2, frames: [(0, 60, 1), (1, 1000, 2)]))
var sizes = NetGuest()
sizes.chain(rx, first: 0, [(0x2000, 112, true)])
sizes.chain(rx, first: 1, [(0x8000, 0x11000, true)])
sizes.chain(tx, first: 0, [(0x4000, 12, false), (0x8000, 65538, false)])
sizes.chain(tx, first: 2, [(0x4000, 12, false), (0x8000, 65539, false)])
sizes.chain(tx, first: 4, [(0x4000, 12, false)])
write("FuzzNetFrames", "runts-empty-65k", sizes.input(flags: 0, rounds: 3, frames: [
    (0, 66559, 3), (0, 100, 4), (0, 0, 0), (1, 14, 5), (1, 65536, 6), (2, 1, 7)]))
var indirect = NetGuest()
indirect.descriptor(table: 0x800, 0, 0x4000, 12, 1, 1)
indirect.descriptor(table: 0x800, 1, 0x4100, 200, 0)
indirect.descriptor(table: 0x400, 0, 0x800, 32, 4)
indirect.offer(tx, head: 0)
indirect.descriptor(table: 0x900, 0, 0x2000, 2048, 2)
indirect.descriptor(table: 0x000, 0, 0x900, 16, 4)
indirect.offer(rx, head: 0)
write("FuzzNetFrames", "indirect", indirect.input(flags: 3, rounds: 2, frames: [(0, 300, 8), (1, 42, 9)]))
var hostile = NetGuest()
hostile.descriptor(table: 0x400, 0, 0x4000, 64, 1, 0)               // a loop
hostile.offer(tx, head: 0)
hostile.chain(tx, first: 1, [(0x4000, 12, false), (0x4100, 64, true)]) // write-only in a transmit chain
hostile.chain(tx, first: 3, [(0x7fff_0000, 100, false)])               // outside guest RAM
hostile.offer(tx, head: 9)                                              // head out of range
hostile.chain(rx, first: 0, [(0x2000, 64, false), (0x2100, 64, true)]) // read-only in a receive chain
hostile.chain(rx, first: 2, [(0x0000, 2048, true)])                     // over the rings themselves
hostile.chain(rx, first: 3, [(0x3000, 12, true)])                       // no room for a frame
write("FuzzNetFrames", "hostile-chains", hostile.input(flags: 1, rounds: 2, frames: [(0, 64, 10), (1, 20, 11)]))
var restart = NetGuest()
restart.chain(rx, first: 0, [(0x2000, 112, true)])
restart.chain(rx, first: 1, [(0x3000, 1526, true)])
restart.chain(tx, first: 0, [(0x4000, 12, false), (0x4100, 60, false)])
write("FuzzNetFrames", "restart", restart.input(flags: 0, rounds: 4, restartAt: 2, frames: [(0, 500, 12), (3, 50, 13)]))

print("seeds written under \(root)/")

/// Not a fuzzer: the whole package is linked with libFuzzer, which wants this symbol.
@_cdecl("LLVMFuzzerTestOneInput")
public func unusedFuzzerEntry(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt { 0 }
