import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif
import BulkheadAPI

/// Fuzzes the operator API's parsers of what a client sends: `HTTPRequest.parse` (request line,
/// headers, Content-Length, query string, body) and `JSON.parse` (request bodies such as
/// `POST /domains/{id}/fault`). Input: the first byte picks the parser; the rest is the input.
/// A JSON value that parses must serialize and parse again to the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAPIParsers(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count >= 1 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: count - 1))
    if data[0] & 1 == 0 {
        do throws(HTTPRequest.ParseError) {
            let request = try HTTPRequest.parse(bytes)
            _ = request.body.count
            if let body = JSON.parse(String(decoding: request.body, as: UTF8.self)) { _ = body.serialized }
        } catch {
            _ = error
        }
    } else {
        guard let value = JSON.parse(String(decoding: bytes, as: UTF8.self)) else { return 0 }
        let text = value.serialized
        precondition(JSON.parse(text) != nil, "serialized JSON does not parse: \(text)")
    }
    return 0
}

// libFuzzer's driver with this process's command line (see Fuzz/Package.swift).
var fuzzerArgc = CommandLine.argc
var fuzzerArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&fuzzerArgc, &fuzzerArgv) { data, size in fuzzAPIParsers(data, size) })
