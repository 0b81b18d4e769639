// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * Socket load balancing: cgroup programs that translate a service frontend
 * to a backend when a socket of the cgroup connects or sends, instead of
 * per packet. What the node itself (or a pod, when its cgroup is given)
 * sends then leaves with the backend's address: no DNAT, no service
 * conntrack entries, no reverse NAT of replies in the tc programs. The
 * frontend is shown back to the application where it reads the peer:
 * recvmsg (unconnected UDP) and getpeername.
 *
 * Facts from Cilium's bpf/bpf_sock.c and bpf/lib/sock.h (read, not
 * copied): the programs and their sections (cgroup/connect4, sendmsg4,
 * recvmsg4, getpeername4 and the v6 ones), the backend slot chosen at
 * random for TCP and by the socket cookie for UDP (so that one UDP socket
 * keeps its backend across sendmsg calls), the reverse map
 * cilium_lb{4,6}_reverse_sk (an LRU hash of socket cookie, backend address
 * and port -> frontend address, port and rev_nat_index; updated only when
 * the value changed), a stale reverse entry (its service gone or
 * renumbered) deleted at the reverse lookup, external IPs not translated,
 * IPv4-mapped IPv6 addresses translated as IPv4, and a 4-byte access for
 * user_port.
 *
 * Included by datapath.bpf.c (one compilation unit); the loader attaches
 * these programs to a cgroup on request (Datapath::attach_socket_lb).
 */
#ifndef PODNET_BPF_SOCK_H
#define PODNET_BPF_SOCK_H

#include "lib/common.h"
#include "lib/maps.h"
#include "lib/lb.h"

#define SYS_REJECT 0
#define SYS_PROCEED 1

#ifndef ENOENT
#define ENOENT 2
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif
#ifndef ENXIO
#define ENXIO 6
#endif

struct ipv4_revnat_tuple {
	__u64 cookie;
	__be32 address;
	__be16 port;
	__u16 pad;
};

struct ipv4_revnat_entry {
	__be32 address;
	__be16 port;
	__u16 rev_nat_index;
};

struct ipv6_revnat_tuple {
	__u64 cookie;
	__u32 address[4];
	__be16 port;
	__u16 pad;
};

struct ipv6_revnat_entry {
	__u32 address[4];
	__be16 port;
	__u16 rev_nat_index;
};

_Static_assert(sizeof(struct ipv4_revnat_tuple) == 16, "ipv4_revnat_tuple");
_Static_assert(sizeof(struct ipv4_revnat_entry) == 8, "ipv4_revnat_entry");
_Static_assert(sizeof(struct ipv6_revnat_tuple) == 32, "ipv6_revnat_tuple");
_Static_assert(sizeof(struct ipv6_revnat_entry) == 20, "ipv6_revnat_entry");

/* The loader sizes these as the conntrack "any" maps. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_revnat_tuple);
	__type(value, struct ipv4_revnat_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb4_reverse_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv6_revnat_tuple);
	__type(value, struct ipv6_revnat_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lb6_reverse_sk SEC(".maps");

/* A service connect/send that found no backend, counted as the per-packet
 * path counts it (no bytes: nothing was sent). */
static __always_inline void sock_count_no_service(void)
{
	__u32 idx = (((__u32)-DROP_NO_SERVICE & 0xff) << 2) | METRIC_EGRESS;
	struct metrics_value *v = bpf_map_lookup_elem(&podnet_metrics, &idx);

	if (v)
		v->count += 1;
}

/* Remembers, for this socket, that backend `be`:`be_port` stands for
 * frontend `fe`:`fe_port` of service `rev_nat_index` (network order as
 * stored in the service), so that recvmsg/getpeername show the frontend. */
