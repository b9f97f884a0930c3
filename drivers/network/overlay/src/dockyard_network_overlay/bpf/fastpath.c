// SPDX-License-Identifier: GPL-2.0
/* dockyard overlay fast path: VXLAN encapsulation and decapsulation in tc programs in front of
 * the kernel's VXLAN device, which stays the path for everything not handled here: ARP and
 * other broadcast or multicast frames, destinations not in the maps, GSO aggregates, frames to
 * or from held addresses, IP options and fragments, outer routes without a resolved neighbour.
 *
 * egress  (tcx egress of a VXLAN device, in the engine's namespace; a macvlan child's frames
 *         are queued on it): a unicast frame for a known remote MAC gets its outer
 *         Ethernet/IPv4/UDP/VXLAN headers here and goes straight to the underlay device
 *         (bpf_fib_lookup for the outer route and neighbour, then bpf_redirect), skipping
 *         vxlan_xmit and the second pass through the host's IP output and netfilter.
 * ingress (tcx ingress of the underlay device): VXLAN over UDP 4789 to this host's tunnel
 *         address with the VNI of a local network is decapsulated here and redirected into the
 *         VXLAN device's receive path (its macvlan children's rx handler delivers it), skipping
 *         IP input, netfilter, UDP, vxlan_rcv and the GRO cell.
 *
 * The maps are made by the loader (dockyard_network_overlay.fastpath, which relocates the
 * ld_imm64 references of the symbols below to its own map fds); their layouts are mirrored
 * there. Built with: clang -O2 -target bpf -c fastpath.c (only the kernel's UAPI headers).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/types.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))

/* the helpers used, by their stable numbers in enum bpf_func_id */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len,
				   __u64 flags) = (void *)BPF_FUNC_skb_store_bytes;
static __s64 (*bpf_csum_diff)(__be32 *from, __u32 from_size, __be32 *to, __u32 to_size,
			      __wsum seed) = (void *)BPF_FUNC_csum_diff;
static long (*bpf_skb_adjust_room)(struct __sk_buff *skb, __s32 len_diff, __u32 mode,
				   __u64 flags) = (void *)BPF_FUNC_skb_adjust_room;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
			      __u32 flags) = (void *)BPF_FUNC_fib_lookup;

#define htons(x) ((__be16)__builtin_bswap16(x))
#define htonl(x) ((__be32)__builtin_bswap32(x))
#define ntohs(x) __builtin_bswap16(x)
#define ntohl(x) __builtin_bswap32(x)

#define VXLAN_PORT 4789
#define VXLAN_FLAG_VNI 0x08000000
#define PACKET_HOST 0

/* The maps: the loader makes them (types and sizes in fastpath.py); these are placeholders
 * whose relocations it resolves. */
char dy_peers[1] SEC("maps"); /* hash (VXLAN ifindex, inner destination MAC) -> struct peer */
char dy_vnis[1] SEC("maps");  /* hash VNI -> struct local_net */
char dy_held[1] SEC("maps");  /* hash inner IPv4 address -> count: take the kernel path */
char dy_stats[1] SEC("maps"); /* per-CPU array of __u64: STAT_* */

struct peer_key {
	__u32 ifindex; /* the VXLAN device */
	__u8 mac[6];
	__u16 pad;
};

struct peer {
	__be32 remote; /* the remote tunnel endpoint (underlay IPv4) */
	__be32 local;  /* this host's */
	__u32 vni;
	__u32 oif; /* the underlay device holding ``local`` */
};

struct local_net {
	__u32 ifindex; /* the VXLAN device to deliver into */
	__be32 local;  /* the address it listens on */
};

enum { STAT_ENCAP, STAT_DECAP, STAT_MAX };

struct vxlanhdr {
	__be32 flags;
	__be32 vni;
};

struct encap { /* what goes between the outer and the inner Ethernet header */
	struct iphdr ip;
	struct udphdr udp;
	struct vxlanhdr vx;
};

#define ENCAP_LEN ((__u32)(sizeof(struct encap) + ETH_HLEN)) /* 50 */

INLINE void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&dy_stats, &which);

	if (n)
		*n += 1;
}

