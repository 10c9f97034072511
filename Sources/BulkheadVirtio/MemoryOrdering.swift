import Synchronization

// Guest memory and the recovery block are shared with other agents (the guest's vCPUs, the
// core, the next domain process). Swift has no volatile or atomic access through raw
// pointers, so each field another agent moves meanwhile (ring indices, flags, event indices,
// the recovery block's words) is one relaxed C11 atomic access (`bh_atomic_*` in
// CBulkheadLinux: never a byte-wise copy, which a debug build's `loadUnaligned` is), and the
// fences below order them as the virtio spec's barriers describe (virtio 1.2, 2.7.13
// "Supplying Buffers to The Device" / 2.7.8 "The Virtqueue Used Ring"). A fence is also a
// compiler barrier: no access moves across it.

/// Orders the load before it (e.g. avail.idx) before every access after it (the ring entry).
@inline(__always) func acquireFence() { atomicMemoryFence(ordering: .acquiring) }

/// Orders every access before it before the store after it (e.g. used.idx).
@inline(__always) func releaseFence() { atomicMemoryFence(ordering: .releasing) }

/// A full barrier: a store before it (used.idx, avail_event) is visible before a load after
/// it (used_event, avail.idx). Needed for notification suppression.
@inline(__always) func fullFence() { atomicMemoryFence(ordering: .sequentiallyConsistent) }
