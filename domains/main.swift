// bulkhead-domain <kind> <id>: the entry point of every driver domain process.
//
// The core spawns this executable with its file descriptors at fixed numbers (see
// `DomainFileDescriptors` in BulkheadChannel) inside new namespaces; the domain enters the
// rest of its sandbox before it reads any guest data. It opens nothing by path.
#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    let usage = "usage: bulkhead-domain <kind> <id>   (kinds: blk, net, rtl8139, probe); spawned by the bulkhead core\n"
    _ = usage.withCString { write(2, $0, strlen($0)) }
    exit(64)
}
let kind = arguments[1]
let id = arguments[2]

switch kind {
case "blk":
    exit(BlockDomain.main(id: id, arguments: Array(arguments.dropFirst(3))))
case "net":
    exit(NetDomain.main(id: id, arguments: Array(arguments.dropFirst(3))))
case "rtl8139":
    exit(RTL8139Domain.main(id: id, arguments: Array(arguments.dropFirst(3))))
case "probe":
    exit(SandboxProbe.main(id: id, arguments: Array(arguments.dropFirst(3))))
default:
    let message = "bulkhead-domain: unknown domain kind \(kind)\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(64)
}
