/* net-echo: numbered UDP datagrams to the peer's echo service, every reply
 * matched by sequence number and checked; answers ARP and ping throughout.
 *   count= (1000) size= (64, 8..1472) port= (7) window= (32) timeout_ms= (1000)
 *   max_loss= (1, percent) duration= (0 s; >0: send max(count, rate*duration)
 *   datagrams paced at rate= (1000/s), so the run lasts at least that long)
 *   lport= (40007, our source port) ip= peer= arp_timeout_ms= (3000)
 * Payload of datagram `seq`: u64 seq (little-endian), then the bytes of
 * mix64(seq ^ 0x42484543484f0000 + k) for k = 1, 2, ... (little-endian u64s,
 * the last one cut to fit). See guest/README.md. */
#include "cmdline.h"
#include "lib.h"
#include "mem.h"
#include "net.h"
#include "timer.h"
#include "workload.h"
#include "x86.h"

#define ST_UNSENT   0
#define ST_OUT      1
#define ST_OK       2
#define ST_LOST     3
#define ST_CORRUPT  4
#define MAX_TOTAL   (4UL << 20)

typedef u64 __attribute__((aligned(1), may_alias)) u64_un;

static inline u64 mix64(u64 z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    return z ^ (z >> 31);
}

static inline u64 pattern_word(u64 seq, u64 k) { return mix64((seq ^ 0x42484543484f0000UL) + k); }

static void fill_payload(u8 *p, u64 seq, u32 size)
{
    *(u64_un *)p = seq;
    u32 i = 8;
    for (u64 k = 1; i + 8 <= size; k++, i += 8) *(u64_un *)(p + i) = pattern_word(seq, k);
    if (i < size) {
        u64 w = pattern_word(seq, (i / 8));
        for (u32 j = 0; i < size; i++, j++) p[i] = (u8)(w >> (8 * j));
    }
}

static bool check_payload(const u8 *p, u64 seq, u32 size)
{
    u32 i = 8;
    for (u64 k = 1; i + 8 <= size; k++, i += 8)
        if (*(const u64_un *)(p + i) != pattern_word(seq, k)) return false;
    if (i < size) {
        u64 w = pattern_word(seq, (i / 8));
        for (u32 j = 0; i < size; i++, j++)
            if (p[i] != (u8)(w >> (8 * j))) return false;
    }
    return true;
}

static struct {
    struct net_stack *s;
    u64 total;
    u32 size;
    u16 port;
    u8 *state;
    u64 *sent_tsc;
    u64 outstanding, received, lost, corrupt, duplicates, late, stray;
    u64 rtt_sum, rtt_max;
    int corrupt_printed;
} E;

static void on_reply(void *ctx, u32 src_ip, u16 src_port, u16 dst_port, const u8 *p, u32 len)
{
    if (src_ip != E.s->peer_ip || src_port != E.port) {
        E.stray++;
        return;
    }
    u64 seq = len >= 8 ? *(const u64_un *)p : ~0UL;
    bool good = len == E.size && seq < E.total && check_payload(p, seq, E.size);
    u8 st = seq < E.total ? E.state[seq] : ST_UNSENT;
    if (!good || st == ST_UNSENT) {
        E.corrupt++;
        if (st == ST_OUT) {
            E.state[seq] = ST_CORRUPT;
            E.outstanding--;
        }
        if (E.corrupt_printed++ < 5)
            printf("guest: net-echo: corrupt reply: len %u (want %u), seq 0x%lx, state %u\n", len,
                   E.size, seq, st);
        return;
    }
    switch (st) {
    case ST_OUT: {
        u64 rtt = rdtsc() - E.sent_tsc[seq];
        E.rtt_sum += rtt;
        if (rtt > E.rtt_max) E.rtt_max = rtt;
        E.state[seq] = ST_OK;
        E.outstanding--;
        E.received++;
        break;
    }
    case ST_LOST: E.late++; break;
    default:      E.duplicates++; break;
    }
}

