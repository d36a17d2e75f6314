// SPDX-License-Identifier: MIT
/*
 * net/dht_node.c - net/dht.c on a UDP socket and the event loop.
 *
 * One receive is always posted on the socket; sends go through a fixed
 * pool of datagram slots (when all are in flight a datagram is dropped and
 * counted: UDP may lose it anyway, and the engine's timeouts cover it). The
 * engine's timer is one ev_timer re-armed at the deadline dht_tick() asks
 * for. LAN discovery: every node sends a small announcement (magic, node
 * id, DHT port) to a multicast group on each interface every few seconds
 * at start and every 30 s after; a node that hears one pings the sender.
 */
#define LOG_SUBSYS "dht"
#include "net/dht_node.h"
#include "common/log.h"
#include "common/rbuf.h"
#include "common/tm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEND_SLOTS 32
/* Lines a remote peer or a busy ring can trigger: at most 5 per 10 s. */
#define NODE_RL(n, fn, ...)                           \
	do {                                          \
		if (log_rl_allow(&(n)->rl, 5, 10000)) \
			fn(__VA_ARGS__);              \
	} while (0)
#define LAN_MAGIC 0x50324c41U /* "P2LA" */
#define LAN_LEN (4 + 1 + DHT_ID_LEN + 2)
#define SAVE_EVERY_MS (5 * 60 * 1000)

struct slot {
	struct ev_op op;
	struct dht_node *n;
	struct sockaddr_storage to;
	struct iovec iov;
	struct msghdr msg;
	uint8_t buf[DHT_MSG_MAX];
	bool busy;
};

struct lan_rx {
	struct ev_op op;
	struct sockaddr_storage from;
	struct iovec iov;
	struct msghdr msg;
	uint8_t buf[256];
};

struct dht_node {
	struct ev_loop *loop;
	struct dht *d;
	uint8_t id[DHT_ID_LEN];
	int fd;
	struct dht_addr self;
	char listen_str[64];
	char *table_path;

	struct ev_op rx_op;
	struct sockaddr_storage rx_from;
	struct iovec rx_iov;
	struct msghdr rx_msg;
	uint8_t rx_buf[DHT_MSG_MAX + 1];
	bool rx_armed;

	struct slot *slots;
	struct ev_timer timer;
	uint64_t armed_at;
	uint64_t next_save;

	int lan_fd;
	struct lan_rx lan;
	struct ev_timer lan_timer;
	unsigned lan_sent;
	uint64_t lan_heard;
	bool lan_rx_armed;
	uint64_t dropped_sends;
	struct log_rl rl;
	bool closing;
};

/* ---- addresses ---- */

void dht_addr_to_sockaddr(const struct dht_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == 4) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(a->port);
		memcpy(&s4->sin_addr, a->ip, 4);
		*len = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a->port);
		memcpy(&s6->sin6_addr, a->ip, 16);
		*len = sizeof(*s6);
	}
}

bool dht_addr_from_sockaddr(const struct sockaddr_storage *ss, struct dht_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		a->family = 4;
		a->port = ntohs(s4->sin_port);
		memcpy(a->ip, &s4->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			a->family = 4;
			memcpy(a->ip, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			a->family = 6;
			memcpy(a->ip, &s6->sin6_addr, 16);
		}
		a->port = ntohs(s6->sin6_port);
		return true;
	}
	return false;
}

int dht_addr_parse(const char *s, struct dht_addr *ret)
{
	char host[128];
	const char *colon;
	char *end;
	unsigned long port;
	size_t hl;

	memset(ret, 0, sizeof(*ret));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		hl = (size_t)(rb - s - 1);
		colon = rb + 1;
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
	} else {
		if (!(colon = strrchr(s, ':')))
			return -EINVAL;
		hl = (size_t)(colon - s);
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, hl);
	}
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port > 65535)
		return -EINVAL;
	ret->port = (uint16_t)port;
	if (inet_pton(AF_INET, host, ret->ip) == 1)
		ret->family = 4;
	else if (inet_pton(AF_INET6, host, ret->ip) == 1)
		ret->family = 6;
	else
		return -EINVAL;
	return 0;
}

void dht_addr_str(const struct dht_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->ip, ip, sizeof(ip));
	if (a->family == 4)
		snprintf(buf, len, "%s:%u", ip, a->port);
	else
		snprintf(buf, len, "[%s]:%u", ip, a->port);
}

/* ---- timer ---- */

static void on_timer(struct ev_timer *t);

