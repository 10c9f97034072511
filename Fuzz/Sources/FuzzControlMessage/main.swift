import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif
import BulkheadProtocol

/// Fuzzes the bytes of one control-ring frame as the core (or a domain) decodes them.
///
/// Properties: `ControlMessage.decode` never traps, whatever the bytes; a decoded `Hello` or
/// `Attach` goes through the same `ControlProtocol.check` the core and domains make; and a
/// decoded message re-encodes to bytes that decode to the same value (the encoder accepts
/// everything the decoder produced).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlMessage(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : count)
    let message: ControlMessage
    do throws(ProtocolError) {
        message = try ControlMessage.decode(bytes)
    } catch {
        _ = error.description
        return 0
    }
    switch message {
    case .hello(let hello): _ = try? ControlProtocol.check(hello)
    case .attach(let attach): _ = try? ControlProtocol.check(attach)
    default: break
    }
    _ = message.name
    // Round trip. Strings with invalid UTF-8 are repaired on decoding (a byte may become three),
    // so a re-encoding can exceed the frame limit; below it, it must decode to the same value.
    let size = message.encodedSize
    let encoded = message.encode()
    precondition(encoded.count == size, "encodedSize \(size) but encode() wrote \(encoded.count) bytes")
    if size <= ControlProtocol.maxMessageSize {
        do throws(ProtocolError) {
            let again = try ControlMessage.decode(encoded)
            precondition(again == message, "re-encoded \(message.name) decodes to a different value")
        } catch {
            preconditionFailure("re-encoded \(message.name) (\(size) bytes) does not decode: \(error)")
        }
    }
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzControlMessage(data, size) })
