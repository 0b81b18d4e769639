// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Constants and map layouts shared by every concern: tuple and entry flags,
 * drop reasons, identities, endpoint flags, and the byte layouts of the CT,
 * endpoint, ipcache, policy, metrics and clock maps' keys and values.
 *
 * Facts taken from Cilium (read, not copied):
 *  - bpf/lib/common.h: struct ipv4_ct_tuple / ipv6_ct_tuple / ct_entry layout,
 *    TUPLE_F_* flags, endpoint_key / endpoint_info / ipcache_key /
 *    remote_endpoint_info shapes, METRIC_INGRESS / METRIC_EGRESS.
 *  - bpf/lib/drop_reasons.h (drop.h in older trees): DROP_* numbers; the
 *    metrics reason is -DROP_*, 0 is "forwarded".
 *  - node_config.h of Cilium's tests: CT_CONNECTION_LIFETIME_TCP 21600,
 *    CT_CONNECTION_LIFETIME_NONTCP 60, CT_SYN_TIMEOUT 60, CT_CLOSE_TIMEOUT 10,
 *    CT_REPORT_INTERVAL 5.
 */
#ifndef PODNET_COMMON_H
#define PODNET_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Entries in a map (Linux 6.6, kernel/bpf/map_iter.c); weak: optional. The
 * struct is the kernel's, only ever passed by pointer. */
struct bpf_map {
	int unused;
} __attribute__((preserve_access_index));
extern __s64 bpf_map_sum_elem_count(const struct bpf_map *map) __ksym __weak;

/* ICMP types (linux/icmp.h and linux/icmpv6.h pull in libc headers). */
#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* ---- constants ---------------------------------------------------------- */

#define TUPLE_F_OUT 0
#define TUPLE_F_IN 1
#define TUPLE_F_RELATED 2
#define TUPLE_F_SERVICE 4

/* ct_entry.flags bits, in Cilium's bit-field order. */
#define CT_F_RX_CLOSING (1 << 0)
#define CT_F_TX_CLOSING (1 << 1)
#define CT_F_NAT46 (1 << 2)
#define CT_F_LB_LOOPBACK (1 << 3)
#define CT_F_SEEN_NON_SYN (1 << 4)
#define CT_F_NODE_PORT (1 << 5)
#define CT_F_PROXY_REDIRECT (1 << 6)
#define CT_F_DSR_INTERNAL (1 << 7)
#define CT_F_FROM_L7LB (1 << 8)
#define CT_F_FROM_TUNNEL (1 << 10)

#define CT_CONNECTION_LIFETIME_TCP 21600
#define CT_CONNECTION_LIFETIME_NONTCP 60
#define CT_SYN_TIMEOUT 60
#define CT_CLOSE_TIMEOUT 10
#define CT_REPORT_INTERVAL 5

enum { CT_EGRESS = 0, CT_INGRESS = 1, CT_SERVICE = 2 };
enum { CT_NEW = 0, CT_ESTABLISHED, CT_REPLY, CT_RELATED, CT_REOPENED };
enum { ACTION_UNSPEC = 0, ACTION_CREATE, ACTION_CLOSE };

#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04

#define METRIC_INGRESS 1
#define METRIC_EGRESS 2

#define REASON_FORWARDED 0
#define DROP_INVALID_SIP -132
#define DROP_POLICY -133
#define DROP_INVALID -134
#define DROP_CT_INVALID_HDR -135
#define DROP_CT_UNKNOWN_PROTO -137
#define DROP_CT_CREATE_FAILED -155
#define DROP_INVALID_EXTHDR -156
#define DROP_FRAG_NOSUPPORT -157
#define DROP_WRITE_ERROR -141
#define DROP_NO_SERVICE -158
#define DROP_MISSED_TAIL_CALL -140
#define DROP_POLICY_DENY -181

/* Not drops: counted in podnet_metrics for a new connection whose CT entry
 * made the kernel evict entries from a full map, one reason per map
 * (podnet's own numbers, beyond Cilium's drop reasons). A creation that
 * failed is the drop DROP_CT_CREATE_FAILED. */
