/// The two CRC-32s of Ethernet (IEEE 802.3, polynomial 0x04C11DB7).
public enum EthernetCRC {
    /// The frame check sequence: reflected CRC-32, initial value and final XOR all ones; it
    /// follows the frame on the wire least significant byte first.
    public static func frameCheckSequence(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return ~crc
    }

    /// The multicast filter's hash: the index (0–63) of the MAR bit for a destination address,
    /// the top six bits of the non-reflected CRC-32 of its six bytes (Linux's `ether_crc(6,
    /// addr) >> 26`). Bit n is bit `n % 8` of MAR`n / 8`.
    public static func multicastHashIndex(_ address: UnsafeRawBufferPointer) -> Int {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in address.prefix(6) {
            var octet = byte
            for _ in 0..<8 {
                let feedback = (crc >> 31) ^ UInt32(octet & 1)
                crc = (crc << 1) ^ (feedback != 0 ? 0x04C1_1DB7 : 0)
                octet >>= 1
            }
        }
        return Int(crc >> 26)
    }

    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }
}
