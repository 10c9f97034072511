/* net-bench: UDP packet rate and throughput each way.
 *   mode=both|tx|rx (both) size= (1024, 8..1472) seconds= (3) port= (9)
 *   rx_port= (5001) rx_wait= (10 s) lport= (40009) ip= peer=
 * tx: send size-byte datagrams (u64 sequence number, then zeros) to
 *   peer:port as fast as the ring allows for `seconds`; the host counts them.
 * rx: send "BHNET-RX-START ..." from rx_port to peer:rx_port every 500 ms
 *   until the first datagram arrives on rx_port (at most rx_wait s), count
 *   datagrams to rx_port for `seconds` from that first one, then send
 *   "BHNET-RX-STOP" (three times). guest/tools/net-host.py flood answers the
 *   start message with a flood; any other sender that floods 10.0.0.2:5001
 *   works too (the start/stop messages are then ignored).
 * mbps = UDP payload bits per second / 10^6. */
#include "cmdline.h"
#include "lib.h"
#include "net.h"
#include "timer.h"
#include "workload.h"
#include "x86.h"

typedef u64 __attribute__((aligned(1), may_alias)) u64_un;

static struct {
    bool counting, started;
    u64 end_tsc, first_tsc, last_tsc;
    u64 packets, bytes, early, late;
    u64 first_seq, max_seq;
} R;

static void on_rx(void *ctx, u32 src_ip, u16 src_port, u16 dst_port, const u8 *p, u32 len)
{
    u64 now = rdtsc();
    if (!R.counting) {
        R.early++;
        return;
    }
    if (!R.started) {
        R.started = true;
        R.first_tsc = now;
        R.end_tsc += now;                 /* end_tsc held the window length */
        R.first_seq = len >= 8 ? *(const u64_un *)p : 0;
        R.max_seq = R.first_seq;
    } else if (now >= R.end_tsc) {
        R.late++;
        return;
    }
    R.packets++;
    R.bytes += len;
    R.last_tsc = now;
    if (len >= 8) {
        u64 seq = *(const u64_un *)p;
        if (seq > R.max_seq && seq - R.max_seq < (1UL << 32)) R.max_seq = seq;
    }
}

static void send_text(struct net_stack *s, u16 sport, u16 dport, const char *msg)
{
    for (int tries = 0; tries < 1000; tries++) {
        u8 *p = net_udp_begin(s);
        if (p) {
            u32 len = (u32)strlen(msg);
            memcpy(p, msg, len);
            net_udp_commit(s, p, sport, dport, len);
            net_flush(s);
            return;
        }
        net_poll(s);
    }
}

/* rate figures: per second and Mbit/s with one decimal */
static void rates(u64 packets, u64 bytes, u64 us, u64 *pps, u64 *mbps10)
{
    if (!us) us = 1;
    *pps = packets * 1000000 / us;
    *mbps10 = bytes * 8 * 10 / us;          /* bits/us = Mbit/s */
}

