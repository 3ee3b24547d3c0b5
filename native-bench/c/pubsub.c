/* pubsub: S subscribers and P publishers on one topic, QoS 0 or 1. Publishers send at a
 * fixed total rate, or in a closed loop where each keeps at most W messages that have not
 * yet reached every subscriber. The payload carries the send time, the publisher and a
 * sequence number, so subscribers measure latency, loss and duplicates. */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define STAMP 16                 /* u64 send time, u32 publisher, u32 sequence */
#define PUB_BACKLOG (256u << 10) /* do not queue more than this on one publisher socket */
#define HANDSHAKES 200           /* connects/subscribes in flight while setting up */
#define STALL_NS 1000000000ull   /* closed loop: forgive a window that made no progress for 1 s */

enum { P_CONNECTING, P_SUBSCRIBING, P_READY, P_FAILED };
typedef struct {
    conn_t c;
    uint8_t st;
    uint64_t sent, delivered, forgiven; /* publisher: sent, unique copies received, credit written off */
    uint64_t progress_at;               /* last time a delivery freed credit */
    uint32_t unacked;                   /* QoS 1 PUBLISHes waiting for PUBACK */
    uint16_t next_pid;
} peer_t;

static struct {
    long subs, pubs, window, max_unacked;
    int qos, src_hosts;
    double rate, duration_s, drain_s, timeout_s;
    size_t payload;
    mqtt_opts_t mo;
    const char *prefix;
    char topic[256];
    struct sockaddr_in dst;
} cfg;

static peer_t *g_peers;      /* subscribers first, then publishers */
static uint32_t *g_last_seq; /* [sub * pubs + pub], last sequence seen */
static hist_t g_lat;
static uint64_t g_received, g_dups, g_gaps, g_foreign, g_acked, g_puback_fail, g_stalls, g_blocked;
static uint64_t g_failed, g_suback_fail, g_dropped, g_ready, g_connack_refused;
static int g_connack_rc = -1; /* first refusal's code, to say why setup failed */
static uint64_t g_first_send, g_last_recv;
static int g_publishing;

static int is_pub(const peer_t *p) { return p - g_peers >= cfg.subs; }

static void fail(peer_t *p) {
    if (p->st == P_FAILED) return;
    if (p->st == P_READY) {
        g_dropped++;
        g_ready--;
    } else {
        g_failed++;
    }
    p->st = P_FAILED;
    conn_close(&p->c, 0);
}

static int on_sub_publish(peer_t *s, uint8_t first, const uint8_t *body, size_t len) {
    int qos = (first >> 1) & 3;
    if (len < 2) return -1;
    size_t off = 2 + ((size_t)body[0] << 8 | body[1]);
    uint16_t pid = 0;
    if (qos) {
        if (off + 2 > len) return -1;
        pid = (uint16_t)(body[off] << 8 | body[off + 1]);
        off += 2;
    }
    if (cfg.mo.version == 5) {
        uint32_t plen;
        size_t n = mqtt_varint(body + off, len > off ? len - off : 0, &plen);
        if (n == 0) return -1;
        off += n + plen;
    }
    if (qos) {
        uint8_t ack[4] = {MQTT_PUBACK << 4, 2, (uint8_t)(pid >> 8), (uint8_t)pid};
        if (conn_send(&s->c, ack, sizeof ack) < 0) return -1;
    }
    if (off + STAMP > len) {
        g_foreign++;
        return 0;
    }
    uint64_t ts;
    uint32_t pub, seq;
    memcpy(&ts, body + off, 8);
    memcpy(&pub, body + off + 8, 4);
    memcpy(&seq, body + off + 12, 4);
    if (pub >= (uint32_t)cfg.pubs) {
        g_foreign++;
        return 0;
    }
    uint64_t now = now_ns();
    g_received++;
    g_last_recv = now;
    hist_add(&g_lat, now > ts ? (now - ts) / 1000 : 0);
    uint32_t *last = &g_last_seq[(size_t)(s - g_peers) * (size_t)cfg.pubs + pub];
    if (seq <= *last) { /* per-publisher order is kept by the broker, so an old number is a repeat */
        g_dups++;
        return 0;
    }
    if (seq != *last + 1) g_gaps++;
    *last = seq;
    peer_t *p = &g_peers[cfg.subs + pub];
    p->delivered++;
    p->progress_at = now;
    return 0;
}

