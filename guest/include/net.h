/* A tiny polled network stack, ring 3: Ethernet, ARP (answers requests for
 * our address, resolves the peer with retries), IPv4 (no fragments, header
 * checksum checked, only our address accepted), ICMP echo reply, UDP with
 * checksums. One peer (the host side of the link), /24. Malformed frames
 * are counted and dropped. It runs over any NIC driver behind struct nic
 * (nic.h): virtio-net or the RTL8139, chosen with nic=. */
#ifndef BULKHEAD_NET_H
#define BULKHEAD_NET_H
#include "nic.h"
#include "rtl8139.h"
#include "types.h"
#include "virtio_net.h"

#define ETH_HLEN        14
#define IP_HLEN         20
#define UDP_HLEN        8
#define UDP_MAX_PAYLOAD (1500 - IP_HLEN - UDP_HLEN)     /* 1472 */
#define ETH_P_IP        0x0800
#define ETH_P_ARP       0x0806

struct net_stats {
    u64 rx_frames;
    /* malformed: counted in `malformed` as well */
    u64 runt;            /* shorter than an Ethernet header */
    u64 bad_arp;         /* short, wrong hardware/protocol type or sizes, multicast sender */
    u64 bad_ip_hdr;      /* version != 4, IHL < 5 */
    u64 bad_ip_len;      /* header or total length beyond the frame, total > 1500 */
    u64 bad_ip_csum;
    u64 bad_icmp;        /* shorter than 8 bytes or bad checksum */
    u64 bad_udp_len;     /* UDP length < 8 or beyond the IP payload */
    u64 bad_udp_csum;
    u64 malformed;
    /* dropped, but not malformed */
    u64 ip_fragments;
    u64 not_for_us;      /* other destination MAC or IP */
    u64 other_ethertype;
    u64 other_proto;     /* IP protocols other than ICMP and UDP */
    u64 icmp_other;      /* ICMP other than echo request */
    u64 udp_no_port;
    /* traffic */
    u64 arp_requests_sent, arp_replies_sent, arp_rx;
    u64 pings_answered;
    u64 udp_rx, udp_tx;
    u64 tx_no_buf;       /* replies dropped because every tx buffer was in flight */
};

typedef void (*udp_rx_fn)(void *ctx, u32 src_ip, u16 src_port, u16 dst_port,
                          const u8 *payload, u32 len);

#define NET_MAX_BINDINGS 4

struct net_stack {
    struct nic *nic;                 /* &dev.nic once net_init succeeded */
    union {                          /* the driver's state; each starts with a struct nic */
        struct nic nic;
        struct net_dev virtio;
        struct rtl8139 rtl8139;
    } dev;
    u32 ip, peer_ip;                 /* host byte order */
    u8 peer_mac[6];
    bool peer_known;
    u16 ip_id;
    struct { u16 port; udp_rx_fn fn; void *ctx; } udp[NET_MAX_BINDINGS];
    int nudp;
    struct net_stats st;
    const char *fail_reason;
};

/* Open the `net_dev=`-th (default 0) NIC of the kind nic= names (virtio,
 * the default, or rtl8139), read ip= and peer= (defaults 10.0.0.2 and
 * 10.0.0.1, /24) and wait up to 5 s for link up. */
bool net_init(struct net_stack *s);
/* Receive up to a batch of frames, answer ARP and ping, deliver UDP, reap
 * tx completions, kick what the replies queued, do the driver's
 * housekeeping. Returns frames processed, or -1 once the device failed. */
int net_poll(struct net_stack *s);
/* Resolve the peer's MAC: an ARP request every 200 ms until a reply (or a
 * request from the peer) arrives or timeout_ms passes. */
bool net_resolve_peer(struct net_stack *s, u64 timeout_ms);
bool net_udp_bind(struct net_stack *s, u16 port, udp_rx_fn fn, void *ctx);

/* Zero-copy UDP send to the peer: net_udp_begin gives a buffer for up to
 * UDP_MAX_PAYLOAD payload bytes (NULL if every tx buffer is in flight; poll
 * and retry), net_udp_commit fills in the headers and checksums and queues
 * it. Frames become visible to the device in batches of 32 or on
 * net_flush. */
u8 *net_udp_begin(struct net_stack *s);
void net_udp_commit(struct net_stack *s, u8 *payload, u16 src_port, u16 dst_port, u32 len);
void net_udp_abort(struct net_stack *s, u8 *payload);
static inline void net_flush(struct net_stack *s) { nic_tx_kick(s->nic); }

/* One `guest: net: ...` line with every counter, then the driver's line. */
void net_print_stats(struct net_stack *s);
/* Append the NIC keys to the result line: nic=, the register accesses per
 * received and per transmitted frame, and the other ones. */
void net_result_nic(struct net_stack *s);
/* Parse a dotted quad into host byte order. */
bool net_parse_ip(const char *str, u32 *out);

static inline u16 be16(const u8 *p) { return (u16)((p[0] << 8) | p[1]); }
static inline u32 be32(const u8 *p) { return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3]; }
static inline void put_be16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }
static inline void put_be32(u8 *p, u32 v) { p[0] = (u8)(v >> 24); p[1] = (u8)(v >> 16); p[2] = (u8)(v >> 8); p[3] = (u8)v; }

/* Internet checksum: partial sum over native-order words, then fold. */
u64 inet_csum_add(u64 sum, const void *data, u32 len);
static inline u16 inet_csum_fold(u64 sum)
{
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}
#endif