static bool run(void)
{
    static struct net_stack stack;
    struct net_stack *s = &stack;
    char mode[8] = "both";
    u64 size = 1024, seconds = 3, port = 9, rx_port = 5001, rx_wait = 10, lport = 40009;
    cmdline_get("mode", mode, sizeof(mode));
    cmdline_get_u64("size", &size);
    cmdline_get_u64("seconds", &seconds);
    cmdline_get_u64("port", &port);
    cmdline_get_u64("rx_port", &rx_port);
    cmdline_get_u64("rx_wait", &rx_wait);
    cmdline_get_u64("lport", &lport);
    bool do_tx = strcmp(mode, "both") == 0 || strcmp(mode, "tx") == 0;
    bool do_rx = strcmp(mode, "both") == 0 || strcmp(mode, "rx") == 0;
    if (!do_tx && !do_rx) { result_kv("reason=bad-mode"); return false; }
    if (size < 8 || size > UDP_MAX_PAYLOAD) { result_kv("reason=bad-size"); return false; }
    if (!seconds || seconds > 3600) { result_kv("reason=bad-seconds"); return false; }
    if (!port || port > 65535 || !rx_port || rx_port > 65535 || !lport || lport > 65535 ||
        lport == rx_port) {
        result_kv("reason=bad-port");
        return false;
    }
    if (!net_init(s)) { result_kv("reason=%s", s->fail_reason); return false; }
    net_udp_bind(s, (u16)rx_port, on_rx, NULL);
    if (!net_resolve_peer(s, 3000)) { result_kv("reason=arp-timeout"); return false; }
    u64 khz = tsc_khz();
    u64 tx_pps = 0, tx_mbps10 = 0, tx_packets = 0, rx_pps = 0, rx_mbps10 = 0;
    const char *fail = NULL;

    if (do_tx) {
        printf("guest: net-bench tx: %lu-byte datagrams to port %lu for %lu s\n", size, port, seconds);
        u64 start = rdtsc(), end = start + seconds * 1000 * khz, now = start;
        u32 since_poll = 0;
        while ((now = rdtsc()) < end) {
            u8 *p = net_udp_begin(s);
            if (!p) {
                if (net_poll(s) < 0) { fail = s->fail_reason; break; }
                continue;
            }
            *(u64_un *)p = tx_packets;
            memset(p + 8, 0, size - 8);
            net_udp_commit(s, p, (u16)lport, (u16)port, (u32)size);
            tx_packets++;
            if (++since_poll >= 64) {           /* keep answering ARP and ping */
                since_poll = 0;
                if (net_poll(s) < 0) { fail = s->fail_reason; break; }
            }
        }
        net_flush(s);
        u64 us = tsc_to_us(now - start);
        /* let the device finish (up to 1 s) so a following rx phase starts clean */
        u64 t = rdtsc();
        while (nic_tx_pending(s->nic) && rdtsc() - t < 1000 * khz && !fail)
            if (net_poll(s) < 0) fail = s->fail_reason;
        rates(tx_packets, tx_packets * size, us, &tx_pps, &tx_mbps10);
        printf("guest: net-bench tx: %lu datagrams in %lu us: %lu pps, %lu.%lu Mbit/s\n",
               tx_packets, us, tx_pps, tx_mbps10 / 10, tx_mbps10 % 10);
    }

    if (do_rx && !fail) {
        char msg[96];
        snprintf(msg, sizeof(msg), "BHNET-RX-START seconds=%lu size=%lu port=%lu\n", seconds, size,
                 rx_port);
        printf("guest: net-bench rx: waiting up to %lu s for datagrams to port %lu\n", rx_wait, rx_port);
        R.end_tsc = seconds * 1000 * khz;
        R.counting = true;
        u64 t0 = rdtsc(), last_req = 0, wait = rx_wait * 1000 * khz, half = 500 * khz;
        bool first = true;
        while (!R.started) {
            u64 now = rdtsc();
            if (now - t0 >= wait) break;
            if (first || now - last_req >= half) {
                first = false;
                last_req = now;
                send_text(s, (u16)rx_port, (u16)rx_port, msg);
            }
            if (net_poll(s) < 0) { fail = s->fail_reason; break; }
        }
        if (R.started) {
            while (rdtsc() < R.end_tsc)
                if (net_poll(s) < 0) { fail = s->fail_reason; break; }
            R.counting = false;
            for (int i = 0; i < 3; i++) send_text(s, (u16)rx_port, (u16)rx_port, "BHNET-RX-STOP\n");
            rates(R.packets, R.bytes, seconds * 1000000, &rx_pps, &rx_mbps10);
            u64 offered = R.max_seq - R.first_seq + 1;
            printf("guest: net-bench rx: %lu datagrams (%lu bytes) in %lu s: %lu pps, %lu.%lu Mbit/s; "
                   "sequence numbers span %lu (%lu not seen)\n",
                   R.packets, R.bytes, seconds, rx_pps, rx_mbps10 / 10, rx_mbps10 % 10, offered,
                   offered > R.packets ? offered - R.packets : 0);
            /* drain what is still coming */
            u64 t = rdtsc();
            while (rdtsc() - t < 200 * khz) net_poll(s);
        } else if (!fail) {
            fail = "no-rx-traffic";
            printf("guest: net-bench rx: nothing arrived on port %lu in %lu s\n", rx_port, rx_wait);
        }
    }
    net_print_stats(s);
    result_kv("tx_pps=%lu tx_mbps=%lu.%lu rx_pps=%lu rx_mbps=%lu.%lu tx_packets=%lu rx_packets=%lu",
              tx_pps, tx_mbps10 / 10, tx_mbps10 % 10, rx_pps, rx_mbps10 / 10, rx_mbps10 % 10,
              tx_packets, R.packets);
    result_kv("mode=%s size=%lu seconds=%lu rx_not_seen=%lu malformed=%lu link_down_seen=%lu "
              "pings_answered=%lu tx_notifies=%lu rx_notifies=%lu",
              mode, size, seconds,
              R.started && R.max_seq - R.first_seq + 1 > R.packets ? R.max_seq - R.first_seq + 1 - R.packets : 0,
              s->st.malformed, s->nic->link_down_seen, s->st.pings_answered, s->nic->tx_regs,
              s->nic->rx_regs);
    net_result_nic(s);
    if (fail) result_kv("reason=%s", fail);
    return !fail && (!do_tx || tx_packets > 0) && (!do_rx || R.packets > 0);
}
WORKLOAD("net-bench", run);
