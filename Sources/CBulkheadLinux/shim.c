#include "CBulkheadLinux.h"

static void bh_kick_handler(int signo) { (void)signo; }

int bh_install_kick_handler(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bh_kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
    return sigaction(signo, &sa, NULL);
}

int bh_block_signal(int signo, int block) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    return pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

#include <net/if.h>

int bh_tun_set_iff(int fd, const char *name, short flags) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = flags;
    return ioctl(fd, TUNSETIFF, &request);
}

/* Linux native AIO: the header's mirrors of <linux/aio_abi.h>, checked here. */
#include <linux/aio_abi.h>
#include <stddef.h>
_Static_assert(sizeof(struct bh_iocb) == sizeof(struct iocb), "iocb layout");
_Static_assert(offsetof(struct bh_iocb, aio_lio_opcode) == offsetof(struct iocb, aio_lio_opcode), "iocb layout");
_Static_assert(offsetof(struct bh_iocb, aio_fildes) == offsetof(struct iocb, aio_fildes), "iocb layout");
_Static_assert(offsetof(struct bh_iocb, aio_buf) == offsetof(struct iocb, aio_buf), "iocb layout");
_Static_assert(offsetof(struct bh_iocb, aio_offset) == offsetof(struct iocb, aio_offset), "iocb layout");
_Static_assert(offsetof(struct bh_iocb, aio_flags) == offsetof(struct iocb, aio_flags), "iocb layout");
_Static_assert(sizeof(struct bh_io_event) == sizeof(struct io_event), "io_event layout");
_Static_assert(offsetof(struct bh_io_event, res) == offsetof(struct io_event, res), "io_event layout");
_Static_assert(BH_IOCB_CMD_PREADV == IOCB_CMD_PREADV && BH_IOCB_CMD_PWRITEV == IOCB_CMD_PWRITEV, "iocb commands");
_Static_assert(sizeof(bh_aio_context) == sizeof(aio_context_t), "aio context");

int bh_io_setup(unsigned nr, bh_aio_context *ctx) { return (int)syscall(SYS_io_setup, nr, ctx); }

long bh_io_submit(bh_aio_context ctx, long n, struct bh_iocb **iocbs) { return syscall(SYS_io_submit, ctx, n, iocbs); }

long bh_io_getevents(bh_aio_context ctx, long min_nr, long max_nr, struct bh_io_event *events, long timeout_ns) {
    struct timespec ts = { timeout_ns / 1000000000L, timeout_ns % 1000000000L };
    return syscall(SYS_io_getevents, ctx, min_nr, max_nr, events, &ts);
}
