/* watch: hold N connections with auto-reconnect and report every server-initiated
 * disconnect by cause (5.0 DISCONNECT reason code, Server Reference, TCP close/reset),
 * reconnect success and time (disconnect -> accepted CONNACK), optionally reconnecting
 * to the Server Reference. This is how evacuation and rebalance are measured. */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#define HANDSHAKES 200
#define REF_MAX 256

enum { W_IDLE, W_CONNECTING, W_UP, W_WAITING, W_GAVE_UP };
typedef struct {
    conn_t c;
    uint8_t st;
    int16_t disc_rc;            /* reason of a DISCONNECT just received, -1 none */
    uint8_t disc_ref;           /* it carried a Server Reference */
    struct sockaddr_in target;  /* where the next connect goes */
    uint64_t down_at, retry_at; /* 0 down_at: first connect, not a reconnect */
    uint32_t retries;
} wconn_t;

static struct {
    long n, max_retries;
    int follow, src_hosts;
    double duration_s, progress_s;
    uint64_t delay_ns;
    mqtt_opts_t mo;
    const char *prefix;
    struct sockaddr_in dst;
} cfg;

static wconn_t *g_w;
static hist_t g_reconnect;
static uint64_t g_disc_rc[256], g_refused_rc[256];
static uint64_t g_disc_tcp, g_disc_reset, g_disc_with_ref, g_followed, g_ref_unusable;
static uint64_t g_reconnected, g_attempt_failed, g_gave_up, g_initial_failed, g_up, g_handshaking;

static void set_state(wconn_t *w, uint8_t st) {
    g_up += (st == W_UP) - (w->st == W_UP);
    g_handshaking += (st == W_CONNECTING) - (w->st == W_CONNECTING);
    w->st = st;
}

/* Records where a Server Reference points, if we are to follow it. */
static void take_ref(wconn_t *w, const char *ref) {
    struct sockaddr_in a;
    if (parse_server_ref(ref, &a) < 0) {
        g_ref_unusable++;
        return;
    }
    if (cfg.follow) {
        w->target = a;
        g_followed++;
    }
}

static void schedule_retry(wconn_t *w, uint64_t now) {
    conn_close(&w->c, 0);
    if (w->retries >= (uint32_t)cfg.max_retries) {
        set_state(w, W_GAVE_UP);
        g_gave_up++;
        return;
    }
    uint64_t backoff = cfg.delay_ns << (w->retries < 5 ? w->retries : 5); /* capped at 32x */
    w->retries++;
    w->retry_at = now + backoff;
    set_state(w, W_WAITING);
}

static int on_packet(conn_t *c, uint8_t first, const uint8_t *body, size_t len) {
    wconn_t *w = &g_w[c->idx];
    uint8_t type = first >> 4;
    char ref[REF_MAX];
    if (type == MQTT_CONNACK && w->st == W_CONNECTING) {
        if (len < 2) return -1;
        uint8_t rc = body[1];
        if (rc == 0) {
            uint64_t now = now_ns();
            if (w->down_at) {
                hist_add(&g_reconnect, (now - w->down_at) / 1000);
                g_reconnected++;
            }
            w->down_at = 0;
            w->retries = 0;
            w->disc_rc = -1;
            w->disc_ref = 0;
            set_state(w, W_UP);
            return 0;
        }
        g_refused_rc[rc]++;
        uint32_t plen;
        size_t n = len > 2 ? mqtt_varint(body + 2, len - 2, &plen) : 0;
        if (cfg.mo.version == 5 && n && 2 + n + plen <= len &&
            mqtt_prop_string(body + 2 + n, plen, 0x1C, ref, sizeof ref) == 1)
            take_ref(w, ref);
        return -1;
    }
    if (type == MQTT_DISCONNECT && w->st == W_UP) {
        w->disc_rc = len >= 1 ? body[0] : 0; /* no reason code means 0x00 [MQTT-3.14.2.1] */
        uint32_t plen;
        size_t n = len > 1 ? mqtt_varint(body + 1, len - 1, &plen) : 0;
        if (n && 1 + n + plen <= len && mqtt_prop_string(body + 1 + n, plen, 0x1C, ref, sizeof ref) == 1) {
            w->disc_ref = 1;
            take_ref(w, ref);
        }
        return 0; /* the server closes the socket next */
    }
    return 0;
}

