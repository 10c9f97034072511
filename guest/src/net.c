/* Tiny polled network stack: Ethernet, ARP, IPv4, ICMP echo, UDP. See net.h
 * and guest/README.md ("Network stack"). */
#include "net.h"
#include "cmdline.h"
#include "lib.h"
#include "timer.h"
#include "workload.h"
#include "x86.h"

typedef u16 __attribute__((aligned(1), may_alias)) u16_un;
typedef u32 __attribute__((aligned(1), may_alias)) u32_un;

static const u8 bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

u64 inet_csum_add(u64 sum, const void *data, u32 len)
{
    const u8 *b = data;
    while (len >= 16) {
        sum += (u64)*(const u32_un *)b + *(const u32_un *)(b + 4) +
               *(const u32_un *)(b + 8) + *(const u32_un *)(b + 12);
        b += 16;
        len -= 16;
    }
    while (len >= 4) {
        sum += *(const u32_un *)b;
        b += 4;
        len -= 4;
    }
    if (len >= 2) {
        sum += *(const u16_un *)b;
        b += 2;
        len -= 2;
    }
    if (len) sum += *b;      /* little-endian: the odd byte is the word's first byte */
    return sum;
}

/* Pseudo-header sum for UDP (src, dst as they sit in the IP header). */
static u64 udp_pseudo(const u8 *ip, u16 udp_len)
{
    return (u64)*(const u32_un *)(ip + 12) + *(const u32_un *)(ip + 16) +
           __builtin_bswap16(17) + __builtin_bswap16(udp_len);
}

bool net_parse_ip(const char *str, u32 *out)
{
    u32 ip = 0;
    size_t len = strlen(str), i = 0;
    for (int part = 0; part < 4; part++) {
        u64 v;
        size_t j = i;
        while (j < len && str[j] >= '0' && str[j] <= '9') j++;
        if (j == i || j - i > 3 || !parse_u64(str + i, j - i, &v, false) || v > 255) return false;
        ip = (ip << 8) | (u32)v;
        i = j;
        if (part < 3) {
            if (i >= len || str[i] != '.') return false;
            i++;
        }
    }
    if (i != len) return false;
    *out = ip;
    return true;
}

static void fmt_ip(char *buf, size_t size, u32 ip)
{
    snprintf(buf, size, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

/* Ethernet + IPv4 header in a tx buffer; returns the IP payload pointer. */
static u8 *build_ip(struct net_stack *s, u8 *f, const u8 *dst_mac, u32 dst_ip, u8 proto, u32 payload_len)
{
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, s->nic->mac, 6);
    put_be16(f + 12, ETH_P_IP);
    u8 *ip = f + ETH_HLEN;
    ip[0] = 0x45;
    ip[1] = 0;
    put_be16(ip + 2, (u16)(IP_HLEN + payload_len));
    put_be16(ip + 4, s->ip_id++);
    put_be16(ip + 6, 0x4000);              /* DF, offset 0 */
    ip[8] = 64;
    ip[9] = proto;
    *(u16_un *)(ip + 10) = 0;
    put_be32(ip + 12, s->ip);
    put_be32(ip + 16, dst_ip);
    *(u16_un *)(ip + 10) = inet_csum_fold(inet_csum_add(0, ip, IP_HLEN));
    return ip + IP_HLEN;
}

static void send_arp(struct net_stack *s, u16 op, const u8 *eth_dst, const u8 *tha, u32 tpa)
{
    u8 *f = nic_tx_begin(s->nic);
    if (!f) {
        s->st.tx_no_buf++;
        return;
    }
    memcpy(f, eth_dst, 6);
    memcpy(f + 6, s->nic->mac, 6);
    put_be16(f + 12, ETH_P_ARP);
    u8 *a = f + ETH_HLEN;
    put_be16(a, 1);
    put_be16(a + 2, ETH_P_IP);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, op);
    memcpy(a + 8, s->nic->mac, 6);
    put_be32(a + 14, s->ip);
    memcpy(a + 18, tha, 6);
    put_be32(a + 24, tpa);
    nic_tx_commit(s->nic, f, ETH_HLEN + 28);
}

