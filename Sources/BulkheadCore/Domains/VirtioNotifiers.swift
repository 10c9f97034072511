import BulkheadKVM
import BulkheadSystem

extension Machine {
    /// The kernel objects of a domain-served virtio device's data path: its irqfd (GSI `irq`)
    /// and one ioeventfd per queue on QueueNotify (datamatch = the queue index), so that the
    /// guest's kicks and the domain's interrupts never pass through the core.
    static func makeNotifiers(
        queueCount: Int, base: GuestAddress, irq: UInt32, vm: VirtualMachine
    ) throws(CoreError) -> (irqfd: SharedFileDescriptor, kicks: [SharedFileDescriptor]) {
        let irqfd: SharedFileDescriptor
        var kicks: [SharedFileDescriptor] = []
        do {
            irqfd = SharedFileDescriptor(try FileDescriptor.eventfd(nonBlocking: true))
            for _ in 0..<queueCount { kicks.append(SharedFileDescriptor(try FileDescriptor.eventfd(nonBlocking: true))) }
        } catch {
            throw CoreError(.system, underlying: error)
        }
        do {
            try vm.registerIrqfd(fd: irqfd.rawValue, gsi: irq)
            for (queue, kick) in kicks.enumerated() {
                try vm.registerIoeventfd(fd: kick.rawValue, address: GuestAddress(base.rawValue + VirtioMMIOTransport.queueNotifyOffset),
                                         length: 4, datamatch: UInt64(queue))
            }
        } catch {
            throw CoreError(.kvm, underlying: error)
        }
        return (irqfd, kicks)
    }
}