static void rearm(struct dht_node *n, uint64_t deadline)
{
	uint64_t now = tm_mono_ms();

	if (n->closing)
		return;
	if (ev_timer_armed(&n->timer) && n->armed_at <= deadline)
		return;
	ev_timer_stop(n->loop, &n->timer);
	n->armed_at = deadline;
	if (ev_timer_start(n->loop, &n->timer, deadline > now ? deadline - now : 0) < 0)
		NODE_RL(n, log_error, "cannot arm the DHT timer");
}

static void save_table(struct dht_node *n);

static void on_timer(struct ev_timer *t)
{
	struct dht_node *n = container_of(t, struct dht_node, timer);
	uint64_t now = tm_mono_ms();

	n->armed_at = UINT64_MAX;
	rearm(n, dht_tick(n->d, now));
	if (now >= n->next_save) {
		n->next_save = now + SAVE_EVERY_MS;
		save_table(n);
	}
}

void dht_node_kick(struct dht_node *n)
{
	rearm(n, tm_mono_ms());
}

uint64_t dht_node_now(const struct dht_node *n)
{
	(void)n;
	return tm_mono_ms();
}

/* ---- sending ---- */

static void on_sent(struct ev_op *op, int32_t res)
{
	struct slot *s = container_of(op, struct slot, op);

	if (res < 0 && res != -ECANCELED)
		log_debug("sending a DHT datagram: %s", strerror(-res));
	s->busy = false;
}

static void node_send(void *arg, const struct dht_addr *to, const uint8_t *buf, size_t len)
{
	struct dht_node *n = arg;
	struct slot *s = NULL;
	socklen_t sl;

	if (n->closing || len > DHT_MSG_MAX || (to->family == 6 && n->self.family == 4))
		return;
	for (size_t i = 0; i < SEND_SLOTS; i++)
		if (!n->slots[i].busy) {
			s = &n->slots[i];
			break;
		}
	if (!s) {
		n->dropped_sends++;
		return;
	}
	memcpy(s->buf, buf, len);
	if (n->self.family == 6 && to->family == 4) {
		/* A dual-stack socket reaches IPv4 peers as mapped addresses. */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&s->to;

		memset(&s->to, 0, sizeof(s->to));
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(to->port);
		s6->sin6_addr.s6_addr[10] = 0xff;
		s6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(s6->sin6_addr.s6_addr + 12, to->ip, 4);
		sl = sizeof(*s6);
	} else {
		dht_addr_to_sockaddr(to, &s->to, &sl);
	}
	s->iov.iov_base = s->buf;
	s->iov.iov_len = len;
	memset(&s->msg, 0, sizeof(s->msg));
	s->msg.msg_name = &s->to;
	s->msg.msg_namelen = sl;
	s->msg.msg_iov = &s->iov;
	s->msg.msg_iovlen = 1;
	ev_op_init(&s->op, on_sent);
	if (ev_sendmsg(n->loop, &s->op, n->fd, &s->msg, 0) < 0) {
		n->dropped_sends++;
		return;
	}
	s->busy = true;
}

/* ---- receiving ---- */

static void arm_rx(struct dht_node *n);

static void on_rx(struct ev_op *op, int32_t res)
{
	struct dht_node *n = container_of(op, struct dht_node, rx_op);
	struct dht_addr from;

	n->rx_armed = false;
	if (n->closing)
		return;
	if (res >= 0 && (size_t)res <= DHT_MSG_MAX && !(n->rx_msg.msg_flags & MSG_TRUNC) &&
	    dht_addr_from_sockaddr(&n->rx_from, &from)) {
		uint64_t now = tm_mono_ms();

		dht_input(n->d, now, &from, n->rx_buf, (size_t)res);
		rearm(n, dht_tick(n->d, now));
	} else if (res < 0 && res != -ECANCELED) {
		NODE_RL(n, log_warn, "receiving on the DHT socket: %s", strerror(-res));
	}
	arm_rx(n);
}

static void arm_rx(struct dht_node *n)
{
	if (n->rx_armed || n->closing)
		return;
	n->rx_iov.iov_base = n->rx_buf;
	n->rx_iov.iov_len = sizeof(n->rx_buf);
	memset(&n->rx_msg, 0, sizeof(n->rx_msg));
	n->rx_msg.msg_name = &n->rx_from;
	n->rx_msg.msg_namelen = sizeof(n->rx_from);
	n->rx_msg.msg_iov = &n->rx_iov;
	n->rx_msg.msg_iovlen = 1;
	ev_op_init(&n->rx_op, on_rx);
	if (ev_recvmsg(n->loop, &n->rx_op, n->fd, &n->rx_msg, 0) < 0) {
		NODE_RL(n, log_error, "cannot post a DHT receive (ring full)");
		return;
	}
	n->rx_armed = true;
}