static void went_down(wconn_t *w, int r, uint64_t now) {
    if (w->st == W_UP) { /* server-initiated: classify */
        if (w->disc_rc >= 0) {
            g_disc_rc[w->disc_rc]++;
            g_disc_with_ref += w->disc_ref;
        } else if (r == -1) {
            g_disc_tcp++;
        } else {
            g_disc_reset++;
        }
        w->down_at = now;
        w->retries = 0;
    } else if (w->st == W_CONNECTING) {
        if (w->down_at) g_attempt_failed++;
        else g_initial_failed++;
    }
    schedule_retry(w, now);
}

static void on_event(wconn_t *w, uint32_t ev) {
    uint64_t now = now_ns();
    if (w->c.connecting) {
        int r = conn_connected(&w->c);
        if (r < 0) {
            went_down(w, r, now);
            return;
        }
    }
    if ((ev & EPOLLOUT) && conn_flush(&w->c) < 0) {
        went_down(w, -EPIPE, now);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int r = conn_read(&w->c, on_packet);
        if (r != 0) went_down(w, r, now);
    }
}

static void start(long i, uint64_t now) {
    wconn_t *w = &g_w[i];
    char id[160];
    uint8_t pkt[256];
    snprintf(id, sizeof id, "%s-%ld", cfg.prefix, i);
    struct sockaddr_in src;
    if (cfg.src_hosts) src_addr((uint32_t)i, cfg.src_hosts, &src);
    w->c.idx = (uint32_t)i;
    set_state(w, W_CONNECTING);
    size_t n = mqtt_connect(pkt, sizeof pkt, &cfg.mo, id);
    if (conn_open(&w->c, cfg.src_hosts ? &src : NULL, &w->target) < 0 || conn_send(&w->c, pkt, n) < 0)
        went_down(w, -EIO, now);
}

static void tick(uint64_t now, long *opened) {
    static const uint8_t ping[2] = {MQTT_PINGREQ << 4, 0};
    uint64_t ping_due = now - (uint64_t)cfg.mo.keepalive * 500000000ull;
    for (long i = 0; i < *opened; i++) {
        wconn_t *w = &g_w[i];
        if (w->st == W_WAITING && now >= w->retry_at && g_handshaking < HANDSHAKES) start(i, now);
        else if (w->st == W_UP && cfg.mo.keepalive && w->c.t_tx < ping_due && conn_send(&w->c, ping, 2) < 0)
            went_down(w, -EPIPE, now);
    }
    while (*opened < cfg.n && g_handshaking < HANDSHAKES) start((*opened)++, now);
}

