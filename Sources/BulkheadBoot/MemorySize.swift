/// Parses and prints memory sizes the way `--memory` takes them: `256M`, `1G`, `512MiB`,
/// `65536K`; a bare number means MiB (as QEMU's `-m`).
public enum MemorySize {
    public static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text.trimmingCharacters(in: " "))
        var multiplier: UInt64 = 1 << 20
        let suffixes: [(String, UInt64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
            ("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1),
        ]
        for (suffix, value) in suffixes where digits.uppercased().hasSuffix(suffix.uppercased()) {
            digits = digits.dropLast(suffix.count)
            multiplier = value
            break
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let number = UInt64(digits) else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    public static func describe(_ bytes: UInt64) -> String {
        if bytes >= 1 << 30 && bytes % (1 << 30) == 0 { return "\(bytes >> 30) GiB" }
        if bytes >= 1 << 20 && bytes % (1 << 20) == 0 { return "\(bytes >> 20) MiB" }
        if bytes >= 1 << 10 && bytes % (1 << 10) == 0 { return "\(bytes >> 10) KiB" }
        return "\(bytes) bytes"
    }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        String(drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }
}
