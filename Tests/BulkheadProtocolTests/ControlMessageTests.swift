import Testing

import BulkheadProtocol

/// One value of every message, with non-default fields everywhere.
let everyMessage: [ControlMessage] = [
    .hello(.init(kind: "blk", id: "blk0", pid: 1)),
    .attach(
        .init(
            generation: 3, deviceFeatures: 0x1_3000_0040,
            queues: (0..<8).map {
                .init(
                    index: UInt32($0), size: 256, descriptorAddress: 0x10_0000 + UInt64($0) << 16,
                    availableAddress: 0x10_1000 + UInt64($0) << 16, usedAddress: 0x10_2000 + UInt64($0) << 16,
                    ready: $0 % 2 == 0)
            },
            guestMemorySize: 1 << 30, eventIndex: true, readOnly: true, capacitySectors: 2_097_152,
            config: [1, 2, 3, 0, 255])),
    .attach(.init(generation: 0, deviceFeatures: 0, queues: [], guestMemorySize: 0)),
    .attached(.init(replayed: 17)),
    .reset,
    .resetDone,
    .shutdown,
    .ping(.init(sequence: 42, sentNanoseconds: 123_456_789_012)),
    .pong(.init(sequence: .max, sentNanoseconds: 1)),
    .stats(.init(requests: 1, readBytes: 2, writtenBytes: 3, errors: 4, inFlight: 5, replayed: 6)),
    .faultReport(.init(kind: "descriptor", detail: "chain loops at descriptor 7 — ünïcode")),
    .log(.init(level: .warning, message: "queue 0: slow backend")),
    .log(.init(level: .trace, message: "")),
    .registerRead(.init(bar: 0, offset: 0x1c, size: 4, sequence: 9)),
    .registerReadReply(.init(sequence: 9, value: 0xdead_beef)),
    .registerWrite(.init(bar: 2, offset: 0x100, size: 8, value: .max, sequence: 9)),
] + ControlMessage.InjectFault.Kind.allCases.map { .injectFault(.init(kind: $0, argument: 99)) }
    + ControlMessage.Log.Level.allCases.map { .log(.init(level: $0, message: "level")) }

@Suite struct ControlMessageTests {
    @Test func everyMessageRoundTrips() throws {
        for message in everyMessage {
            let bytes = message.encode()
            #expect(bytes.count == message.encodedSize)
            #expect(try ControlMessage.decode(bytes) == message, "\(message.name)")
        }
    }

    @Test func encodeIntoCallerBuffer() throws {
        for message in everyMessage {
            var buffer = [UInt8](repeating: 0xAA, count: 1024)
            let count = try buffer.withUnsafeMutableBytes { try message.encode(into: $0) }
            #expect(Array(buffer[..<count]) == message.encode())
        }
        let big = everyMessage[1]
        var small = [UInt8](repeating: 0, count: 8)
        #expect(throws: ProtocolError.self) {
            _ = try small.withUnsafeMutableBytes { try big.encode(into: $0) }
        }
    }

    @Test func moreThanEightQueuesIsRejected() {
        let queue = ControlMessage.QueueConfig(
            index: 0, size: 8, descriptorAddress: 0, availableAddress: 0, usedAddress: 0, ready: true)
        let message = ControlMessage.attach(
            .init(generation: 0, deviceFeatures: 0, queues: Array(repeating: queue, count: 9), guestMemorySize: 0))
        do {
            _ = try ControlMessage.decode(message.encode())
            Issue.record("nine queues accepted")
        } catch {
            #expect(error.code == .invalidField)
            #expect(error.description.contains("9 queues"))
        }
    }

    @Test func emptyEnvelopeIsUnknown() {
        do {
            _ = try ControlMessage.decode([UInt8]())
            Issue.record("empty input accepted")
        } catch {
            #expect(error.code == .unknownMessage)
        }
        // Field 99 (from a newer peer): valid protobuf, no known message.
        do {
            _ = try ControlMessage.decode([0x98, 0x06, 0x01])
            Issue.record("unknown field accepted")
        } catch {
            #expect(error.code == .unknownMessage)
        }
    }

    @Test func unknownEnumValuesAreRejected() {
        // InjectFault { kind = 77 }: envelope field 15 (len) → InjectFault field 1 varint 77.
        #expect(throws: ProtocolError.self) { try ControlMessage.decode([0x7a, 0x02, 0x08, 77]) }
        // Log { level = 9 }: envelope field 11.
        #expect(throws: ProtocolError.self) { try ControlMessage.decode([0x5a, 0x02, 0x08, 9]) }
    }

    @Test func everyTruncationFailsCleanly() {
        for message in everyMessage {
            let bytes = message.encode()
            for cut in 0..<bytes.count {
                // A prefix may happen to be valid protobuf (proto3 fields are optional); what
                // matters is that it never traps and never decodes to something bigger.
                if let decoded = try? ControlMessage.decode(Array(bytes[..<cut])) {
                    #expect(decoded.encodedSize <= bytes.count)
                }
            }
        }
    }

    @Test func randomGarbageNeverTraps() {
        var rng = SplitMix64(seed: 0xB1C_4EAD)
        var decoded = 0
        for round in 0..<20_000 {
            let count = Int(rng.next() % 96)
            var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if round % 2 == 0, let seed = everyMessage.randomElement(using: &rng) {
                // Mutations of valid messages reach deeper into the decoder than pure noise.
                bytes = seed.encode()
                for _ in 0...(rng.next() % 4) where !bytes.isEmpty {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            if (try? ControlMessage.decode(bytes)) != nil { decoded += 1 }
        }
        #expect(decoded > 0)
    }

    @Test func oversizedInputIsRejected() {
        let bytes = [UInt8](repeating: 0, count: ControlProtocol.maxMessageSize + 1)
        #expect(throws: ProtocolError.self) { try ControlMessage.decode(bytes) }
    }
}

/// A small deterministic generator, so that a failing input can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