int mode_watch(int argc, char **argv) {
    static const char *const known[] = {"--host", "--port", "-n", "--duration", "--follow!", "--version",
                                        "--persistent!", "--session-expiry", "--keepalive", "--reconnect-delay",
                                        "--max-retries", "--progress", "--prefix", "--src-hosts", NULL};
    args_check(argc, argv, known);
    const char *host = arg_value(argc, argv, "--host", "127.0.0.1");
    int port = (int)arg_long(argc, argv, "--port", 1883, 1, 65535);
    if (parse_addr(host, port, &cfg.dst) < 0) die("--host must be an IPv4 loopback address, got '%s'", host);
    cfg.n = arg_long(argc, argv, "-n", 100, 1, 19000);
    cfg.duration_s = arg_double(argc, argv, "--duration", 10, 0.1, 86400);
    cfg.follow = arg_flag(argc, argv, "--follow");
    cfg.mo.version = (int)arg_long(argc, argv, "--version", 5, 4, 5);
    cfg.mo.clean = !arg_flag(argc, argv, "--persistent");
    cfg.mo.session_expiry = (uint32_t)arg_long(argc, argv, "--session-expiry", cfg.mo.clean ? 0 : 300, 0, 0xffffffffL);
    cfg.mo.keepalive = (uint16_t)arg_long(argc, argv, "--keepalive", 60, 0, 65535);
    cfg.delay_ns = (uint64_t)arg_long(argc, argv, "--reconnect-delay", 100, 0, 60000) * 1000000ull;
    cfg.max_retries = arg_long(argc, argv, "--max-retries", 100, 0, 1000000);
    cfg.progress_s = arg_double(argc, argv, "--progress", 1, 0, 3600);
    cfg.prefix = arg_value(argc, argv, "--prefix", "nbw");
    cfg.src_hosts = (int)arg_long(argc, argv, "--src-hosts", 32, 0, 250);

    g_w = calloc((size_t)cfg.n, sizeof *g_w);
    if (!g_w) die("out of memory");
    for (long i = 0; i < cfg.n; i++) {
        g_w[i].c.fd = -1;
        g_w[i].disc_rc = -1;
        g_w[i].target = cfg.dst;
    }
    install_stop_handlers();
    loop_init();
    struct epoll_event evs[512];
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(cfg.duration_s * 1e9);
    uint64_t next_tick = t0, next_progress = t0 + (uint64_t)(cfg.progress_s * 1e9);
    long opened = 0;
    while (!g_stop) {
        uint64_t now = now_ns();
        if (now >= end) break;
        if (now >= next_tick) {
            tick(now, &opened);
            next_tick = now + 10000000ull; /* retries and pings are checked every 10 ms */
        }
        if (cfg.progress_s > 0 && now >= next_progress) {
            uint64_t by_rc = 0;
            for (int i = 0; i < 256; i++) by_rc += g_disc_rc[i];
            printf("PROGRESS t=%.1f up=%llu disconnects_rc=%llu tcp_closed=%llu reconnected=%llu gave_up=%llu\n",
                   (double)(now - t0) / 1e9, (unsigned long long)g_up, (unsigned long long)by_rc,
                   (unsigned long long)(g_disc_tcp + g_disc_reset), (unsigned long long)g_reconnected,
                   (unsigned long long)g_gave_up);
            fflush(stdout);
            next_progress = now + (uint64_t)(cfg.progress_s * 1e9);
        }
        int n = epoll_wait(g_epfd, evs, 512, 10);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }

    uint64_t disconnects = g_disc_tcp + g_disc_reset;
    for (int i = 0; i < 256; i++) disconnects += g_disc_rc[i];
    static const uint8_t disconnect[2] = {MQTT_DISCONNECT << 4, 0};
    for (long i = 0; i < cfg.n; i++) {
        if (g_w[i].st == W_UP) conn_send(&g_w[i].c, disconnect, sizeof disconnect);
        conn_close(&g_w[i].c, 0);
    }
    result_t r;
    result_init(&r, "watch");
    result_u64(&r, "connections", (uint64_t)cfg.n);
    result_u64(&r, "up", g_up);
    result_u64(&r, "initial_failed", g_initial_failed);
    result_u64(&r, "disconnects", disconnects);
    char key[40];
    for (int i = 0; i < 256; i++) {
        if (!g_disc_rc[i]) continue;
        snprintf(key, sizeof key, "disc_rc_0x%02X", i);
        result_u64(&r, key, g_disc_rc[i]);
    }
    result_u64(&r, "disc_tcp_close", g_disc_tcp);
    result_u64(&r, "disc_reset", g_disc_reset);
    result_u64(&r, "disc_with_server_ref", g_disc_with_ref);
    result_u64(&r, "followed_ref", g_followed);
    result_u64(&r, "ref_unusable", g_ref_unusable);
    result_u64(&r, "reconnected", g_reconnected);
    result_u64(&r, "attempt_failed", g_attempt_failed);
    for (int i = 0; i < 256; i++) {
        if (!g_refused_rc[i]) continue;
        snprintf(key, sizeof key, "refused_rc_0x%02X", i);
        result_u64(&r, key, g_refused_rc[i]);
    }
    result_u64(&r, "gave_up", g_gave_up);
    result_f(&r, "reconnect_p50_ms", (double)hist_pct(&g_reconnect, 50) / 1000);
    result_f(&r, "reconnect_p99_ms", (double)hist_pct(&g_reconnect, 99) / 1000);
    result_f(&r, "reconnect_max_ms", (double)g_reconnect.max / 1000);
    result_f(&r, "elapsed_s", (double)(now_ns() - t0) / 1e9);
    result_f(&r, "cpu_s", cpu_seconds());
    result_print(&r);
    return 0;
}