#define REASON_CT_EVICTED_TCP4 250 /* cilium_ct4_global */
#define REASON_CT_EVICTED_ANY4 251 /* cilium_ct_any4_global */
#define REASON_CT_EVICTED_TCP6 252 /* cilium_ct6_global */
#define REASON_CT_EVICTED_ANY6 253 /* cilium_ct_any6_global */

#ifndef EEXIST
#define EEXIST 17
#endif

#define IDENTITY_WORLD 2

/* Identity carried from from-container / from-netdev to to-container in
 * skb->mark, as Cilium's MARK_MAGIC_IDENTITY does. */
#define MARK_MAGIC_MASK 0x0F00
#define MARK_MAGIC_IDENTITY 0x0F00

#define ENDPOINT_KEY_IPV4 1
#define ENDPOINT_KEY_IPV6 2

/* endpoint_info.flags */
#define ENDPOINT_F_HOST 0x1
#define ENDPOINT_F_INGRESS_ENFORCE 0x100
#define ENDPOINT_F_EGRESS_ENFORCE 0x200

#define NSEC_PER_SEC 1000000000ULL

/* The program a packet is handled by. */
enum hook { HOOK_FROM_CONTAINER, HOOK_TO_CONTAINER, HOOK_FROM_NETDEV };

/* ---- map layouts -------------------------------------------------------- */

struct ipv4_ct_tuple {
	__be32 daddr;
	__be32 saddr;
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

struct ipv6_ct_tuple {
	__u32 daddr[4];
	__u32 saddr[4];
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
} __attribute__((packed));

struct ct_entry {
	__u64 reserved0;
	__u64 backend_id;
	__u64 packets;
	__u64 bytes;
	__u32 lifetime;
	__u16 flags;
	__be16 rev_nat_index;
	__u16 ifindex;
	__u8 tx_flags_seen;
	__u8 rx_flags_seen;
	__u32 src_sec_id;
	__u32 last_tx_report;
	__u32 last_rx_report;
};

_Static_assert(sizeof(struct ipv4_ct_tuple) == 14, "ipv4_ct_tuple");
_Static_assert(sizeof(struct ipv6_ct_tuple) == 38, "ipv6_ct_tuple");
_Static_assert(sizeof(struct ct_entry) == 56, "ct_entry");

struct endpoint_key {
	__u32 ip[4];
	__u8 family;
	__u8 key;
	__u16 cluster_id;
};

struct endpoint_info {
	__u32 ifindex;
	__u16 unused;
	__u16 lxc_id;
	__u32 flags;
	__u8 mac[6];
	__u16 pad_mac;
	__u8 node_mac[6];
	__u16 pad_node_mac;
	__u32 sec_id;
	__u32 parent_ifindex;
	__u32 pad[3];
};

_Static_assert(sizeof(struct endpoint_key) == 20, "endpoint_key");
_Static_assert(sizeof(struct endpoint_info) == 48, "endpoint_info");

struct ipcache_key {
	__u32 prefixlen; /* 32 + address prefix length */
	__u16 cluster_id;
	__u8 pad1;
	__u8 family;
	__u32 ip[4];
};

struct remote_endpoint_info {
	__u32 sec_identity;
	__u32 tunnel_endpoint[4];
	__u16 pad;
	__u8 key;
	__u8 flags;
};

_Static_assert(sizeof(struct ipcache_key) == 24, "ipcache_key");
_Static_assert(sizeof(struct remote_endpoint_info) == 24, "remote_endpoint_info");

struct policy_key {
	__u32 sec_label;
	__be16 dport;
	__u8 protocol;
	__u8 egress;
	__u16 endpoint_id;
	__u16 pad;
};

struct policy_entry {
	__u8 deny;
	__u8 pad0;
	__u16 pad1;
	__u32 pad2;
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct policy_key) == 12, "policy_key");
_Static_assert(sizeof(struct policy_entry) == 24, "policy_entry");

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

#define METRICS_SLOTS 1024 /* reason (u8) << 2 | direction (2 bits) */

/* The last second read from the clock on this CPU, and the tick (jiffies)
 * it was read in. Not pinned: a cache. */