/* Whether the IPv4 packet after the Ethernet header at ``off`` is to or from a held address. */
INLINE int held(void *data, void *data_end, __u32 off)
{
	struct ethhdr *eth = data + off;
	struct iphdr *ip = data + off + ETH_HLEN;

	if ((void *)(ip + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
		return 0;
	return bpf_map_lookup_elem(&dy_held, &ip->saddr) || bpf_map_lookup_elem(&dy_held, &ip->daddr);
}

/* The UDP source port: a hash of the inner addresses, in the range the kernel device uses. */
INLINE __u16 source_port(void *data, void *data_end)
{
	struct iphdr *ip = data + ETH_HLEN;
	__u32 h = 0;

	if ((void *)(ip + 1) <= data_end && ((struct ethhdr *)data)->h_proto == htons(ETH_P_IP)) {
		h = ip->saddr ^ ip->daddr ^ ip->protocol;
		h ^= h >> 16;
		h *= 0x9e3779b1u;
	}
	return 32768 + h % (61000 - 32768);
}

INLINE __u16 csum_fold(__s64 sum)
{
	__u32 csum = (__u32)sum;

	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)~csum;
}

SEC("tc")
int dy_vxlan_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct peer_key key = {};
	struct ethhdr inner, outer;
	struct encap h = {};
	struct peer *p;
	__u32 len;

	if ((void *)(eth + 1) > data_end || (eth->h_dest[0] & 1)) /* broadcast/multicast */
		return TC_ACT_OK;
	if (skb->gso_size) /* aggregates (any GSO skb) keep the kernel's segmentation and offloads */
		return TC_ACT_OK;
	key.ifindex = skb->ifindex;
	__builtin_memcpy(key.mac, eth->h_dest, 6);
	p = bpf_map_lookup_elem(&dy_peers, &key);
	if (!p || held(data, data_end, 0))
		return TC_ACT_OK;
	len = skb->len; /* the inner frame */

	/* the outer route and next hop's MAC; anything but a plain success (no neighbour yet,
	 * too big for the underlay's MTU, ...) goes to the kernel device, which handles it */
	fib.family = 2; /* AF_INET */
	fib.l4_protocol = IPPROTO_UDP;
	fib.tot_len = len + sizeof(struct encap);
	fib.ipv4_src = p->local;
	fib.ipv4_dst = p->remote;
	fib.ifindex = p->oif;
	if (bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT) != BPF_FIB_LKUP_RET_SUCCESS)
		return TC_ACT_OK;

	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_UDP;
	h.ip.tot_len = htons(len + sizeof(struct encap));
	h.ip.saddr = p->local;
	h.ip.daddr = p->remote;
	h.ip.check = csum_fold(bpf_csum_diff(0, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));
	h.udp.source = htons(source_port(data, data_end));
	h.udp.dest = htons(VXLAN_PORT);
	h.udp.len = htons(len + sizeof(struct udphdr) + sizeof(struct vxlanhdr));
	h.udp.check = 0; /* RFC 7348: zero over IPv4, as the kernel device is set up (udp_csum off) */
	h.vx.flags = htonl(VXLAN_FLAG_VNI);
	h.vx.vni = htonl(p->vni << 8);
	__builtin_memcpy(&inner, eth, ETH_HLEN);
	__builtin_memcpy(outer.h_dest, fib.dmac, 6);
	__builtin_memcpy(outer.h_source, fib.smac, 6);
	outer.h_proto = htons(ETH_P_IP);

	/* room after the Ethernet header for the outer IPv4/UDP/VXLAN headers and the inner
	 * Ethernet header; the old Ethernet header becomes the outer one */
	if (bpf_skb_adjust_room(skb, ENCAP_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
					BPF_F_ADJ_ROOM_ENCAP_L2_ETH | BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)))
		return TC_ACT_OK; /* nothing changed: the kernel's path */
	if (bpf_skb_store_bytes(skb, 0, &outer, ETH_HLEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + sizeof(h), &inner, ETH_HLEN, 0))
		return TC_ACT_SHOT;
	count(STAT_ENCAP);
	return bpf_redirect(fib.ifindex, 0);
}

SEC("tc")
int dy_vxlan_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct encap *h = data + ETH_HLEN;
	struct ethhdr *inner = data + ETH_HLEN + sizeof(struct encap);
	struct local_net *n;
	struct ethhdr copy;
	__u32 vni, ifindex;

	if ((void *)(inner + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != htons(ETH_P_IP) || h->ip.version != 4 || h->ip.ihl != 5 ||
	    h->ip.protocol != IPPROTO_UDP || (h->ip.frag_off & htons(0x3fff)) ||
	    h->udp.dest != htons(VXLAN_PORT) || h->vx.flags != htonl(VXLAN_FLAG_VNI))
		return TC_ACT_OK;
	if (skb->gso_size || skb->pkt_type != PACKET_HOST)
		return TC_ACT_OK;
	if (ntohs(h->udp.len) != skb->len - ETH_HLEN - sizeof(struct iphdr))
		return TC_ACT_OK; /* padding or truncation: let the kernel judge */
	vni = ntohl(h->vx.vni) >> 8;
	n = bpf_map_lookup_elem(&dy_vnis, &vni);
	if (!n || n->local != h->ip.daddr)
		return TC_ACT_OK;
	if ((inner->h_dest[0] & 1) || held(data, data_end, ETH_HLEN + sizeof(struct encap)))
		return TC_ACT_OK;
	ifindex = n->ifindex;
	__builtin_memcpy(&copy, inner, ETH_HLEN);
	/* drop the outer IPv4/UDP/VXLAN and the inner Ethernet header's room after the outer
	 * Ethernet header, then put the inner Ethernet header in its place */
	if (bpf_skb_adjust_room(skb, -(__s32)ENCAP_LEN, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, 0, &copy, ETH_HLEN, 0))
		return TC_ACT_SHOT;
	count(STAT_DECAP);
	return bpf_redirect(ifindex, BPF_F_INGRESS);
}

char _license[] SEC("license") = "GPL";