static __always_inline int sock_update_revnat(struct bpf_sock_addr *ctx, bool v6,
					      const __u32 *be, __be16 be_port, const __u32 *fe,
					      __be16 fe_port, __be16 rev_nat_index)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (v6) {
		struct ipv6_revnat_tuple key;
		struct ipv6_revnat_entry val = { .port = fe_port, .rev_nat_index = rev_nat_index };
		struct ipv6_revnat_entry *old;

		/* The key has 4 bytes of tail padding: zeroed, as they are hashed. */
		__builtin_memset(&key, 0, sizeof(key));
		key.cookie = cookie;
		key.port = be_port;
		__builtin_memcpy(key.address, be, 16);
		__builtin_memcpy(val.address, fe, 16);
		old = bpf_map_lookup_elem(&cilium_lb6_reverse_sk, &key);
		if (old && old->port == val.port && old->rev_nat_index == val.rev_nat_index &&
		    old->address[0] == val.address[0] && old->address[1] == val.address[1] &&
		    old->address[2] == val.address[2] && old->address[3] == val.address[3])
			return 0;
		return bpf_map_update_elem(&cilium_lb6_reverse_sk, &key, &val, BPF_ANY);
	}
	struct ipv4_revnat_tuple key = { .cookie = cookie, .address = be[0], .port = be_port };
	struct ipv4_revnat_entry val = { .address = fe[0],
					 .port = fe_port,
					 .rev_nat_index = rev_nat_index };
	struct ipv4_revnat_entry *old = bpf_map_lookup_elem(&cilium_lb4_reverse_sk, &key);

	if (old && old->address == val.address && old->port == val.port &&
	    old->rev_nat_index == val.rev_nat_index)
		return 0;
	return bpf_map_update_elem(&cilium_lb4_reverse_sk, &key, &val, BPF_ANY);
}

/* Translates frontend `addr`:`*port` (IPv6 when `v6`, else addr[0]) of a
 * TCP or UDP socket to a backend, in place. 0 translated, -ENXIO not a
 * frontend (nothing done), -ENOENT a frontend without a usable backend,
 * -ENOMEM the reverse entry could not be stored. */
static __always_inline int sock_xlate_fwd(struct bpf_sock_addr *ctx, bool v6, __u32 *addr,
					  __be16 *port, __u32 proto)
{
	struct lb4_service *svc, *slot;
	struct lb_state st = {};
	union lb_key k;
	__u32 sel;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -ENXIO;
	svc = lb_lookup_service(v6, &k, addr, *port, proto);
	/* External IPs are not taken over for the node's own sockets (Cilium:
	 * a service could otherwise capture a public address). */
	if (!svc || (svc->flags & SVC_FLAG_EXTERNAL_IP))
		return -ENXIO;
	if (!svc->count) {
		sock_count_no_service();
		return -ENOENT;
	}
	sel = proto == IPPROTO_TCP ? bpf_get_prandom_u32() : (__u32)bpf_get_socket_cookie(ctx);
	if (v6)
		k.k6.backend_slot = (__u16)(sel % svc->count) + 1;
	else
		k.k4.backend_slot = (__u16)(sel % svc->count) + 1;
	slot = lb_lookup(v6, &k);
	if (!slot || !slot->backend_id || !lb_backend(v6, slot->backend_id, false, &st)) {
		sock_count_no_service();
		return -ENOENT;
	}
	if (sock_update_revnat(ctx, v6, st.addr, st.port, addr, *port, svc->rev_nat_index) < 0)
		return -ENOMEM;
	if (v6)
		__builtin_memcpy(addr, st.addr, 16);
	else
		addr[0] = st.addr[0];
	*port = st.port;
	return 0;
}

/* The frontend a backend `addr`:`*port` stands for on this socket, in
 * place. 0 translated, -ENXIO none, -ENOENT a stale entry (removed). */
static __always_inline int sock_xlate_rev(struct bpf_sock_addr *ctx, bool v6, __u32 *addr,
					  __be16 *port, __u32 proto)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct lb4_service *svc;
	union lb_key k;

	if (v6) {
		struct ipv6_revnat_tuple key;
		struct ipv6_revnat_entry *val;

		__builtin_memset(&key, 0, sizeof(key));
		key.cookie = cookie;
		key.port = *port;
		__builtin_memcpy(key.address, addr, 16);
		val = bpf_map_lookup_elem(&cilium_lb6_reverse_sk, &key);
		if (!val)
			return -ENXIO;
		svc = lb_lookup_service(true, &k, val->address, val->port, proto);
		if (!svc || svc->rev_nat_index != val->rev_nat_index) {
			bpf_map_delete_elem(&cilium_lb6_reverse_sk, &key);
			return -ENOENT;
		}
		__builtin_memcpy(addr, val->address, 16);
		*port = val->port;
		return 0;
	}
	struct ipv4_revnat_tuple key = { .cookie = cookie, .address = addr[0], .port = *port };
	struct ipv4_revnat_entry *val = bpf_map_lookup_elem(&cilium_lb4_reverse_sk, &key);
	__u32 fe[4] = {};

	if (!val)
		return -ENXIO;
	fe[0] = val->address;
	svc = lb_lookup_service(false, &k, fe, val->port, proto);
	if (!svc || svc->rev_nat_index != val->rev_nat_index) {
		bpf_map_delete_elem(&cilium_lb4_reverse_sk, &key);
		return -ENOENT;
	}
	addr[0] = val->address;
	*port = val->port;
	return 0;
}