struct mono_cache {
	__u64 jiffies;
	__u32 sec;
	__u32 pad;
};

/* Load balancing, Cilium's layouts (bpf/lib/common.h, bpf/lib/lb.h and
 * pkg/maps/lbmap/ of cilium/cilium 1.17; read, not copied). A service is
 * one entry per frontend (address, port, protocol) at backend_slot 0 with
 * `count` backend slots, and one entry per slot 1..count whose backend_id
 * names the backend in the backends map. rev_nat_index is in network
 * order everywhere (service, reverse NAT key, CT entry), as Cilium's agent
 * writes it; backend ids are in host order. */
#define SVC_FLAG_EXTERNAL_IP (1 << 0)
#define SVC_FLAG_NODEPORT (1 << 1)
#define SVC_FLAG_EXT_LOCAL_SCOPE (1 << 2)
#define SVC_FLAG_HOSTPORT (1 << 3)
#define SVC_FLAG_AFFINITY (1 << 4)
#define SVC_FLAG_LOADBALANCER (1 << 5)
#define SVC_FLAG_ROUTABLE (1 << 6)
#define SVC_FLAG_SOURCE_RANGE (1 << 7)

/* lb{4,6}_backend.flags */
#define BE_STATE_ACTIVE 0
#define BE_STATE_TERMINATING 1
#define BE_STATE_QUARANTINED 2
#define BE_STATE_MAINTENANCE 3

#define LB_LOOKUP_SCOPE_EXT 0

struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};

struct lb6_key {
	__u32 address[4];
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};

/* lb4_service and lb6_service are the same. */
struct lb4_service {
	union {
		__u32 backend_id; /* slots 1..count */
		__u32 affinity_timeout; /* slot 0 */
		__u32 l7_lb_proxy_port;
	};
	__u16 count;
	__be16 rev_nat_index;
	__u8 flags;
	__u8 flags2;
	__u16 qcount;
};
#define lb6_service lb4_service

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

struct lb6_backend {
	__u32 address[4];
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u16 cluster_id;
	__u8 zone;
	__u8 pad;
};

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
} __attribute__((packed));

struct lb6_reverse_nat {
	__u32 address[4];
	__be16 port;
} __attribute__((packed));

_Static_assert(sizeof(struct lb4_key) == 12, "lb4_key");
_Static_assert(sizeof(struct lb6_key) == 24, "lb6_key");
_Static_assert(sizeof(struct lb4_service) == 12, "lb4_service");
_Static_assert(sizeof(struct lb4_backend) == 12, "lb4_backend");
_Static_assert(sizeof(struct lb6_backend) == 24, "lb6_backend");
_Static_assert(sizeof(struct lb4_reverse_nat) == 6, "lb4_reverse_nat");
_Static_assert(sizeof(struct lb6_reverse_nat) == 18, "lb6_reverse_nat");

/* IP fragments (frag.h; Cilium 1.17 bpf/lib/ipv4.h, and the IPv6 twin of
 * later Cilium's bpf/lib/ipv6.h): the datagram a fragment belongs to ->
 * the L4 ports of its first fragment, in network order. */
struct ipv4_frag_id {
	__be32 daddr;
	__be32 saddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
} __attribute__((packed));

struct ipv4_frag_l4ports {
	__be16 sport;
	__be16 dport;
} __attribute__((packed));

struct ipv6_frag_id {
	__be32 id; /* the fragment header's identification */
	__u8 proto; /* the fragment header's next header */
	__u8 pad[3];
	__u32 saddr[4];
	__u32 daddr[4];
} __attribute__((packed));

struct ipv6_frag_l4ports {
	__be16 sport;
	__be16 dport;
} __attribute__((packed));

_Static_assert(sizeof(struct ipv4_frag_id) == 12, "ipv4_frag_id");
_Static_assert(sizeof(struct ipv4_frag_l4ports) == 4, "ipv4_frag_l4ports");
_Static_assert(sizeof(struct ipv6_frag_id) == 40, "ipv6_frag_id");
_Static_assert(sizeof(struct ipv6_frag_l4ports) == 4, "ipv6_frag_l4ports");

#endif /* PODNET_COMMON_H */