static int on_packet(conn_t *c, uint8_t first, const uint8_t *body, size_t len) {
    peer_t *p = &g_peers[c->idx];
    uint8_t type = first >> 4;
    if (type == MQTT_PUBLISH && !is_pub(p)) return on_sub_publish(p, first, body, len);
    if (type == MQTT_PUBACK && is_pub(p)) {
        if (len >= 3 && body[2] >= 0x80) g_puback_fail++;
        if (p->unacked) p->unacked--;
        g_acked++;
        return 0;
    }
    if (type == MQTT_CONNACK && p->st == P_CONNECTING) {
        if (len < 2) return -1;
        if (body[1] != 0) {
            g_connack_refused++;
            if (g_connack_rc < 0) g_connack_rc = body[1];
            return -1;
        }
        if (is_pub(p)) {
            p->st = P_READY;
            g_ready++;
            return 0;
        }
        uint8_t sub[300];
        size_t n = mqtt_subscribe(sub, sizeof sub, cfg.mo.version, 1, cfg.topic, cfg.qos);
        p->st = P_SUBSCRIBING;
        return n && conn_send(c, sub, n) == 0 ? 0 : -1;
    }
    if (type == MQTT_SUBACK && p->st == P_SUBSCRIBING) {
        /* v5 SUBACK has properties before the codes; the last byte is our only code either way */
        if (len < 3 || body[len - 1] >= 0x80) {
            g_suback_fail++;
            return -1;
        }
        p->st = P_READY;
        g_ready++;
        return 0;
    }
    return 0; /* PINGRESP and anything else */
}

static void on_event(peer_t *p, uint32_t ev) {
    if (p->c.connecting && conn_connected(&p->c) < 0) {
        fail(p);
        return;
    }
    if ((ev & EPOLLOUT) && conn_flush(&p->c) < 0) {
        fail(p);
        return;
    }
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_read(&p->c, on_packet) != 0) fail(p);
}

static void open_peer(long i) {
    peer_t *p = &g_peers[i];
    char id[160];
    uint8_t pkt[256];
    int pub = i >= cfg.subs;
    snprintf(id, sizeof id, "%s-%c-%ld", cfg.prefix, pub ? 'p' : 's', pub ? i - cfg.subs : i);
    struct sockaddr_in src;
    if (cfg.src_hosts) src_addr((uint32_t)i, cfg.src_hosts, &src);
    p->c.idx = (uint32_t)i;
    p->st = P_CONNECTING;
    size_t n = mqtt_connect(pkt, sizeof pkt, &cfg.mo, id);
    if (conn_open(&p->c, cfg.src_hosts ? &src : NULL, &cfg.dst) < 0 || conn_send(&p->c, pkt, n) < 0) fail(p);
}

/* Sends one PUBLISH from publisher j; returns 0 if it went out (or was queued). */
static int publish_one(long j, uint8_t *pkt, size_t hdr_cap) {
    peer_t *p = &g_peers[cfg.subs + j];
    uint16_t pid = 0;
    if (cfg.qos) {
        pid = p->next_pid = (uint16_t)(p->next_pid % 65535 + 1);
    }
    size_t h = mqtt_publish_header(pkt, hdr_cap, cfg.mo.version, cfg.topic, cfg.qos, pid, cfg.payload);
    /* header is built in front of the payload area: shift so they touch */
    uint8_t *start = pkt + hdr_cap - h;
    memmove(start, pkt, h);
    uint64_t ts = now_ns();
    uint32_t pub = (uint32_t)j, seq = (uint32_t)(p->sent + 1);
    memcpy(pkt + hdr_cap, &ts, 8);
    memcpy(pkt + hdr_cap + 8, &pub, 4);
    memcpy(pkt + hdr_cap + 12, &seq, 4);
    if (conn_send(&p->c, start, h + cfg.payload) < 0) {
        fail(p);
        return -1;
    }
    if (!g_first_send) g_first_send = ts;
    p->sent++;
    if (cfg.qos) p->unacked++;
    return 0;
}

static int can_send(peer_t *p, uint64_t now) {
    if (p->st != P_READY) return 0;
    if (conn_pending(&p->c) > PUB_BACKLOG || (cfg.qos && p->unacked >= (uint32_t)cfg.max_unacked)) {
        g_blocked++;
        return 0;
    }
    if (cfg.rate > 0) return 1;
    uint64_t outstanding = p->sent - p->forgiven - p->delivered / (uint64_t)cfg.subs;
    if (outstanding < (uint64_t)cfg.window) return 1;
    if (now - p->progress_at > STALL_NS) { /* lost messages would hold the window forever */
        g_stalls++;
        p->forgiven = p->sent - p->delivered / (uint64_t)cfg.subs;
        p->progress_at = now;
        return 1;
    }
    return 0;
}