/* The destination of a v4 hook's context, and back. user_port holds the
 * port in network order in its low 16 bits; it is read as 4 bytes. */
static __always_inline void sock4_get(struct bpf_sock_addr *ctx, __u32 *addr, __be16 *port)
{
	volatile __u32 p = ctx->user_port;

	addr[0] = ctx->user_ip4;
	*port = (__be16)p;
}

static __always_inline void sock4_set(struct bpf_sock_addr *ctx, const __u32 *addr, __be16 port)
{
	ctx->user_ip4 = addr[0];
	ctx->user_port = (__u32)port;
}

static __always_inline void sock6_get(struct bpf_sock_addr *ctx, __u32 *addr, __be16 *port)
{
	volatile __u32 p = ctx->user_port;

	/* One 4-byte load per word (the verifier allows no wider one). */
	addr[0] = ctx->user_ip6[0];
	asm volatile("" ::: "memory");
	addr[1] = ctx->user_ip6[1];
	asm volatile("" ::: "memory");
	addr[2] = ctx->user_ip6[2];
	asm volatile("" ::: "memory");
	addr[3] = ctx->user_ip6[3];
	*port = (__be16)p;
}

static __always_inline void sock6_set(struct bpf_sock_addr *ctx, const __u32 *addr, __be16 port)
{
	ctx->user_ip6[0] = addr[0];
	asm volatile("" ::: "memory");
	ctx->user_ip6[1] = addr[1];
	asm volatile("" ::: "memory");
	ctx->user_ip6[2] = addr[2];
	asm volatile("" ::: "memory");
	ctx->user_ip6[3] = addr[3];
	ctx->user_port = (__u32)port;
}

/* ::ffff:a.b.c.d (a dual-stack socket reaching an IPv4 address). */
static __always_inline bool is_v4_mapped(const __u32 *addr)
{
	return addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0x0000ffff);
}

/* The IPv6 hooks: an IPv4-mapped destination is translated as IPv4. */
static __always_inline int sock6_xlate(struct bpf_sock_addr *ctx, bool fwd)
{
	__u32 addr[4];
	__be16 port;
	int ret;

	sock6_get(ctx, addr, &port);
	if (is_v4_mapped(addr)) {
		__u32 a4[4] = { addr[3] };

		ret = fwd ? sock_xlate_fwd(ctx, false, a4, &port, ctx->protocol) :
			    sock_xlate_rev(ctx, false, a4, &port, ctx->protocol);
		addr[3] = a4[0];
	} else {
		ret = fwd ? sock_xlate_fwd(ctx, true, addr, &port, ctx->protocol) :
			    sock_xlate_rev(ctx, true, addr, &port, ctx->protocol);
	}
	if (ret == 0)
		sock6_set(ctx, addr, port);
	return ret;
}

static __always_inline int sock4_xlate(struct bpf_sock_addr *ctx, bool fwd)
{
	__u32 addr[4] = {};
	__be16 port;
	int ret;

	sock4_get(ctx, addr, &port);
	ret = fwd ? sock_xlate_fwd(ctx, false, addr, &port, ctx->protocol) :
		    sock_xlate_rev(ctx, false, addr, &port, ctx->protocol);
	if (ret == 0)
		sock4_set(ctx, addr, port);
	return ret;
}

/* connect() and sendmsg() to a frontend without a backend fail (EPERM),
 * as a packet to it would be dropped; anything else proceeds, translated
 * or not. recvmsg and getpeername always proceed. */
SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock4_xlate(ctx, true) == -ENOENT ? SYS_REJECT : SYS_PROCEED;
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock4_xlate(ctx, true) == -ENOENT ? SYS_REJECT : SYS_PROCEED;
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	sock4_xlate(ctx, false);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	sock4_xlate(ctx, false);
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int sock6_connect(struct bpf_sock_addr *ctx)
{
	return sock6_xlate(ctx, true) == -ENOENT ? SYS_REJECT : SYS_PROCEED;
}

SEC("cgroup/sendmsg6")
int sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock6_xlate(ctx, true) == -ENOENT ? SYS_REJECT : SYS_PROCEED;
}

SEC("cgroup/recvmsg6")
int sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	sock6_xlate(ctx, false);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int sock6_getpeername(struct bpf_sock_addr *ctx)
{
	sock6_xlate(ctx, false);
	return SYS_PROCEED;
}

#endif /* PODNET_BPF_SOCK_H */