static bool run(void)
{
    static struct net_stack stack;
    struct net_stack *s = &stack;
    u64 count = 1000, size = 64, port = 7, window = 32, timeout_ms = 1000, max_loss = 1;
    u64 duration = 0, rate = 1000, lport = 40007, arp_ms = 3000;
    cmdline_get_u64("count", &count);
    cmdline_get_u64("size", &size);
    cmdline_get_u64("port", &port);
    cmdline_get_u64("window", &window);
    cmdline_get_u64("timeout_ms", &timeout_ms);
    cmdline_get_u64("max_loss", &max_loss);
    cmdline_get_u64("duration", &duration);
    cmdline_get_u64("rate", &rate);
    cmdline_get_u64("lport", &lport);
    cmdline_get_u64("arp_timeout_ms", &arp_ms);
    if (size < 8 || size > UDP_MAX_PAYLOAD) { result_kv("reason=bad-size"); return false; }
    if (window < 1) { result_kv("reason=bad-window"); return false; }
    if (!port || port > 65535 || !lport || lport > 65535) { result_kv("reason=bad-port"); return false; }
    if (!timeout_ms) timeout_ms = 1;
    if (!rate) rate = 1;
    u64 total = count;
    if (duration && rate * duration > total) total = rate * duration;
    if (total > MAX_TOTAL) {
        printf("guest: net-echo: capping %lu datagrams to %lu\n", total, MAX_TOTAL);
        total = MAX_TOTAL;
    }

    if (!net_init(s)) { result_kv("reason=%s", s->fail_reason); return false; }
    E.s = s;
    E.total = total;
    E.size = (u32)size;
    E.port = (u16)port;
    E.state = mem_alloc(total ? total : 1, 64);
    E.sent_tsc = mem_alloc(8 * (total ? total : 1), 64);
    if (!E.state || !E.sent_tsc) { result_kv("reason=oom"); return false; }
    net_udp_bind(s, (u16)lport, on_reply, NULL);
    if (!net_resolve_peer(s, arp_ms)) {
        result_kv("sent=0 link_down_seen=%lu reason=%s", s->nic->link_down_seen,
                  s->fail_reason ? s->fail_reason : "arp-timeout");
        return false;
    }
    printf("guest: net-echo: %lu datagrams of %lu bytes to port %lu, window %lu, timeout %lu ms%s\n",
           total, size, port, window, timeout_ms, duration ? ", paced" : "");
    if (duration)
        printf("guest: net-echo: paced at %lu/s for at least %lu s\n", rate, duration);

    u64 khz = tsc_khz();
    u64 timeout_tsc = timeout_ms * khz;
    u64 interval = duration ? khz * 1000 / rate : 0;
    u64 start = rdtsc(), next_seq = 0, oldest = 0, next_report = 1;
    const char *fail = NULL;
    while (next_seq < total || E.outstanding > 0) {
        u64 now = rdtsc();
        int batch = 0;
        while (next_seq < total && E.outstanding < window && batch < 32 &&
               (!interval || now - start >= next_seq * interval)) {
            u8 *p = net_udp_begin(s);
            if (!p) break;
            fill_payload(p, next_seq, E.size);
            net_udp_commit(s, p, (u16)lport, (u16)port, E.size);
            E.state[next_seq] = ST_OUT;
            E.sent_tsc[next_seq] = now;
            E.outstanding++;
            next_seq++;
            batch++;
        }
        if (batch) net_flush(s);
        if (net_poll(s) < 0) {
            fail = s->fail_reason;
            break;
        }
        now = rdtsc();
        while (oldest < next_seq) {
            if (E.state[oldest] != ST_OUT) { oldest++; continue; }
            if (now - E.sent_tsc[oldest] <= timeout_tsc) break;
            E.state[oldest] = ST_LOST;
            E.lost++;
            E.outstanding--;
            oldest++;
        }
        if (next_seq * 4 >= next_report * total && next_report < 4) {
            printf("guest: net-echo %lu%%: sent=%lu received=%lu lost=%lu pings=%lu\n",
                   next_report * 25, next_seq, E.received, E.lost, s->st.pings_answered);
            next_report++;
        }
    }
    u64 elapsed_us = tsc_to_us(rdtsc() - start);
    /* A device that gave up: whatever is still out is lost. */
    E.lost += E.outstanding;
    E.outstanding = 0;
    net_print_stats(s);
    u64 sent = next_seq;
    bool ok = !fail && sent > 0 && E.corrupt == 0 && E.lost * 100 <= max_loss * sent;
    result_kv("sent=%lu received=%lu lost=%lu corrupt=%lu duplicates=%lu link_down_seen=%lu "
              "pings_answered=%lu seconds=%lu.%03lu",
              sent, E.received, E.lost, E.corrupt, E.duplicates, s->nic->link_down_seen,
              s->st.pings_answered, elapsed_us / 1000000, elapsed_us / 1000 % 1000);
    u64 rtt_avg = E.received ? tsc_to_us(E.rtt_sum / E.received) : 0;
    result_kv("late=%lu stray=%lu malformed=%lu rtt_avg_us=%lu rtt_max_us=%lu size=%lu window=%lu "
              "tx_notifies=%lu rx_notifies=%lu",
              E.late, E.stray, s->st.malformed, rtt_avg, tsc_to_us(E.rtt_max), size, window,
              s->nic->tx_regs, s->nic->rx_regs);
    net_result_nic(s);
    if (fail) result_kv("reason=%s", fail);
    else if (!sent) result_kv("reason=nothing-sent");
    else if (E.corrupt) result_kv("reason=corrupt");
    else if (!ok) result_kv("reason=loss");
    return ok;
}
WORKLOAD("net-echo", run);
