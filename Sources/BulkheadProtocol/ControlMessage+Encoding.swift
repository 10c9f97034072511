import CBulkheadProto

extension ControlMessage {
    /// The encoded size of the message in bytes.
    public var encodedSize: Int {
        withEnvelope { envelope in bulkhead__envelope__get_packed_size(envelope) }
    }

    /// The message encoded as a `bulkhead.Envelope`.
    ///
    /// Swift strings are handed to protobuf-c as C strings: an interior NUL ends the string.
    public func encode() -> [UInt8] {
        withEnvelope { envelope in
            let size = bulkhead__envelope__get_packed_size(envelope)
            return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                // SAFETY: `buffer` has room for `size` bytes, exactly what get_packed_size said
                // pack writes; pack returns the count it wrote.
                guard let base = buffer.baseAddress else {
                    initialized = 0
                    return
                }
                initialized = bulkhead__envelope__pack(envelope, base)
            }
        }
    }

    /// Encodes the message into `buffer` without allocating; returns the number of bytes written.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) throws(ProtocolError) -> Int {
        let result: Int? = withEnvelope { envelope in
            let size = bulkhead__envelope__get_packed_size(envelope)
            guard size <= buffer.count else { return nil }
            guard size > 0, let base = buffer.baseAddress else { return 0 }
            // SAFETY: `size` ≤ `buffer.count` bytes are written at the start of the caller's buffer.
            return bulkhead__envelope__pack(envelope, base.assumingMemoryBound(to: UInt8.self))
        }
        guard let result else {
            throw ProtocolError(
                .bufferTooSmall, "encoding \(name): \(encodedSize) bytes do not fit in \(buffer.count)")
        }
        return result
    }

    /// The message's name as in `proto/bulkhead.proto`.
    public var name: String {
        switch self {
        case .hello: "Hello"
        case .attach: "Attach"
        case .attached: "Attached"
        case .reset: "Reset"
        case .resetDone: "ResetDone"
        case .shutdown: "Shutdown"
        case .ping: "Ping"
        case .pong: "Pong"
        case .stats: "Stats"
        case .faultReport: "FaultReport"
        case .log: "Log"
        case .registerRead: "RegisterRead"
        case .registerReadReply: "RegisterReadReply"
        case .registerWrite: "RegisterWrite"
        case .injectFault: "InjectFault"
        }
    }

    /// Builds the protobuf-c structs of the message on the stack, pointing into this value's
    /// storage, and calls `body` with the envelope. Nothing escapes `body`.
    private func withEnvelope<R>(_ body: (UnsafePointer<Bulkhead__Envelope>) -> R) -> R {
        func wrap<M>(
            _ message: inout M, _ bodyCase: Bulkhead__Envelope__BodyCase,
            _ set: (inout Bulkhead__Envelope, UnsafeMutablePointer<M>) -> Void
        ) -> R {
            // SAFETY: the message pointer lives for the closure; the envelope is consumed
            // (get_packed_size / pack) inside `body` only.
            withUnsafeMutablePointer(to: &message) { pointer in
                var envelope = Bulkhead__Envelope()
                bulkhead__envelope__init(&envelope)
                envelope.body_case = bodyCase
                set(&envelope, pointer)
                return withUnsafePointer(to: &envelope) { body($0) }
            }
        }

        switch self {
        case .hello(let hello):
            var c = Bulkhead__Hello()
            bulkhead__hello__init(&c)
            c.protocol_version = hello.protocolVersion
            c.pid = hello.pid
            return hello.kind.withCString { kind in
                hello.id.withCString { id in
                    // SAFETY: protobuf-c only reads through these pointers while packing, inside
                    // the withCString scopes.
                    c.kind = UnsafeMutablePointer(mutating: kind)
                    c.id = UnsafeMutablePointer(mutating: id)
                    return wrap(&c, BULKHEAD__ENVELOPE__BODY_HELLO) { $0.hello = $1 }
                }
            }
        case .attach(let attach):
            return withAttach(attach) { c in wrap(&c, BULKHEAD__ENVELOPE__BODY_ATTACH) { $0.attach = $1 } }
        case .attached(let attached):
            var c = Bulkhead__Attached()
            bulkhead__attached__init(&c)
            c.replayed = attached.replayed
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_ATTACHED) { $0.attached = $1 }
        case .reset:
            var c = Bulkhead__Reset()
            bulkhead__reset__init(&c)
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_RESET) { $0.reset = $1 }
        case .resetDone:
            var c = Bulkhead__ResetDone()
            bulkhead__reset_done__init(&c)
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_RESET_DONE) { $0.reset_done = $1 }
        case .shutdown:
            var c = Bulkhead__Shutdown()
            bulkhead__shutdown__init(&c)
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_SHUTDOWN) { $0.shutdown = $1 }
        case .ping(let ping):
            var c = Bulkhead__Ping()
            bulkhead__ping__init(&c)
            c.seq = ping.sequence
            c.sent_ns = ping.sentNanoseconds
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_PING) { $0.ping = $1 }
        case .pong(let pong):
            var c = Bulkhead__Pong()
            bulkhead__pong__init(&c)
            c.seq = pong.sequence
            c.sent_ns = pong.sentNanoseconds
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_PONG) { $0.pong = $1 }
        case .stats(let stats):
            var c = Bulkhead__Stats()
            bulkhead__stats__init(&c)
            c.requests = stats.requests
            c.read_bytes = stats.readBytes
            c.written_bytes = stats.writtenBytes
            c.errors = stats.errors
            c.in_flight = stats.inFlight
            c.replayed = stats.replayed
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_STATS) { $0.stats = $1 }
        case .faultReport(let report):
            var c = Bulkhead__FaultReport()
            bulkhead__fault_report__init(&c)
            return report.kind.withCString { kind in
                report.detail.withCString { detail in
                    // SAFETY: read by protobuf-c inside the withCString scopes only.
                    c.kind = UnsafeMutablePointer(mutating: kind)
                    c.detail = UnsafeMutablePointer(mutating: detail)
                    return wrap(&c, BULKHEAD__ENVELOPE__BODY_FAULT_REPORT) { $0.fault_report = $1 }
                }
            }
        case .log(let log):
            var c = Bulkhead__Log()
            bulkhead__log__init(&c)
            c.level = Bulkhead__Log__Level(rawValue: log.level.rawValue)
            return log.message.withCString { message in
                // SAFETY: read by protobuf-c inside the withCString scope only.
                c.message = UnsafeMutablePointer(mutating: message)
                return wrap(&c, BULKHEAD__ENVELOPE__BODY_LOG) { $0.log = $1 }
            }
        case .registerRead(let read):
            var c = Bulkhead__RegisterRead()
            bulkhead__register_read__init(&c)
            c.bar = read.bar
            c.offset = read.offset
            c.size = read.size
            c.seq = read.sequence
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_REGISTER_READ) { $0.register_read = $1 }
        case .registerReadReply(let reply):
            var c = Bulkhead__RegisterReadReply()
            bulkhead__register_read_reply__init(&c)
            c.seq = reply.sequence
            c.value = reply.value
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_REGISTER_READ_REPLY) { $0.register_read_reply = $1 }
        case .registerWrite(let write):
            var c = Bulkhead__RegisterWrite()
            bulkhead__register_write__init(&c)
            c.bar = write.bar
            c.offset = write.offset
            c.size = write.size
            c.value = write.value
            c.seq = write.sequence
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_REGISTER_WRITE) { $0.register_write = $1 }
        case .injectFault(let fault):
            var c = Bulkhead__InjectFault()
            bulkhead__inject_fault__init(&c)
            c.kind = Bulkhead__InjectFault__Kind(rawValue: fault.kind.rawValue)
            c.argument = fault.argument
            return wrap(&c, BULKHEAD__ENVELOPE__BODY_INJECT_FAULT) { $0.inject_fault = $1 }
        }
    }

    /// Builds a `Bulkhead__Attach` with its queue array and config bytes in temporary storage.
    private func withAttach<R>(_ attach: Attach, _ body: (inout Bulkhead__Attach) -> R) -> R {
        var c = Bulkhead__Attach()
        bulkhead__attach__init(&c)
        c.protocol_version = attach.protocolVersion
        c.generation = attach.generation
        c.device_features = attach.deviceFeatures
        c.guest_memory_size = attach.guestMemorySize
        c.event_idx = attach.eventIndex ? 1 : 0
        c.read_only = attach.readOnly ? 1 : 0
        c.capacity_sectors = attach.capacitySectors
        let count = attach.queues.count
        return withUnsafeTemporaryAllocation(of: Bulkhead__QueueConfig.self, capacity: max(count, 1)) { queues in
            withUnsafeTemporaryAllocation(
                of: UnsafeMutablePointer<Bulkhead__QueueConfig>?.self, capacity: max(count, 1)
            ) { pointers in
                // SAFETY: both temporary buffers hold `count` elements (at least one slot);
                // element i of `queues` is initialized before its pointer is stored, and
                // deinitialization is unnecessary for these trivial C structs.
                guard let queueBase = queues.baseAddress else { return body(&c) }
                for (i, queue) in attach.queues.enumerated() {
                    var q = Bulkhead__QueueConfig()
                    bulkhead__queue_config__init(&q)
                    q.index = queue.index
                    q.size = queue.size
                    q.desc_addr = queue.descriptorAddress
                    q.avail_addr = queue.availableAddress
                    q.used_addr = queue.usedAddress
                    q.ready = queue.ready ? 1 : 0
                    (queueBase + i).initialize(to: q)
                    pointers[i] = queueBase + i
                }
                c.n_queues = count
                c.queues = count > 0 ? pointers.baseAddress : nil
                return attach.config.withUnsafeBufferPointer { config in
                    // SAFETY: protobuf-c reads `len` bytes at `data` while packing, inside this scope.
                    c.config = ProtobufCBinaryData(
                        len: config.count, data: UnsafeMutablePointer(mutating: config.baseAddress))
                    return body(&c)
                }
            }
        }
    }
}