static void rx_arp(struct net_stack *s, const u8 *a, u32 len)
{
    s->st.arp_rx++;
    if (len < 28 || be16(a) != 1 || be16(a + 2) != ETH_P_IP || a[4] != 6 || a[5] != 4 ||
        (a[8] & 1)) {
        s->st.bad_arp++;
        s->st.malformed++;
        return;
    }
    u16 op = be16(a + 6);
    u32 spa = be32(a + 14), tpa = be32(a + 24);
    if (spa == s->peer_ip && (op == 1 || op == 2)) {
        if (!s->peer_known || memcmp(s->peer_mac, a + 8, 6) != 0) {
            memcpy(s->peer_mac, a + 8, 6);
            s->peer_known = true;
        }
    }
    if (op == 1 && tpa == s->ip) {
        send_arp(s, 2, a + 8, a + 8, spa);
        s->st.arp_replies_sent++;
    }
}

static void rx_icmp(struct net_stack *s, const u8 *eth, const u8 *ip, const u8 *icmp, u32 len)
{
    if (len < 8 || inet_csum_fold(inet_csum_add(0, icmp, len)) != 0) {
        s->st.bad_icmp++;
        s->st.malformed++;
        return;
    }
    if (icmp[0] != 8 || icmp[1] != 0) {
        s->st.icmp_other++;
        return;
    }
    u8 *f = nic_tx_begin(s->nic);
    if (!f) {
        s->st.tx_no_buf++;
        return;
    }
    /* Reply to the sender's MAC directly (no ARP lookup needed). */
    u8 *p = build_ip(s, f, eth + 6, be32(ip + 12), 1, len);
    memcpy(p, icmp, len);
    p[0] = 0;                                  /* echo reply */
    *(u16_un *)(p + 2) = 0;
    *(u16_un *)(p + 2) = inet_csum_fold(inet_csum_add(0, p, len));
    nic_tx_commit(s->nic, f, ETH_HLEN + IP_HLEN + len);
    s->st.pings_answered++;
}

static void rx_udp(struct net_stack *s, const u8 *ip, const u8 *u, u32 len)
{
    u16 ulen = len >= UDP_HLEN ? be16(u + 4) : 0;
    if (len < UDP_HLEN || ulen < UDP_HLEN || ulen > len) {
        s->st.bad_udp_len++;
        s->st.malformed++;
        return;
    }
    if (*(const u16_un *)(u + 6) != 0 &&
        inet_csum_fold(inet_csum_add(udp_pseudo(ip, ulen), u, ulen)) != 0) {
        s->st.bad_udp_csum++;
        s->st.malformed++;
        return;
    }
    u16 dport = be16(u + 2);
    s->st.udp_rx++;
    for (int i = 0; i < s->nudp; i++) {
        if (s->udp[i].port == dport) {
            s->udp[i].fn(s->udp[i].ctx, be32(ip + 12), be16(u), dport, u + UDP_HLEN, ulen - UDP_HLEN);
            return;
        }
    }
    s->st.udp_no_port++;
}

static void rx_ip(struct net_stack *s, const u8 *eth, const u8 *ip, u32 len)
{
    if (len < IP_HLEN || (ip[0] >> 4) != 4 || (ip[0] & 15) < 5) {
        if (len < IP_HLEN) s->st.bad_ip_len++;
        else s->st.bad_ip_hdr++;
        s->st.malformed++;
        return;
    }
    u32 ihl = (ip[0] & 15) * 4u, tot = be16(ip + 2);
    if (ihl > len || tot < ihl || tot > len || tot > 1500) {
        s->st.bad_ip_len++;
        s->st.malformed++;
        return;
    }
    if (inet_csum_fold(inet_csum_add(0, ip, ihl)) != 0) {
        s->st.bad_ip_csum++;
        s->st.malformed++;
        return;
    }
    if (be16(ip + 6) & 0x3fff) {               /* MF or a fragment offset */
        s->st.ip_fragments++;
        return;
    }
    if (be32(ip + 16) != s->ip) {
        s->st.not_for_us++;
        return;
    }
    switch (ip[9]) {
    case 1:  rx_icmp(s, eth, ip, ip + ihl, tot - ihl); break;
    case 17: rx_udp(s, ip, ip + ihl, tot - ihl); break;
    default: s->st.other_proto++; break;
    }
}