/* ---- LAN discovery ---- */

static void lan_announce(struct dht_node *n)
{
	uint8_t pkt[LAN_LEN];
	struct ifaddrs *ifs, *i;
	struct sockaddr_in grp = { .sin_family = AF_INET, .sin_port = htons(LAN_PORT) };

	be32_put(pkt, LAN_MAGIC);
	pkt[4] = 1;
	memcpy(pkt + 5, n->id, DHT_ID_LEN);
	pkt[5 + DHT_ID_LEN] = (uint8_t)(n->self.port >> 8);
	pkt[6 + DHT_ID_LEN] = (uint8_t)n->self.port;
	inet_pton(AF_INET, LAN_GROUP, &grp.sin_addr);
	if (getifaddrs(&ifs) < 0)
		return;
	/* On every multicast-capable IPv4 interface (a host may sit on several LANs). */
	for (i = ifs; i; i = i->ifa_next) {
		struct in_addr via;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP) ||
		    !(i->ifa_flags & IFF_MULTICAST) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		via = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		if (setsockopt(n->lan_fd, IPPROTO_IP, IP_MULTICAST_IF, &via, sizeof(via)) == 0)
			(void)sendto(n->lan_fd, pkt, sizeof(pkt), MSG_DONTWAIT,
				     (struct sockaddr *)&grp, sizeof(grp));
	}
	freeifaddrs(ifs);
}

static void lan_join_all(struct dht_node *n)
{
	struct ifaddrs *ifs, *i;

	if (getifaddrs(&ifs) < 0)
		return;
	for (i = ifs; i; i = i->ifa_next) {
		struct ip_mreq mr;

		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    !(i->ifa_flags & IFF_MULTICAST) || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		inet_pton(AF_INET, LAN_GROUP, &mr.imr_multiaddr);
		mr.imr_interface = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		(void)setsockopt(n->lan_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr));
	}
	freeifaddrs(ifs);
}

static void on_lan_timer(struct ev_timer *t)
{
	struct dht_node *n = container_of(t, struct dht_node, lan_timer);

	/* Often while joining (so a new LAN forms within seconds), then rarely. */
	if (n->lan_sent % 10 == 0)
		lan_join_all(n); /* interfaces come and go */
	lan_announce(n);
	n->lan_sent++;
	if (ev_timer_start(n->loop, &n->lan_timer, n->lan_sent < 6 ? 1000 : 30000) < 0)
		NODE_RL(n, log_error, "cannot arm the LAN discovery timer");
}

static void arm_lan_rx(struct dht_node *n);

static void on_lan_rx(struct ev_op *op, int32_t res)
{
	struct dht_node *n = container_of(op, struct dht_node, lan.op);
	struct dht_addr from;

	n->lan_rx_armed = false;
	if (n->closing)
		return;
	if (res == LAN_LEN && be32_get(n->lan.buf) == LAN_MAGIC && n->lan.buf[4] == 1 &&
	    memcmp(n->lan.buf + 5, n->id, DHT_ID_LEN) &&
	    dht_addr_from_sockaddr(&n->lan.from, &from)) {
		from.port =
		    (uint16_t)(n->lan.buf[5 + DHT_ID_LEN] << 8 | n->lan.buf[6 + DHT_ID_LEN]);
		if (from.port) {
			n->lan_heard++;
			dht_ping(n->d, tm_mono_ms(), &from);
			dht_node_kick(n);
		}
	}
	arm_lan_rx(n);
}

static void arm_lan_rx(struct dht_node *n)
{
	n->lan.iov.iov_base = n->lan.buf;
	n->lan.iov.iov_len = sizeof(n->lan.buf);
	memset(&n->lan.msg, 0, sizeof(n->lan.msg));
	n->lan.msg.msg_name = &n->lan.from;
	n->lan.msg.msg_namelen = sizeof(n->lan.from);
	n->lan.msg.msg_iov = &n->lan.iov;
	n->lan.msg.msg_iovlen = 1;
	ev_op_init(&n->lan.op, on_lan_rx);
	if (ev_recvmsg(n->loop, &n->lan.op, n->lan_fd, &n->lan.msg, 0) < 0)
		NODE_RL(n, log_error, "cannot post a LAN receive (ring full)");
	else
		n->lan_rx_armed = true;
}

