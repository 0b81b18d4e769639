// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The node's IPv4 masquerade addresses as from-netdev asks about them: is
 * a packet's destination one of them, before the endpoint lookup? A reply
 * to a masqueraded flow then goes to the reverse SNAT first and skips the
 * endpoint lookup it would miss (the node address is no pod), the largest
 * share of what that path cost beyond a plain delivery after the NAT
 * lookup itself; a packet for a pod pays one load and one compare.
 *
 * Cilium compiles the device's masquerade address into bpf_host
 * (IPV4_MASQUERADE) and compares with it; here one object serves every
 * interface and learns the addresses at run time (podnet_snat_addrs), so
 * the loader mirrors them into this direct-mapped table in a data section
 * of its own (a global: one load, no map lookup). Each slot holds one
 * address, chosen by the xor of its four bytes; of two addresses in one
 * slot the loader keeps one. The table is only a hint: an address not in
 * it takes from-netdev's other order (endpoint lookup, then the reverse
 * SNAT when no pod has it), and a stale one costs that packet a NAT
 * lookup, so a missing or stale slot changes no verdict.
 *
 * IPv6 keeps the other order: the check's registers made from-netdev's
 * frame 32 bytes larger, past the 512-byte combined stack beside
 * netdev_rev_snat6.
 */
#ifndef PODNET_SNAT_NODE_H
#define PODNET_SNAT_NODE_H

#include "common.h"
#include "snat_config.h"

#define SNAT_NODE_SLOTS 16

struct snat_node_table {
	__be32 v4[SNAT_NODE_SLOTS];
};

/* Written by the loader (snat_node.rs) whenever the masquerade addresses
 * change; all zeros (no address) at load. */
struct snat_node_table SNAT_NODE SEC(".data.snat_node");

/* The xor of an address's four bytes, whatever the byte order. */
static __always_inline __u32 snat_node_slot(__u32 w)
{
	w ^= w >> 16;
	w ^= w >> 8;
	return w & (SNAT_NODE_SLOTS - 1);
}

/* Whether `daddr` is an IPv4 masquerade address (by the table; false with
 * IPv4 masquerade off, whose code the verifier removes). */
static __always_inline bool snat_is_node4(__be32 daddr)
{
	return snat_enabled(false) && SNAT_NODE.v4[snat_node_slot(daddr)] == daddr;
}

#endif /* PODNET_SNAT_NODE_H */