static void rx_frame(void *ctx, u8 *f, u32 len)
{
    struct net_stack *s = ctx;
    s->st.rx_frames++;
    if (len < ETH_HLEN) {
        s->st.runt++;
        s->st.malformed++;
        return;
    }
    if (memcmp(f, s->nic->mac, 6) != 0 && memcmp(f, bcast_mac, 6) != 0) {
        s->st.not_for_us++;
        return;
    }
    switch (be16(f + 12)) {
    case ETH_P_ARP: rx_arp(s, f + ETH_HLEN, len - ETH_HLEN); break;
    case ETH_P_IP:  rx_ip(s, f, f + ETH_HLEN, len - ETH_HLEN); break;
    default:        s->st.other_ethertype++; break;
    }
}

int net_poll(struct net_stack *s)
{
    struct nic *n = s->nic;
    int k = nic_rx_poll(n, rx_frame, s, 64);
    nic_tx_reap(n);
    nic_tx_kick(n);
    if (!nic_service(n)) {
        s->fail_reason = n->fail_reason;
        return -1;
    }
    return k;
}

bool net_init(struct net_stack *s)
{
    memset(s, 0, sizeof(*s));
    char buf[32];
    s->ip = 0x0a000002;
    s->peer_ip = 0x0a000001;
    if (cmdline_get("ip", buf, sizeof(buf)) && !net_parse_ip(buf, &s->ip)) {
        printf("guest: bad ip=%s\n", buf);
        s->fail_reason = "bad-ip";
        return false;
    }
    if (cmdline_get("peer", buf, sizeof(buf)) && !net_parse_ip(buf, &s->peer_ip)) {
        printf("guest: bad peer=%s\n", buf);
        s->fail_reason = "bad-ip";
        return false;
    }
    if ((s->ip >> 8) != (s->peer_ip >> 8) || s->ip == s->peer_ip) {
        printf("guest: ip and peer must be different addresses in one /24\n");
        s->fail_reason = "bad-ip";
        return false;
    }
    s->ip_id = 1;
    tsc_khz();
    u64 which = 0;
    cmdline_get_u64("net_dev", &which);
    char model[16] = "virtio";
    cmdline_get("nic", model, sizeof(model));
    bool opened;
    if (strcmp(model, "virtio") == 0) {
        opened = net_dev_open(&s->dev.virtio, (int)which);
    } else if (strcmp(model, "rtl8139") == 0) {
        opened = rtl8139_open(&s->dev.rtl8139, (int)which);
    } else {
        printf("guest: unknown nic=%s (virtio or rtl8139)\n", model);
        s->fail_reason = "bad-nic";
        return false;
    }
    if (!opened) {
        s->fail_reason = s->dev.nic.fail_reason;
        return false;
    }
    s->nic = &s->dev.nic;
    if (!s->nic->link_up) {
        printf("guest: net: waiting up to 5 s for link up (nic=%s)\n", s->nic->model);
        u64 start = rdtsc(), lim = us_to_tsc(5000000);
        while (!s->nic->link_up && rdtsc() - start < lim) {
            if (net_poll(s) < 0) return false;
            cpu_relax();
        }
        if (!s->nic->link_up) {
            s->fail_reason = "link-down";
            return false;
        }
    }
    char a[20], b[20];
    fmt_ip(a, sizeof(a), s->ip);
    fmt_ip(b, sizeof(b), s->peer_ip);
    printf("guest: net: ip %s/24 peer %s\n", a, b);
    return true;
}

bool net_resolve_peer(struct net_stack *s, u64 timeout_ms)
{
    static const u8 zero_mac[6];
    u64 start = rdtsc(), lim = us_to_tsc(timeout_ms * 1000), period = us_to_tsc(200000);
    u64 last = 0;
    bool first = true;
    while (!s->peer_known) {
        u64 now = rdtsc();
        if (now - start >= lim) {
            printf("guest: net: no ARP reply from the peer after %lu ms (%lu requests)\n",
                   timeout_ms, s->st.arp_requests_sent);
            return false;
        }
        if (first || now - last >= period) {
            first = false;
            last = now;
            send_arp(s, 1, bcast_mac, zero_mac, s->peer_ip);
            s->st.arp_requests_sent++;
            net_flush(s);
        }
        if (net_poll(s) < 0) return false;
    }
    printf("guest: net: peer is at %02x:%02x:%02x:%02x:%02x:%02x\n", s->peer_mac[0],
           s->peer_mac[1], s->peer_mac[2], s->peer_mac[3], s->peer_mac[4], s->peer_mac[5]);
    return true;
}

