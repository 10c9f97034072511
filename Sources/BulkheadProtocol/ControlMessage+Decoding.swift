import CBulkheadProto

extension ControlMessage {
    /// Decodes one `bulkhead.Envelope`. The bytes are hostile: anything malformed, unknown or
    /// out of range (more than `maxQueues` queues, an unknown enum value, more than
    /// `ControlProtocol.maxMessageSize` bytes) is a `ProtocolError`, never a trap.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(ProtocolError) -> ControlMessage {
        guard bytes.count <= ControlProtocol.maxMessageSize else {
            throw ProtocolError(
                .malformed, "decoding a control message: \(bytes.count) bytes exceed the limit of "
                    + "\(ControlProtocol.maxMessageSize)")
        }
        // SAFETY: protobuf-c reads exactly `bytes.count` bytes at the base address (a zero-length
        // input is given a valid one-byte dummy so that the pointer is never null) and returns a
        // heap tree that we copy out of and free before returning.
        var empty: UInt8 = 0
        let unpacked: UnsafeMutablePointer<Bulkhead__Envelope>? =
            if let base = bytes.baseAddress, bytes.count > 0 {
                bulkhead__envelope__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self))
            } else {
                bulkhead__envelope__unpack(nil, 0, &empty)
            }
        guard let unpacked else {
            throw ProtocolError(.malformed, "decoding a control message: \(bytes.count) bytes are not a valid Envelope")
        }
        defer { bulkhead__envelope__free_unpacked(unpacked, nil) }
        return try convert(unpacked.pointee)
    }

    /// Decodes `bytes` (convenience for tests and tools).
    public static func decode(_ bytes: [UInt8]) throws(ProtocolError) -> ControlMessage {
        let result: Result<ControlMessage, ProtocolError> = bytes.withUnsafeBytes { raw in
            do throws(ProtocolError) { return .success(try decode(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private static func missing(_ what: String) -> ProtocolError {
        ProtocolError(.malformed, "decoding a control message: \(what) announced but absent")
    }

    private static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        // SAFETY: protobuf-c strings are NUL-terminated (unpacked or the shared empty string);
        // invalid UTF-8 is repaired, not trusted.
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    private static func convert(_ envelope: Bulkhead__Envelope) throws(ProtocolError) -> ControlMessage {
        // SAFETY (whole switch): the union member read is the one `body_case` names, as
        // protobuf-c set it; each pointer is checked for nil before `pointee`.
        switch envelope.body_case {
        case BULKHEAD__ENVELOPE__BODY_HELLO:
            guard let m = envelope.hello?.pointee else { throw missing("Hello") }
            return .hello(Hello(protocolVersion: m.protocol_version, kind: string(m.kind), id: string(m.id), pid: m.pid))
        case BULKHEAD__ENVELOPE__BODY_ATTACH:
            guard let m = envelope.attach?.pointee else { throw missing("Attach") }
            guard m.n_queues <= maxQueues else {
                throw ProtocolError(
                    .invalidField, "decoding Attach: \(m.n_queues) queues, at most \(maxQueues) allowed")
            }
            var queues: [QueueConfig] = []
            queues.reserveCapacity(m.n_queues)
            for i in 0..<m.n_queues {
                guard let q = m.queues?[i]?.pointee else { throw missing("Attach.queues[\(i)]") }
                queues.append(
                    QueueConfig(
                        index: q.index, size: q.size, descriptorAddress: q.desc_addr,
                        availableAddress: q.avail_addr, usedAddress: q.used_addr, ready: q.ready != 0))
            }
            var config: [UInt8] = []
            if m.config.len > 0, let data = m.config.data {
                config = Array(UnsafeBufferPointer(start: data, count: m.config.len))
            }
            return .attach(
                Attach(
                    protocolVersion: m.protocol_version, generation: m.generation,
                    deviceFeatures: m.device_features, queues: queues, guestMemorySize: m.guest_memory_size,
                    eventIndex: m.event_idx != 0, readOnly: m.read_only != 0, capacitySectors: m.capacity_sectors,
                    config: config))
        case BULKHEAD__ENVELOPE__BODY_ATTACHED:
            guard let m = envelope.attached?.pointee else { throw missing("Attached") }
            return .attached(Attached(replayed: m.replayed))
        case BULKHEAD__ENVELOPE__BODY_RESET:
            guard envelope.reset != nil else { throw missing("Reset") }
            return .reset
        case BULKHEAD__ENVELOPE__BODY_RESET_DONE:
            guard envelope.reset_done != nil else { throw missing("ResetDone") }
            return .resetDone
        case BULKHEAD__ENVELOPE__BODY_SHUTDOWN:
            guard envelope.shutdown != nil else { throw missing("Shutdown") }
            return .shutdown
        case BULKHEAD__ENVELOPE__BODY_PING:
            guard let m = envelope.ping?.pointee else { throw missing("Ping") }
            return .ping(Ping(sequence: m.seq, sentNanoseconds: m.sent_ns))
        case BULKHEAD__ENVELOPE__BODY_PONG:
            guard let m = envelope.pong?.pointee else { throw missing("Pong") }
            return .pong(Pong(sequence: m.seq, sentNanoseconds: m.sent_ns))
        case BULKHEAD__ENVELOPE__BODY_STATS:
            guard let m = envelope.stats?.pointee else { throw missing("Stats") }
            return .stats(
                Stats(
                    requests: m.requests, readBytes: m.read_bytes, writtenBytes: m.written_bytes, errors: m.errors,
                    inFlight: m.in_flight, replayed: m.replayed))
        case BULKHEAD__ENVELOPE__BODY_FAULT_REPORT:
            guard let m = envelope.fault_report?.pointee else { throw missing("FaultReport") }
            return .faultReport(FaultReport(kind: string(m.kind), detail: string(m.detail)))
        case BULKHEAD__ENVELOPE__BODY_LOG:
            guard let m = envelope.log?.pointee else { throw missing("Log") }
            guard let level = Log.Level(rawValue: m.level.rawValue) else {
                throw ProtocolError(.invalidField, "decoding Log: unknown level \(m.level.rawValue)")
            }
            return .log(Log(level: level, message: string(m.message)))
        case BULKHEAD__ENVELOPE__BODY_REGISTER_READ:
            guard let m = envelope.register_read?.pointee else { throw missing("RegisterRead") }
            return .registerRead(RegisterRead(bar: m.bar, offset: m.offset, size: m.size, sequence: m.seq))
        case BULKHEAD__ENVELOPE__BODY_REGISTER_READ_REPLY:
            guard let m = envelope.register_read_reply?.pointee else { throw missing("RegisterReadReply") }
            return .registerReadReply(RegisterReadReply(sequence: m.seq, value: m.value))
        case BULKHEAD__ENVELOPE__BODY_REGISTER_WRITE:
            guard let m = envelope.register_write?.pointee else { throw missing("RegisterWrite") }
            return .registerWrite(RegisterWrite(bar: m.bar, offset: m.offset, size: m.size, value: m.value, sequence: m.seq))
        case BULKHEAD__ENVELOPE__BODY_INJECT_FAULT:
            guard let m = envelope.inject_fault?.pointee else { throw missing("InjectFault") }
            guard let kind = InjectFault.Kind(rawValue: m.kind.rawValue) else {
                throw ProtocolError(.invalidField, "decoding InjectFault: unknown kind \(m.kind.rawValue)")
            }
            return .injectFault(InjectFault(kind: kind, argument: m.argument))
        default:
            throw ProtocolError(
                .unknownMessage, "decoding a control message: envelope carries no known message "
                    + "(body case \(envelope.body_case.rawValue))")
        }
    }
}
