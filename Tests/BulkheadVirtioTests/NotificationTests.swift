@testable import BulkheadVirtio
import Testing

@Suite("Split virtqueue: notification suppression")
struct NotificationTests {
    @Test func vringNeedEvent() {
        #expect(SplitVirtqueue.needEvent(eventIndex: 0, new: 1, old: 0))
        #expect(!SplitVirtqueue.needEvent(eventIndex: 5, new: 3, old: 0))
        #expect(SplitVirtqueue.needEvent(eventIndex: 5, new: 6, old: 0))  // crossed in a batch
        #expect(!SplitVirtqueue.needEvent(eventIndex: 5, new: 7, old: 6))  // already past
        #expect(SplitVirtqueue.needEvent(eventIndex: 0xFFFF, new: 1, old: 0xFFFE))  // across the wrap
        #expect(!SplitVirtqueue.needEvent(eventIndex: 3, new: 3, old: 3))  // nothing new
    }

    @Test func eventIndexDecidesInterrupts() throws {
        let guest = try FakeGuest(eventIndex: true)
        let (queue, _) = try guest.queue()
        func complete(_ head: UInt16) throws {
            guest.submit([(FakeGuest.dataArea, 8, false)], first: head)
            _ = try #require(try queue.popAvailable())
            try queue.pushUsed(head: head, length: 0)
        }
        try complete(0)
        #expect(queue.needsNotification())  // unknown state after (re)start: notify
        guest.setUsedEvent(2)  // interrupt me when used entry 2 is published
        try complete(1)
        #expect(!queue.needsNotification())  // used.idx 2: entry 2 not yet used
        try complete(2)
        #expect(queue.needsNotification())  // used.idx 3 crossed used_event 2
        try complete(3)
        #expect(!queue.needsNotification())
        // Flags are ignored with EVENT_IDX.
        guest.setUsedEvent(4)  // interrupt me when used entry 4 is published
        guest.setAvailFlags(SplitVirtqueue.availFlagNoInterrupt)
        try complete(4)
        #expect(queue.needsNotification())
    }

    @Test func noInterruptFlagWithoutEventIndex() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        guest.setAvailFlags(SplitVirtqueue.availFlagNoInterrupt)
        #expect(!queue.needsNotification())
        guest.setAvailFlags(0)
        #expect(queue.needsNotification())
    }

    @Test func enableRechecksForBuffersThatRaced() throws {
        let guest = try FakeGuest()
        let (queue, _) = try guest.queue()
        queue.disableNotifications()
        #expect(guest.usedFlags == SplitVirtqueue.usedFlagNoNotify)
        #expect(!queue.enableNotifications())
        #expect(guest.usedFlags == 0)
        queue.disableNotifications()
        guest.submit([(FakeGuest.dataArea, 8, false)])  // arrives while kicks are off
        #expect(queue.enableNotifications())  // so the device must look again
        _ = try #require(try queue.popAvailable())
        #expect(!queue.enableNotifications())
    }

    @Test func availEventFollowsTheDevice() throws {
        let guest = try FakeGuest(eventIndex: true)
        let (queue, _) = try guest.queue()
        for head: UInt16 in 0..<3 {
            guest.submit([(FakeGuest.dataArea, 8, false)], first: head)
            _ = try #require(try queue.popAvailable())
        }
        queue.disableNotifications()
        #expect(guest.availEvent == 0)  // left behind
        #expect(!queue.enableNotifications())
        #expect(guest.availEvent == 3)  // kick me for avail entry 3
        guest.submit([(FakeGuest.dataArea, 8, false)], first: 3)
        #expect(queue.enableNotifications())
    }
}
