import BulkheadSystem
import CBulkheadLinux
import Testing

@testable import BulkheadChannel

@Suite struct ControlRegionTests {
    @Test func layoutMatchesTheDocumentedTable() {
        typealias L = ControlRegionLayout
        #expect(L.coreToDomainRingOffset == 0x1000)
        #expect(L.domainToCoreRingOffset == 0x11000)
        #expect(L.recoveryOffset == 0x21000)
        #expect(L.deviceStateOffset == 0x41000)
        #expect(L.size == 0x51000)
        let header = [
            L.domainStateOffset, L.interruptStatusOffset, L.coreToDomainSleepingOffset,
            L.domainToCoreSleepingOffset, L.coreToDomainProducerOffset, L.coreToDomainConsumerOffset,
            L.domainToCoreProducerOffset, L.domainToCoreConsumerOffset,
        ]
        #expect(Set(header.map { $0 / 64 }).count == header.count, "fields with different writers on different lines")
        #expect(L.heartbeatOffset / 64 == L.domainStateOffset / 64 && L.heartbeatOffset % 8 == 0)
        #expect(header.allSatisfy { $0 + 8 <= L.headerSize })
        #expect(DomainFileDescriptors.queueNotify(7) == 17)
    }

    @Test func magicReadsBLKHDCTL() throws {
        let region = try ControlRegion.create(name: "magic")
        let bytes = Array(UnsafeRawBufferPointer(start: region.base, count: 8))
        #expect(String(decoding: bytes, as: UTF8.self) == "BLKHDCTL")
    }

    @Test func secondMappingSeesTheSameHeaderAndAreas() throws {
        let core = try ControlRegion.create(name: "shared")
        let domain = try ControlRegion(mapping: try duplicate(core.file))
        domain.publish(.running)
        domain.beat()
        domain.beat()
        #expect(core.domainState == .running)
        #expect(core.heartbeat == 2)
        #expect(domain.raiseInterrupt(0x1) == 0)
        #expect(domain.raiseInterrupt(0x2) == 0x1)
        #expect(core.interruptStatus == 0x3)
        #expect(core.acknowledgeInterrupt(0x1) == 0x3)
        #expect(domain.interruptStatus == 0x2)
        domain.queueRecovery(7).storeBytes(of: 0xABCD_EF01 as UInt32, toByteOffset: 100, as: UInt32.self)
        #expect(core.queueRecovery(7).load(fromByteOffset: 100, as: UInt32.self) == 0xABCD_EF01)
        #expect(core.queueRecovery(0).count == ControlRegionLayout.queueRecoveryStride)
        domain.deviceState[ControlRegionLayout.deviceStateSize - 1] = 0x5A
        #expect(core.deviceState[ControlRegionLayout.deviceStateSize - 1] == 0x5A)
        // Garbage in domainState reads as no state, not a trap.
        bh_atomic_store_release_u32(headerField(domain, ControlRegionLayout.domainStateOffset), 77)
        #expect(core.domainState == nil)
    }

    @Test func mappingRejectsWhatIsNotARegion() throws {
        do {
            _ = try ControlRegion(mapping: try FileDescriptor.memfd(name: "small", size: 4096))
            Issue.record("small memfd accepted")
        } catch let error as ChannelError {
            #expect(error.code == .regionTooSmall)
        }
        do {
            _ = try ControlRegion(mapping: try FileDescriptor.memfd(name: "zero", size: ControlRegionLayout.size))
            Issue.record("zero memfd accepted")
        } catch let error as ChannelError {
            #expect(error.code == .badMagic)
            #expect(error.description.contains("is not BLKHDCTL"))
        }
        let core = try ControlRegion.create(name: "version")
        bh_atomic_store_release_u32(headerField(core, ControlRegionLayout.versionOffset), 2)
        do {
            _ = try ControlRegion(mapping: try duplicate(core.file))
            Issue.record("layout version 2 accepted")
        } catch let error as ChannelError {
            #expect(error.code == .unsupportedLayout)
            #expect(error.description.contains("layout version 2"))
        }
    }
}
