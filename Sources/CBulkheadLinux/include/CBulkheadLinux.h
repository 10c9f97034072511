// C shim for the Linux system layer and KVM.
//
// Only what Swift cannot express: ioctl request numbers (function-like macros), fixed-argument
// wrappers for variadic calls, accessors into anonymous unions, and the signal handler used to
// kick vCPU threads out of KVM_RUN. No logic lives here.
#ifndef CBULKHEADLINUX_H
#define CBULKHEADLINUX_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// MARK: ioctl request numbers

static const unsigned long BH_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long BH_KVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long BH_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long BH_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long BH_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long BH_KVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long BH_KVM_CREATE_PIT2 = KVM_CREATE_PIT2;
static const unsigned long BH_KVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long BH_KVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
static const unsigned long BH_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long BH_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long BH_KVM_IRQ_LINE = KVM_IRQ_LINE;
static const unsigned long BH_KVM_IRQFD = KVM_IRQFD;
static const unsigned long BH_KVM_IOEVENTFD = KVM_IOEVENTFD;
static const unsigned long BH_KVM_RUN = KVM_RUN;
static const unsigned long BH_KVM_GET_REGS = KVM_GET_REGS;
static const unsigned long BH_KVM_SET_REGS = KVM_SET_REGS;
static const unsigned long BH_KVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long BH_KVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long BH_KVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long BH_KVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long BH_KVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long BH_KVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;

static const unsigned int BH_KVM_IOEVENTFD_FLAG_DATAMATCH = KVM_IOEVENTFD_FLAG_DATAMATCH;

static const int BH_KVM_CAP_IRQCHIP = KVM_CAP_IRQCHIP;
static const int BH_KVM_CAP_USER_MEMORY = KVM_CAP_USER_MEMORY;
static const int BH_KVM_CAP_IOEVENTFD = KVM_CAP_IOEVENTFD;
static const int BH_KVM_CAP_IRQFD = KVM_CAP_IRQFD;
static const int BH_KVM_CAP_PIT2 = KVM_CAP_PIT2;
static const int BH_KVM_CAP_TSC_CONTROL = KVM_CAP_TSC_CONTROL;
static const int BH_KVM_CAP_GET_TSC_KHZ = KVM_CAP_GET_TSC_KHZ;

// MARK: fixed-argument wrappers for variadic calls

static inline int bh_ioctl_ptr(int fd, unsigned long request, void *arg) {
    return ioctl(fd, request, arg);
}

static inline int bh_ioctl_val(int fd, unsigned long request, unsigned long arg) {
    return ioctl(fd, request, arg);
}

static inline int bh_open(const char *path, int flags) { return open(path, flags | O_CLOEXEC); }

/* Linux native AIO (for O_DIRECT disks: the blk domain keeps many requests in flight from
 * one thread), as raw system calls (no libaio). The structures mirror <linux/aio_abi.h>, which
 * cannot be included here: it brings <linux/fs.h>'s MS_* macros, which clash with Glibc's in
 * Swift; shim.c checks the layouts against the kernel's. */
typedef unsigned long bh_aio_context;
struct bh_iocb {
    uint64_t aio_data;
    uint32_t aio_key;
    uint32_t aio_rw_flags;
    uint16_t aio_lio_opcode;
    int16_t aio_reqprio;
    uint32_t aio_fildes;
    uint64_t aio_buf;
    uint64_t aio_nbytes;
    int64_t aio_offset;
    uint64_t aio_reserved2;
    uint32_t aio_flags;
    uint32_t aio_resfd;
};
struct bh_io_event {
    uint64_t data;
    uint64_t obj;
    int64_t res;
    int64_t res2;
};
static const uint16_t BH_IOCB_CMD_PREADV = 7;
static const uint16_t BH_IOCB_CMD_PWRITEV = 8;
int bh_io_setup(unsigned nr, bh_aio_context *ctx);
long bh_io_submit(bh_aio_context ctx, long n, struct bh_iocb **iocbs);
/* Waits up to timeout_ns (0: not at all) for at least min_nr completions. */
long bh_io_getevents(bh_aio_context ctx, long min_nr, long max_nr, struct bh_io_event *events, long timeout_ns);
/* Bypass the host page cache (`--disk PATH,cache=none`); needs _GNU_SOURCE, which Swift's Glibc lacks. */
static const int BH_O_DIRECT = O_DIRECT;

static inline int bh_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

static inline int bh_pidfd_open(int pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

static inline int bh_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
                           unsigned long a5) {
    return prctl(option, a2, a3, a4, a5);
}

/// Names the calling thread (as `ps -L` and /proc show it); at most 15 bytes are kept.
static inline int bh_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

static inline int bh_errno(void) { return errno; }

static inline int bh_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

// MARK: kvm_run accessors (anonymous union)

static inline struct kvm_run_io_view {
    uint8_t direction;
    uint8_t size;
    uint16_t port;
    uint32_t count;
    uint64_t data_offset;
} bh_run_io(const struct kvm_run *run) {
    struct kvm_run_io_view v = {run->io.direction, run->io.size, run->io.port, run->io.count,
                                run->io.data_offset};
    return v;
}

