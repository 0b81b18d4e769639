// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * The masquerade options (see snat.h), apart so that the service code can
 * ask whether NodePort to a remote backend is on.
 */
#ifndef PODNET_SNAT_CONFIG_H
#define PODNET_SNAT_CONFIG_H

#include "common.h"

#define SNAT_MAX_CIDRS 4

/* The loader's masquerade options, in a .rodata section of their own:
 * code for a family that is off is removed by the verifier. Every field a
 * u32; addresses and masks in network order. */
struct pn_snat_config {
	__u32 enable_v4;
	__u32 enable_v6;
	__u32 min_port; /* host order */
	__u32 max_port;
	__u32 n_cidr4;
	__u32 n_cidr6;
	__u32 cidr4[SNAT_MAX_CIDRS][2]; /* address, mask */
	__u32 cidr6[SNAT_MAX_CIDRS][8]; /* address[4], mask[4] */
	/* NodePort to a backend on another node: SNAT to the node address. */
	__u32 nodeport_snat;
};

const volatile struct pn_snat_config SNAT_CONFIG SEC(".rodata.snat") = {};

static __always_inline bool snat_enabled(bool v6)
{
	return v6 ? SNAT_CONFIG.enable_v6 : SNAT_CONFIG.enable_v4;
}

#endif /* PODNET_SNAT_CONFIG_H */