/* Returns 1 when some publisher used its whole burst and may send more at once. */
static int publish_due(uint64_t start, uint64_t now, uint8_t *pkt, size_t hdr_cap) {
    double per_pub = cfg.rate / (double)cfg.pubs;
    int more = 0;
    for (long j = 0; j < cfg.pubs; j++) {
        peer_t *p = &g_peers[cfg.subs + j];
        uint64_t due = cfg.rate > 0 ? (uint64_t)((double)(now - start) / 1e9 * per_pub) + 1 : UINT64_MAX;
        int k = 0;
        for (; k < 256 && p->sent < due && can_send(p, now); k++) /* bounded burst per turn */
            if (publish_one(j, pkt, hdr_cap) < 0) break;
        more |= k == 256;
    }
    return more;
}

static uint64_t unique_received(void) {
    uint64_t u = 0;
    for (long j = 0; j < cfg.pubs; j++) u += g_peers[cfg.subs + j].delivered;
    return u;
}

int mode_pubsub(int argc, char **argv) {
    static const char *const known[] = {"--host", "--port", "--subs", "--pubs", "--qos", "--payload", "--rate",
                                        "--window", "--max-unacked", "--duration", "--drain", "--timeout",
                                        "--topic", "--version", "--prefix", "--src-hosts", NULL};
    args_check(argc, argv, known);
    const char *host = arg_value(argc, argv, "--host", "127.0.0.1");
    int port = (int)arg_long(argc, argv, "--port", 1883, 1, 65535);
    if (parse_addr(host, port, &cfg.dst) < 0) die("--host must be an IPv4 loopback address, got '%s'", host);
    cfg.subs = arg_long(argc, argv, "--subs", 1, 1, 19000);
    cfg.pubs = arg_long(argc, argv, "--pubs", 1, 1, 19000);
    if (cfg.subs + cfg.pubs > 19000) die("--subs + --pubs must not exceed 19000 (one process's open files)");
    if (cfg.subs * cfg.pubs > 50000000L) die("--subs x --pubs too large for duplicate tracking");
    cfg.qos = (int)arg_long(argc, argv, "--qos", 0, 0, 1);
    cfg.payload = (size_t)arg_long(argc, argv, "--payload", 64, STAMP, 1 << 20);
    cfg.rate = arg_double(argc, argv, "--rate", 0, 0, 1e8);
    cfg.window = arg_long(argc, argv, "--window", 16, 1, 1000000);
    cfg.max_unacked = arg_long(argc, argv, "--max-unacked", 1000, 1, 65535);
    cfg.duration_s = arg_double(argc, argv, "--duration", 5, 0.1, 3600);
    cfg.drain_s = arg_double(argc, argv, "--drain", 2, 0, 600);
    cfg.timeout_s = arg_double(argc, argv, "--timeout", 30, 0.1, 3600);
    cfg.mo.version = (int)arg_long(argc, argv, "--version", 4, 4, 5);
    cfg.mo.clean = 1;
    cfg.prefix = arg_value(argc, argv, "--prefix", "nb");
    cfg.src_hosts = (int)arg_long(argc, argv, "--src-hosts", 32, 0, 250);
    snprintf(cfg.topic, sizeof cfg.topic, "%s", arg_value(argc, argv, "--topic", "nbench/t"));

    long total = cfg.subs + cfg.pubs;
    g_peers = calloc((size_t)total, sizeof *g_peers);
    g_last_seq = calloc((size_t)(cfg.subs * cfg.pubs), sizeof *g_last_seq);
    size_t hdr_cap = 300 + strlen(cfg.topic);
    uint8_t *pkt = calloc(1, hdr_cap + cfg.payload);
    if (!g_peers || !g_last_seq || !pkt) die("out of memory");
    for (long i = 0; i < total; i++) g_peers[i].c.fd = -1;
    install_stop_handlers();
    loop_init();

    struct epoll_event evs[512];
    uint64_t t0 = now_ns(), setup_deadline = t0 + (uint64_t)(cfg.timeout_s * 1e9);
    uint64_t pub_start = 0, pub_end = 0, drain_end = 0;
    long opened = 0;
    int complete = 0;
    while (!g_stop) {
        uint64_t now = now_ns();
        int timeout = 5;
        if (!g_publishing) {
            /* setup: bounded handshakes in flight; publishing starts once every subscription holds */
            while (opened < total && (long)(g_ready + g_failed + g_dropped) > opened - HANDSHAKES) open_peer(opened++);
            if (g_failed || g_dropped || now > setup_deadline) break;
            if (g_ready == (uint64_t)total) {
                g_publishing = 1;
                pub_start = now;
                pub_end = now + (uint64_t)(cfg.duration_s * 1e9);
                for (long j = 0; j < cfg.pubs; j++) g_peers[cfg.subs + j].progress_at = now;
            }
        } else if (now < pub_end) {
            /* never spin: wait for acks/deliveries (closed loop) or the next millisecond (rate) */
            timeout = publish_due(pub_start, now, pkt, hdr_cap) ? 0 : 1;
        } else {
            if (!drain_end) drain_end = now + (uint64_t)(cfg.drain_s * 1e9);
            uint64_t sent = 0;
            for (long j = 0; j < cfg.pubs; j++) sent += g_peers[cfg.subs + j].sent;
            if (unique_received() >= sent * (uint64_t)cfg.subs || now > drain_end) {
                complete = 1;
                break;
            }
        }
        int n = epoll_wait(g_epfd, evs, 512, timeout);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }

    uint64_t sent = 0;
    for (long j = 0; j < cfg.pubs; j++) sent += g_peers[cfg.subs + j].sent;
    uint64_t unique = unique_received(), expected = sent * (uint64_t)cfg.subs;
    double send_s = pub_end && pub_end > pub_start ? (double)(pub_end - pub_start) / 1e9 : 0;
    double recv_s = g_last_recv > g_first_send ? (double)(g_last_recv - g_first_send) / 1e9 : 0;
    static const uint8_t disconnect[2] = {MQTT_DISCONNECT << 4, 0};
    for (long i = 0; i < total; i++) {
        if (g_peers[i].c.fd >= 0) conn_send(&g_peers[i].c, disconnect, sizeof disconnect);
        conn_close(&g_peers[i].c, 0);
    }
    result_t r;
    result_init(&r, "pubsub");
    result_u64(&r, "subs", (uint64_t)cfg.subs);
    result_u64(&r, "pubs", (uint64_t)cfg.pubs);
    result_u64(&r, "qos", (uint64_t)cfg.qos);
    result_u64(&r, "payload", cfg.payload);
    result_u64(&r, "failed", g_failed);
    result_u64(&r, "connack_refused", g_connack_refused);
    if (g_connack_rc >= 0) {
        char rc[16];
        snprintf(rc, sizeof rc, "0x%02X", g_connack_rc);
        result_s(&r, "connack_rc", rc);
    }
    result_u64(&r, "suback_failed", g_suback_fail);
    result_u64(&r, "dropped", g_dropped);
    result_u64(&r, "sent", sent);
    result_u64(&r, "expected", expected);
    result_u64(&r, "received", g_received);
    result_u64(&r, "unique", unique);
    result_u64(&r, "lost", expected > unique ? expected - unique : 0);
    result_u64(&r, "duplicates", g_dups);
    result_u64(&r, "gaps", g_gaps);
    result_u64(&r, "foreign", g_foreign);
    if (cfg.qos) {
        result_u64(&r, "acked", g_acked);
        result_u64(&r, "puback_failed", g_puback_fail);
    }
    result_u64(&r, "stalls", g_stalls);
    result_u64(&r, "blocked", g_blocked);
    result_f(&r, "sent_per_s", send_s > 0 ? (double)sent / send_s : 0);
    result_f(&r, "recv_per_s", recv_s > 0 ? (double)unique / recv_s : 0);
    result_f(&r, "latency_p50_ms", (double)hist_pct(&g_lat, 50) / 1000);
    result_f(&r, "latency_p99_ms", (double)hist_pct(&g_lat, 99) / 1000);
    result_f(&r, "latency_max_ms", (double)g_lat.max / 1000);
    result_u64(&r, "complete", (uint64_t)complete);
    result_f(&r, "elapsed_s", (double)(now_ns() - t0) / 1e9);
    result_f(&r, "cpu_s", cpu_seconds());
    result_print(&r);
    return complete ? 0 : 1;
}