static int lan_open(struct dht_node *n)
{
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(LAN_PORT) };
	int one = 1, ttl = 1, loop = 1;

	if ((n->lan_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	(void)setsockopt(n->lan_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	(void)setsockopt(n->lan_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	(void)setsockopt(n->lan_fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
	(void)setsockopt(n->lan_fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop));
	if (bind(n->lan_fd, (struct sockaddr *)&any, sizeof(any)) < 0) {
		int rc = -errno;

		close(n->lan_fd);
		n->lan_fd = -1;
		return rc;
	}
	lan_join_all(n);
	arm_lan_rx(n);
	ev_timer_init(&n->lan_timer, on_lan_timer);
	if (ev_timer_start(n->loop, &n->lan_timer, 100) < 0)
		return -EBUSY;
	return 0;
}

/* ---- the routing table file ---- */

static void save_table(struct dht_node *n)
{
	uint8_t *buf;
	char tmp[4200];
	long len;
	int fd;

	if (!n->table_path || !(buf = malloc(256 * DHT_K * 60 + 16)))
		return;
	len = dht_save(n->d, buf, 256 * DHT_K * 60 + 16);
	snprintf(tmp, sizeof(tmp), "%s.tmp", n->table_path);
	if (len > 0 && (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0) {
		bool ok = write(fd, buf, (size_t)len) == len && fsync(fd) == 0;

		close(fd);
		if (!ok || rename(tmp, n->table_path) < 0) {
			NODE_RL(n, log_warn, "cannot save the routing table to %s", n->table_path);
			(void)unlink(tmp);
		}
	}
	free(buf);
}

static void load_table(struct dht_node *n)
{
	uint8_t *buf;
	ssize_t len;
	int fd, count;

	if (!n->table_path || (fd = open(n->table_path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	if (!(buf = malloc(256 * DHT_K * 60 + 17))) {
		close(fd);
		return;
	}
	len = read(fd, buf, 256 * DHT_K * 60 + 17);
	close(fd);
	if (len > 0 && (count = dht_load(n->d, tm_mono_ms(), buf, (size_t)len)) >= 0)
		log_info("rejoining through %d contacts saved in %s", count, n->table_path);
	else if (len > 0)
		log_warn("%s is damaged; ignoring it", n->table_path);
	free(buf);
}

/* ---- life cycle ---- */

static int bind_socket(struct dht_node *n, const struct dht_addr *want, bool fallback)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct dht_addr a = *want;
	int one = 1;

	for (int attempt = 0; attempt < 2; attempt++) {
		int fd = socket(a.family == 4 ? AF_INET : AF_INET6,
				SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		if (fd < 0)
			return -errno;
		if (a.family == 6) {
			int zero = 0;

			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		dht_addr_to_sockaddr(&a, &ss, &sl);
		if (bind(fd, (struct sockaddr *)&ss, sl) == 0) {
			sl = sizeof(ss);
			if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
				dht_addr_from_sockaddr(&ss, &a);
			n->fd = fd;
			n->self = a;
			if (a.family == 6 && !memcmp(a.ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
				n->self.family = 6;
			return 0;
		}
		int err = errno;

		close(fd);
		if (err != EADDRINUSE || !fallback || attempt)
			return -err;
		/* The default port is taken (another node on this machine): any port. */
		a.port = 0;
	}
	return -EADDRINUSE;
}

int dht_node_new(struct ev_loop *loop, const struct dht_node_opts *o, struct dht_node **ret)
{
	struct dht_opts dopts = { 0 };
	struct dht_addr want;
	struct dht_node *n;
	int rc;

	if (o->listen) {
		if (dht_addr_parse(o->listen, &want) < 0) {
			log_error("--listen %s: expected ADDR:PORT, such as 0.0.0.0:7575",
				  o->listen);
			return -EINVAL;
		}
	} else {
		memset(&want, 0, sizeof(want));
		want.family = 4;
		want.port = DHT_NODE_DEFAULT_PORT;
	}
	if (!(n = calloc(1, sizeof(*n))) || !(n->slots = calloc(SEND_SLOTS, sizeof(*n->slots)))) {
		free(n);
		return -ENOMEM;
	}
	n->loop = loop;
	n->fd = n->lan_fd = -1;
	memcpy(n->id, o->id, DHT_ID_LEN);
	if (o->table_path && !(n->table_path = strdup(o->table_path))) {
		rc = -ENOMEM;
		goto err;
	}
	if ((rc = bind_socket(n, &want, !o->listen)) < 0) {
		char s[64];

		dht_addr_str(&want, s, sizeof(s));
		log_error("cannot listen on %s: %s%s", s, strerror(-rc),
			  rc == -EADDRINUSE ? " (another program uses that port: choose another "
					      "with --listen ADDR:PORT)"
					    : "");
		goto err;
	}
	dht_addr_str(&n->self, n->listen_str, sizeof(n->listen_str));
	dopts.id = n->id;
	dopts.send = node_send;
	dopts.send_arg = n;
	dopts.provider_ttl_ms = o->provider_ttl_ms;
	if ((rc = dht_new(&dopts, tm_mono_ms(), &n->d)) < 0)
		goto err;
	ev_timer_init(&n->timer, on_timer);
	n->armed_at = UINT64_MAX;
	n->next_save = tm_mono_ms() + SAVE_EVERY_MS;
	arm_rx(n);
	load_table(n);
	dht_node_kick(n);
	/* A node bound to loopback has no LAN to discover. */
	if (o->lan && !(n->self.family == 4 && n->self.ip[0] == 127) && (rc = lan_open(n)) < 0)
		log_warn("LAN discovery is off: %s (port %d busy or no multicast)", strerror(-rc),
			 LAN_PORT);
	log_info("DHT listening on %s", n->listen_str);
	*ret = n;
	return 0;
err:
	dht_node_free(n);
	return rc;
}

static bool node_busy(const struct dht_node *n)
{
	if (n->rx_armed || n->lan_rx_armed)
		return true;
	for (size_t i = 0; i < SEND_SLOTS; i++)
		if (n->slots[i].busy)
			return true;
	return false;
}

void dht_node_free(struct dht_node *n)
{
	if (!n)
		return;
	if (n->d)
		save_table(n);
	n->closing = true;
	if (n->d)
		ev_timer_stop(n->loop, &n->timer);
	if (n->lan_fd >= 0) {
		ev_timer_stop(n->loop, &n->lan_timer);
		if (n->lan_rx_armed && ev_cancel(n->loop, &n->lan.op) < 0)
			log_debug("cannot cancel the LAN receive");
	}
	if (n->rx_armed)
		if (ev_cancel(n->loop, &n->rx_op) < 0)
			log_debug("cannot cancel the DHT receive");
	/* Let cancelled receives and sends in flight complete before their memory goes. */
	for (int i = 0; i < 200 && node_busy(n); i++)
		if (ev_loop_run_once(n->loop, 10) < 0)
			break;
	if (n->fd >= 0)
		close(n->fd);
	if (n->lan_fd >= 0)
		close(n->lan_fd);
	dht_free(n->d);
	free(n->slots);
	free(n->table_path);
	free(n);
}

int dht_addr_resolve(const char *hostport, struct dht_addr *out, size_t max, size_t *ret_n)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *res, *r;
	char host[256];
	const char *colon = strrchr(hostport, ':');
	size_t count = 0;
	int rc;

	if (max && dht_addr_parse(hostport, &out[0]) == 0) {
		*ret_n = 1;
		return 0;
	}
	if (!colon || (size_t)(colon - hostport) >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
		log_warn("%s: %s", hostport, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	for (r = res; r && count < max; r = r->ai_next) {
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, r->ai_addr, P2P_MIN((size_t)r->ai_addrlen, sizeof(ss)));
		if (dht_addr_from_sockaddr(&ss, &out[count]))
			count++;
	}
	freeaddrinfo(res);
	*ret_n = count;
	return count ? 0 : -EHOSTUNREACH;
}

int dht_node_bootstrap(struct dht_node *n, const char *hostport)
{
	struct dht_addr a[8];
	size_t count;
	int rc;

	if ((rc = dht_addr_resolve(hostport, a, ARRAY_SIZE(a), &count)) < 0)
		return rc;
	for (size_t i = 0; i < count; i++)
		dht_ping(n->d, tm_mono_ms(), &a[i]);
	dht_node_kick(n);
	return 0;
}

struct dht *dht_node_dht(struct dht_node *n)
{
	return n->d;
}

const char *dht_node_listen_str(const struct dht_node *n)
{
	return n->listen_str;
}

uint16_t dht_node_port(const struct dht_node *n)
{
	return n->self.port;
}

uint64_t dht_node_lan_heard(const struct dht_node *n)
{
	return n->lan_heard;
}