bool net_udp_bind(struct net_stack *s, u16 port, udp_rx_fn fn, void *ctx)
{
    if (s->nudp >= NET_MAX_BINDINGS) return false;
    s->udp[s->nudp].port = port;
    s->udp[s->nudp].fn = fn;
    s->udp[s->nudp].ctx = ctx;
    s->nudp++;
    return true;
}

u8 *net_udp_begin(struct net_stack *s)
{
    u8 *f = nic_tx_begin(s->nic);
    return f ? f + ETH_HLEN + IP_HLEN + UDP_HLEN : NULL;
}

void net_udp_abort(struct net_stack *s, u8 *payload)
{
    nic_tx_cancel(s->nic, payload - (ETH_HLEN + IP_HLEN + UDP_HLEN));
}

void net_udp_commit(struct net_stack *s, u8 *payload, u16 src_port, u16 dst_port, u32 len)
{
    if (len > UDP_MAX_PAYLOAD) len = UDP_MAX_PAYLOAD;
    u8 *f = payload - (ETH_HLEN + IP_HLEN + UDP_HLEN);
    u16 ulen = (u16)(UDP_HLEN + len);
    u8 *u = build_ip(s, f, s->peer_mac, s->peer_ip, 17, ulen);
    put_be16(u, src_port);
    put_be16(u + 2, dst_port);
    put_be16(u + 4, ulen);
    *(u16_un *)(u + 6) = 0;
    u16 c = inet_csum_fold(inet_csum_add(udp_pseudo(f + ETH_HLEN, ulen), u, ulen));
    *(u16_un *)(u + 6) = c ? c : 0xffff;
    nic_tx_commit(s->nic, f, ETH_HLEN + IP_HLEN + ulen);
    s->st.udp_tx++;
}

void net_print_stats(struct net_stack *s)
{
    const struct net_stats *t = &s->st;
    struct nic *n = s->nic;
    printf("guest: net: rx_frames=%lu tx_frames=%lu malformed=%lu (runt=%lu bad_arp=%lu bad_ip_hdr=%lu "
           "bad_ip_len=%lu bad_ip_csum=%lu bad_icmp=%lu bad_udp_len=%lu bad_udp_csum=%lu) "
           "fragments=%lu not_for_us=%lu other_ethertype=%lu other_proto=%lu icmp_other=%lu "
           "udp_no_port=%lu arp_rx=%lu arp_req_sent=%lu arp_replies=%lu pings=%lu tx_no_buf=%lu "
           "nic=%s rx_regs=%lu tx_regs=%lu other_regs=%lu setup_regs=%lu\n",
           t->rx_frames, n->tx_frames, t->malformed, t->runt, t->bad_arp, t->bad_ip_hdr,
           t->bad_ip_len, t->bad_ip_csum, t->bad_icmp, t->bad_udp_len, t->bad_udp_csum,
           t->ip_fragments, t->not_for_us, t->other_ethertype, t->other_proto, t->icmp_other,
           t->udp_no_port, t->arp_rx, t->arp_requests_sent, t->arp_replies_sent, t->pings_answered,
           t->tx_no_buf, n->model, n->rx_regs, n->tx_regs, n->other_regs, n->setup_regs);
    n->ops->print_stats(n);
}

/* a/b with three decimals, as "x.yyy" */
static void ratio(char *buf, size_t size, u64 a, u64 b)
{
    u64 m = b ? (a * 1000 + b / 2) / b : 0;
    snprintf(buf, size, "%lu.%03lu", m / 1000, m % 1000);
}

void net_result_nic(struct net_stack *s)
{
    struct nic *n = s->nic;
    if (!n) return;
    char rx[24], tx[24];
    ratio(rx, sizeof(rx), n->rx_regs, n->rx_frames);
    ratio(tx, sizeof(tx), n->tx_regs, n->tx_frames);
    result_kv("nic=%s regs_per_rx=%s regs_per_tx=%s other_regs=%lu", n->model, rx, tx, n->other_regs);
}
