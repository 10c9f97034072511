/// The one error type of the boot module: what is wrong with which kernel image or setting.
public struct BootError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case notELF
        case unsupportedELF(String)
        case truncated(String)
        case noPVHEntry
        case segmentOutOfRange(String)
        case memoryTooSmall(required: UInt64, given: UInt64)
        case commandLineTooLong(length: Int, limit: Int)
    }

    public let code: Code
    /// The kernel image at fault, where there is one.
    public let path: String?

    public init(_ code: Code, path: String? = nil) {
        self.code = code
        self.path = path
    }

    public var description: String {
        let subject = path.map { "\($0): " } ?? ""
        switch code {
        case .notELF:
            return subject + "not an ELF file (Bulkhead boots PVH ELF kernels such as guest/build/guest.elf or a Linux vmlinux)"
        case .unsupportedELF(let why):
            return subject + "unsupported ELF: \(why)"
        case .truncated(let what):
            return subject + "truncated ELF: \(what) lies past the end of the file"
        case .noPVHEntry:
            return subject + "no PVH entry point: the ELF has no Xen PHYS32_ENTRY note (XEN_ELFNOTE_PHYS32_ENTRY, type 18)"
        case .segmentOutOfRange(let what):
            return subject + what
        case .memoryTooSmall(let required, let given):
            return subject + "guest memory of \(MemorySize.describe(given)) is too small: at least \(MemorySize.describe(required)) needed"
        case .commandLineTooLong(let length, let limit):
            return "kernel command line is \(length) bytes; the limit is \(limit)"
        }
    }
}