static inline uint8_t *bh_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }
static inline uint64_t bh_run_mmio_addr(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint32_t bh_run_mmio_len(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t bh_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
static inline uint32_t bh_run_internal_suberror(const struct kvm_run *run) {
    return run->internal.suberror;
}
static inline uint64_t bh_run_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t bh_run_system_event_type(const struct kvm_run *run) {
    return run->system_event.type;
}

// MARK: kvm_cpuid2 with room for entries

#define BH_MAX_CPUID_ENTRIES 256
// Same layout as struct kvm_cpuid2 followed by its flexible array.
struct bh_cpuid {
    struct {
        uint32_t nent;
        uint32_t padding;
    } header;
    struct kvm_cpuid_entry2 entries[BH_MAX_CPUID_ENTRIES];
};

// MARK: kicking vCPU threads out of KVM_RUN

/// Installs an empty handler for `signo` without SA_RESTART, so that a pthread_kill makes a
/// blocking KVM_RUN return EINTR.
int bh_install_kick_handler(int signo);
/// Blocks `signo` in the calling thread (used by non-vCPU threads).
int bh_block_signal(int signo, int block);

// MARK: shared-memory atomics
//
// C11 atomics over plain pointers into memory shared between processes (the control region of
// BulkheadChannel, the virtqueue rings in guest RAM and the queue recovery blocks of
// BulkheadVirtio). Swift's `Synchronization.Atomic` cannot live at an address in a mapping, so
// these small wrappers do it. Every pointer must be naturally aligned. Only append here.
//
// Why not `UnsafeRawPointer.load`/`loadUnaligned`/`storeBytes`: nothing makes them one access.
// In a debug build `loadUnaligned(as: UInt16.self)` is a memcpy, and glibc copies 2 bytes as a
// 16-bit load plus a separate load of the last byte, so an index the guest moves from 0x1DFF to
// 0x1E00 meanwhile reads as 0x1EFF.
#include <stdatomic.h>

static inline uint32_t bh_atomic_load_acquire_u32(const void *p) {
    return atomic_load_explicit((const _Atomic uint32_t *)p, memory_order_acquire);
}
static inline uint64_t bh_atomic_load_acquire_u64(const void *p) {
    return atomic_load_explicit((const _Atomic uint64_t *)p, memory_order_acquire);
}
static inline uint32_t bh_atomic_load_relaxed_u32(const void *p) {
    return atomic_load_explicit((const _Atomic uint32_t *)p, memory_order_relaxed);
}
static inline uint64_t bh_atomic_load_relaxed_u64(const void *p) {
    return atomic_load_explicit((const _Atomic uint64_t *)p, memory_order_relaxed);
}
static inline uint16_t bh_atomic_load_relaxed_u16(const void *p) {
    return atomic_load_explicit((const _Atomic uint16_t *)p, memory_order_relaxed);
}
static inline void bh_atomic_store_relaxed_u16(void *p, uint16_t v) {
    atomic_store_explicit((_Atomic uint16_t *)p, v, memory_order_relaxed);
}
static inline void bh_atomic_store_relaxed_u32(void *p, uint32_t v) {
    atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_relaxed);
}
static inline void bh_atomic_store_relaxed_u64(void *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_relaxed);
}
static inline void bh_atomic_store_release_u32(void *p, uint32_t v) {
    atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_release);
}
static inline void bh_atomic_store_release_u64(void *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}
static inline void bh_atomic_store_seq_cst_u32(void *p, uint32_t v) {
    atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_seq_cst);
}
static inline uint32_t bh_atomic_fetch_or_u32(void *p, uint32_t v) {
    return atomic_fetch_or_explicit((_Atomic uint32_t *)p, v, memory_order_acq_rel);
}
static inline uint32_t bh_atomic_fetch_and_u32(void *p, uint32_t v) {
    return atomic_fetch_and_explicit((_Atomic uint32_t *)p, v, memory_order_acq_rel);
}
static inline uint32_t bh_atomic_exchange_u32(void *p, uint32_t v) {
    return atomic_exchange_explicit((_Atomic uint32_t *)p, v, memory_order_acq_rel);
}
static inline uint64_t bh_atomic_fetch_add_u64(void *p, uint64_t v) {
    return atomic_fetch_add_explicit((_Atomic uint64_t *)p, v, memory_order_acq_rel);
}
/// A full barrier: orders an earlier store before a later load (the doorbell handshake).
static inline void bh_atomic_fence_seq_cst(void) { atomic_thread_fence(memory_order_seq_cst); }
/// A spin-wait hint (x86 `pause`): cheaper on the sibling hyperthread while polling a ring.
static inline void bh_atomic_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// MARK: TUN/TAP (virtio-net backends)
//
// The core opens /dev/net/tun and attaches it to a tap interface with TUNSETIFF; the net
// domain only reads and writes the fd it is handed. Owned by BulkheadCore's NetDevice; only
// append here.
#include <linux/if_tun.h>

static const unsigned long BH_TUNSETIFF = TUNSETIFF;
static const short BH_IFF_TAP = IFF_TAP;
static const short BH_IFF_NO_PI = IFF_NO_PI;
/// IFNAMSIZ from <net/if.h>, which this header must not include: its socket types clash with
/// the ones Swift's Glibc module already defines (a clean build fails on fd_set).
static const int BH_IFNAMSIZ = 16;

/// TUNSETIFF with `struct ifreq` {name, flags}: attaches `fd` (/dev/net/tun) to the interface
/// `name`, creating it when it does not exist. The name must be shorter than IFNAMSIZ.
/// (In shim.c, which may include <net/if.h>.)
int bh_tun_set_iff(int fd, const char *name, short flags);

#endif
