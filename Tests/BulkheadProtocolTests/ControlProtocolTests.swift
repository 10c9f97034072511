import Testing

import BulkheadProtocol

@Suite struct ControlProtocolTests {
    @Test func matchingVersionPasses() throws {
        try ControlProtocol.check(ControlMessage.Hello(kind: "blk", id: "blk0", pid: 1))
        try ControlProtocol.check(ControlMessage.Attach(generation: 0, deviceFeatures: 0, queues: [], guestMemorySize: 0))
    }

    @Test func helloVersionMismatchSaysWhoAndWhat() {
        let hello = ControlMessage.Hello(protocolVersion: 2, kind: "blk", id: "blk0", pid: 1)
        do {
            try ControlProtocol.check(hello)
            Issue.record("version 2 accepted")
        } catch {
            #expect(error.code == .versionMismatch)
            #expect(
                error.description
                    == "domain blk0 (kind blk, pid 1) speaks control protocol version 2, this core speaks "
                    + "version 1: build the core and bulkhead-domain from the same tree")
        }
    }

    @Test func attachVersionMismatch() {
        let attach = ControlMessage.Attach(
            protocolVersion: 0, generation: 0, deviceFeatures: 0, queues: [], guestMemorySize: 0)
        #expect(throws: ProtocolError(
            .versionMismatch,
            "core speaks control protocol version 0, this domain speaks version 1: build the core and "
                + "bulkhead-domain from the same tree")) {
            try ControlProtocol.check(attach)
        }
    }
}
