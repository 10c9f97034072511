/// The minimal ACPI tables a guest needs to find its CPUs and interrupt controllers:
/// RSDP (revision 2) → XSDT → MADT with one local APIC per vCPU, the IOAPIC, and the ISA
/// IRQ0 → GSI2 override. Linux and the test guest both read them.
public enum ACPITables {
    public static let localAPICAddress: UInt32 = 0xfee0_0000
    public static let ioAPICAddress: UInt32 = 0xfec0_0000

    /// The tables laid out from `base`; the RSDP comes first.
    public static func build(vcpus: Int, base: UInt64) -> [UInt8] {
        let xsdtAddress = base + 0x40
        let madtAddress = base + 0x80

        var madtBody: [UInt8] = []
        madtBody.append(le: localAPICAddress)
        madtBody.append(le: UInt32(1)) // PCAT_COMPAT: dual 8259s present
        for cpu in 0..<vcpus {
            // Processor Local APIC: type 0, length 8, processor uid, APIC id, flags = enabled.
            madtBody += [0, 8, UInt8(truncatingIfNeeded: cpu), UInt8(truncatingIfNeeded: cpu)]
            madtBody.append(le: UInt32(1))
        }
        // I/O APIC: type 1, length 12, id, reserved, address, GSI base.
        madtBody += [1, 12, UInt8(truncatingIfNeeded: vcpus), 0]
        madtBody.append(le: ioAPICAddress)
        madtBody.append(le: UInt32(0))
        // Interrupt source override: ISA IRQ 0 → GSI 2, conforming polarity and trigger.
        madtBody += [2, 10, 0, 0]
        madtBody.append(le: UInt32(2))
        madtBody.append(le: UInt16(0))
        let madt = table(signature: "APIC", revision: 4, body: madtBody)

        var xsdtBody: [UInt8] = []
        xsdtBody.append(le: madtAddress)
        let xsdt = table(signature: "XSDT", revision: 1, body: xsdtBody)

        var rsdp: [UInt8] = Array("RSD PTR ".utf8)
        rsdp.append(0) // checksum of the first 20 bytes
        rsdp += Array("BLKHD ".utf8)
        rsdp.append(2) // revision 2: XSDT
        rsdp.append(le: UInt32(0)) // RSDT address: none
        rsdp.append(le: UInt32(36)) // length
        rsdp.append(le: xsdtAddress)
        rsdp.append(0) // extended checksum
        rsdp += [0, 0, 0]
        rsdp[8] = checksum(rsdp[0..<20])
        rsdp[32] = checksum(rsdp[0..<36])

        var image = [UInt8](repeating: 0, count: Int(madtAddress - base) + madt.count)
        image.replaceSubrange(0..<rsdp.count, with: rsdp)
        image.replaceSubrange(0x40..<(0x40 + xsdt.count), with: xsdt)
        image.replaceSubrange(0x80..<(0x80 + madt.count), with: madt)
        return image
    }

    /// A system description table: the 36-byte header, then `body`, with its checksum set.
    static func table(signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = Array(signature.utf8)
        bytes.append(le: UInt32(36 + body.count))
        bytes.append(revision)
        bytes.append(0) // checksum
        bytes += Array("BLKHD ".utf8) // OEM id
        bytes += Array("BULKHEAD".utf8) // OEM table id
        bytes.append(le: UInt32(1)) // OEM revision
        bytes += Array("BLKH".utf8) // creator id
        bytes.append(le: UInt32(1)) // creator revision
        bytes += body
        bytes[9] = checksum(bytes[...])
        return bytes
    }

    /// The byte that makes `bytes` sum to zero.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(UInt8(0), &+)
    }
}

extension Array where Element == UInt8 {
    mutating func append<T: FixedWidthInteger>(le value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
