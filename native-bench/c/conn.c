/* conn: open N connections at a target rate (or as fast as possible with a bounded
 * number of handshakes in flight), hold them, report outcomes and CONNACK latency.
 * Workers split the connections when N exceeds what one process may hold. */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

typedef struct {
    long n, per_worker, inflight;
    int workers, src_hosts;
    double rate, hold_s, timeout_s, hs_timeout_s;
    mqtt_opts_t mo;
    const char *prefix;
    struct sockaddr_in dst;
} conn_cfg_t;

enum { F_REFUSED, F_RESET, F_EOF, F_TIMEOUT, F_ADDR, F_EMFILE, F_PROTO, F_CONNACK, F_OTHER, F_COUNT };
static const char *const fail_names[F_COUNT] = {"fail_refused", "fail_reset", "fail_closed", "fail_timeout",
                                                "fail_addr", "fail_emfile", "fail_protocol", "fail_connack",
                                                "fail_other"};

typedef struct {
    uint64_t attempted, established, dropped;
    uint64_t fail[F_COUNT];
    uint64_t connack[256];
    uint64_t t_first, t_last; /* first connect started, last CONNACK */
    hist_t lat;
} conn_stats_t;

enum { S_IDLE, S_HANDSHAKE, S_UP, S_DONE };
typedef struct {
    conn_t c;
    uint64_t t0;
    uint8_t st;
} slot_t;

static conn_stats_t *g_st;
static slot_t *g_slots;
static long g_inflight; /* slots in S_HANDSHAKE */

static void set_state(slot_t *s, uint8_t st) {
    g_inflight += (st == S_HANDSHAKE) - (s->st == S_HANDSHAKE);
    s->st = st;
}

static int errno_cause(int e) {
    switch (e) {
    case ECONNREFUSED: return F_REFUSED;
    case ECONNRESET: case EPIPE: return F_RESET;
    case ETIMEDOUT: return F_TIMEOUT;
    case EADDRNOTAVAIL: case EADDRINUSE: return F_ADDR;
    case EMFILE: case ENFILE: return F_EMFILE;
    case EPROTO: return F_PROTO;
    default: return F_OTHER;
    }
}

static void slot_fail(slot_t *s, int cause) {
    g_st->fail[cause]++;
    conn_close(&s->c, 0);
    set_state(s, S_DONE);
}

static int on_packet(conn_t *c, uint8_t first, const uint8_t *body, size_t len) {
    slot_t *s = &g_slots[c->idx];
    if (s->st != S_HANDSHAKE) return 0; /* held connections ignore whatever arrives */
    if ((first >> 4) != MQTT_CONNACK || len < 2) {
        g_st->fail[F_PROTO]++;
        set_state(s, S_DONE);
        return -1;
    }
    uint8_t rc = body[1];
    g_st->connack[rc]++;
    if (rc != 0) {
        g_st->fail[F_CONNACK]++;
        set_state(s, S_DONE);
        return -1;
    }
    uint64_t now = now_ns();
    hist_add(&g_st->lat, (now - s->t0) / 1000);
    g_st->established++;
    g_st->t_last = now;
    set_state(s, S_UP);
    return 0;
}

static void handle_event(slot_t *s, uint32_t ev) {
    conn_t *c = &s->c;
    if (c->connecting) {
        int r = conn_connected(c);
        if (r < 0) {
            slot_fail(s, errno_cause(-r));
            return;
        }
    }
    if ((ev & EPOLLOUT) && conn_flush(c) < 0) goto broken;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        int r = conn_read(c, on_packet);
        if (r == 0) return;
        if (s->st == S_DONE) { /* the callback refused it */
            conn_close(c, 0);
            return;
        }
        if (s->st == S_UP) {
            g_st->dropped++;
            conn_close(c, 0);
            s->st = S_DONE;
            return;
        }
        slot_fail(s, r == -1 ? F_EOF : errno_cause(-r));
    }
    return;
broken:
    if (s->st == S_UP) {
        g_st->dropped++;
        conn_close(c, 0);
        s->st = S_DONE;
    } else {
        slot_fail(s, F_RESET);
    }
}

static void start_one(const conn_cfg_t *cfg, int w, long i, long global) {
    slot_t *s = &g_slots[i];
    char id[128];
    uint8_t pkt[256];
    snprintf(id, sizeof id, "%s-%d-%ld", cfg->prefix, w, i);
    struct sockaddr_in src;
    if (cfg->src_hosts) src_addr((uint32_t)global, cfg->src_hosts, &src);
    s->c.idx = (uint32_t)i;
    s->t0 = now_ns();
    if (!g_st->t_first) g_st->t_first = s->t0;
    g_st->attempted++;
    int r = conn_open(&s->c, cfg->src_hosts ? &src : NULL, &cfg->dst);
    if (r < 0) {
        g_st->fail[errno_cause(-r)]++;
        s->st = S_DONE;
        return;
    }
    set_state(s, S_HANDSHAKE);
    size_t n = mqtt_connect(pkt, sizeof pkt, &cfg->mo, id);
    if (n == 0 || conn_send(&s->c, pkt, n) < 0) slot_fail(s, F_OTHER); /* sent once the connect completes */
}

static void send_pings(long count, uint16_t keepalive) {
    static const uint8_t ping[2] = {MQTT_PINGREQ << 4, 0};
    uint64_t due = now_ns() - (uint64_t)keepalive * 500000000ull; /* half the keepalive */
    for (long i = 0; i < count; i++) {
        slot_t *s = &g_slots[i];
        if (s->st == S_UP && s->c.t_tx < due && conn_send(&s->c, ping, sizeof ping) < 0) {
            g_st->dropped++;
            conn_close(&s->c, 0);
            s->st = S_DONE;
        }
    }
}

static int worker(int w, int wfd, void *arg) {
    const conn_cfg_t *cfg = arg;
    long base = cfg->n / cfg->workers * w;
    long count = (w == cfg->workers - 1) ? cfg->n - base : cfg->n / cfg->workers;
    double rate = cfg->rate / cfg->workers;
    long max_inflight = cfg->inflight / cfg->workers > 0 ? cfg->inflight / cfg->workers : 1;
    g_st = calloc(1, sizeof *g_st);
    g_slots = calloc((size_t)count, sizeof *g_slots);
    if (!g_st || !g_slots) die("out of memory");
    for (long i = 0; i < count; i++) g_slots[i].c.fd = -1;
    loop_init();

    struct epoll_event evs[512];
    uint64_t start = now_ns();
    uint64_t deadline = start + (uint64_t)(cfg->timeout_s * 1e9);
    uint64_t hs_ns = (uint64_t)(cfg->hs_timeout_s * 1e9);
    long started = 0, oldest = 0;
    int phase_sent = 0;
    uint64_t next_ping = start + 1000000000ull;
    while (!g_stop) {
        uint64_t now = now_ns();
        if (!phase_sent) {
            long allowed = count;
            if (rate > 0) {
                double due = (double)(now - start) / 1e9 * rate + 1;
                allowed = due < (double)count ? (long)due : count;
            }
            while (started < allowed && g_inflight < max_inflight) {
                start_one(cfg, w, started, base + started);
                started++;
            }
            /* handshakes start in index order, so timeouts are found from the oldest one */
            while (oldest < started && (g_slots[oldest].st != S_HANDSHAKE || g_slots[oldest].t0 + hs_ns < now)) {
                if (g_slots[oldest].st == S_HANDSHAKE) slot_fail(&g_slots[oldest], F_TIMEOUT);
                oldest++;
            }
            if ((started == count && g_inflight == 0) || now > deadline) {
                for (long i = oldest; i < started; i++)
                    if (g_slots[i].st == S_HANDSHAKE) slot_fail(&g_slots[i], F_TIMEOUT);
                if (write_full(wfd, g_st, sizeof *g_st) < 0) return 1;
                phase_sent = 1;
            }
        } else if (cfg->mo.keepalive && now >= next_ping) {
            send_pings(count, cfg->mo.keepalive);
            next_ping = now + 1000000000ull;
        }
        int timeout = phase_sent ? 100 : (rate > 0 ? 1 : 20);
        int n = epoll_wait(g_epfd, evs, 512, timeout);
        for (int i = 0; i < n; i++) handle_event(evs[i].data.ptr, evs[i].events);
    }
    for (long i = 0; i < count; i++) conn_close(&g_slots[i].c, 0);
    return write_full(wfd, g_st, sizeof *g_st) < 0 ? 1 : 0;
}

static void merge(conn_stats_t *a, const conn_stats_t *b) {
    a->attempted += b->attempted;
    a->established += b->established;
    a->dropped += b->dropped;
    for (int i = 0; i < F_COUNT; i++) a->fail[i] += b->fail[i];
    for (int i = 0; i < 256; i++) a->connack[i] += b->connack[i];
    if (b->t_first && (!a->t_first || b->t_first < a->t_first)) a->t_first = b->t_first;
    if (b->t_last > a->t_last) a->t_last = b->t_last;
    hist_merge(&a->lat, &b->lat);
}

/* Reads one stats record from every worker; 0 when all arrived. */
static int collect(const conn_cfg_t *cfg, const int *rfds, conn_stats_t *sum, conn_stats_t *tmp, int timeout_ms) {
    memset(sum, 0, sizeof *sum);
    int ok = 0;
    for (int i = 0; i < cfg->workers; i++) {
        if (read_full(rfds[i], tmp, sizeof *tmp, timeout_ms) < 0) continue;
        merge(sum, tmp);
        ok++;
    }
    return ok == cfg->workers ? 0 : -1;
}

static void report(const conn_cfg_t *cfg, const conn_stats_t *s, int complete, double elapsed) {
    result_t r;
    result_init(&r, "conn");
    uint64_t failed = 0;
    for (int i = 0; i < F_COUNT; i++) failed += s->fail[i];
    double span = s->t_last > s->t_first ? (double)(s->t_last - s->t_first) / 1e9 : 0;
    result_u64(&r, "connections", (uint64_t)cfg->n);
    result_u64(&r, "attempted", s->attempted);
    result_u64(&r, "established", s->established);
    result_u64(&r, "failed", failed);
    result_u64(&r, "dropped", s->dropped);
    result_f(&r, "conn_per_s", span > 0 ? (double)s->established / span : 0);
    result_f(&r, "connack_p50_ms", (double)hist_pct(&s->lat, 50) / 1000);
    result_f(&r, "connack_p99_ms", (double)hist_pct(&s->lat, 99) / 1000);
    result_f(&r, "connack_max_ms", (double)s->lat.max / 1000);
    for (int i = 0; i < F_COUNT; i++)
        if (s->fail[i]) result_u64(&r, fail_names[i], s->fail[i]);
    for (int i = 1; i < 256; i++) {
        if (!s->connack[i]) continue;
        char key[32];
        snprintf(key, sizeof key, "connack_rc_0x%02X", i);
        result_u64(&r, key, s->connack[i]);
    }
    result_u64(&r, "workers", (uint64_t)cfg->workers);
    result_u64(&r, "complete", (uint64_t)complete);
    result_f(&r, "elapsed_s", elapsed);
    result_f(&r, "cpu_s", cpu_seconds());
    result_print(&r);
}

int mode_conn(int argc, char **argv) {
    static const char *const known[] = {"--host", "--port", "-n", "--rate", "--inflight", "--version",
                                        "--persistent!", "--session-expiry", "--keepalive", "--prefix",
                                        "--src-hosts", "--hold", "--timeout", "--handshake-timeout",
                                        "--per-worker", NULL};
    args_check(argc, argv, known);
    conn_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *host = arg_value(argc, argv, "--host", "127.0.0.1");
    int port = (int)arg_long(argc, argv, "--port", 1883, 1, 65535);
    if (parse_addr(host, port, &cfg.dst) < 0) die("--host must be an IPv4 loopback address, got '%s'", host);
    cfg.n = arg_long(argc, argv, "-n", 1000, 1, 10000000);
    cfg.rate = arg_double(argc, argv, "--rate", 0, 0, 1e7);
    cfg.inflight = arg_long(argc, argv, "--inflight", 100, 1, 100000);
    cfg.mo.version = (int)arg_long(argc, argv, "--version", 4, 4, 5);
    cfg.mo.clean = !arg_flag(argc, argv, "--persistent");
    cfg.mo.session_expiry = (uint32_t)arg_long(argc, argv, "--session-expiry", cfg.mo.clean ? 0 : 300, 0, 0xffffffffL);
    cfg.mo.keepalive = (uint16_t)arg_long(argc, argv, "--keepalive", 0, 0, 65535);
    cfg.prefix = arg_value(argc, argv, "--prefix", "nb");
    cfg.src_hosts = (int)arg_long(argc, argv, "--src-hosts", 32, 0, 250);
    cfg.hold_s = arg_double(argc, argv, "--hold", 0, 0, 86400);
    cfg.timeout_s = arg_double(argc, argv, "--timeout", 120, 0.1, 86400);
    cfg.hs_timeout_s = arg_double(argc, argv, "--handshake-timeout", 10, 0.01, 3600);
    cfg.per_worker = arg_long(argc, argv, "--per-worker", 19000, 1, 19500);
    cfg.workers = (int)((cfg.n + cfg.per_worker - 1) / cfg.per_worker);
    if (cfg.workers > 64) die("too many workers (%d); raise --per-worker", cfg.workers);

    install_stop_handlers();
    uint64_t t0 = now_ns();
    pid_t pids[64];
    int rfds[64];
    workers_spawn(cfg.workers, worker, &cfg, pids, rfds);
    conn_stats_t *sum = calloc(1, sizeof *sum), *tmp = calloc(1, sizeof *tmp);
    if (!sum || !tmp) die("out of memory");

    int complete = collect(&cfg, rfds, sum, tmp, (int)(cfg.timeout_s * 1000) + 10000) == 0;
    uint64_t failed = 0;
    for (int i = 0; i < F_COUNT; i++) failed += sum->fail[i];
    printf("READY established=%llu failed=%llu\n", (unsigned long long)sum->established,
           (unsigned long long)failed);
    fflush(stdout);
    /* hold: until --hold elapses or we are told to stop (the runner sends SIGTERM) */
    uint64_t hold_end = now_ns() + (uint64_t)(cfg.hold_s * 1e9);
    while (complete && !g_stop && now_ns() < hold_end) usleep(20000);
    double elapsed = (double)(now_ns() - t0) / 1e9;

    workers_signal(cfg.workers, pids, SIGTERM);
    conn_stats_t *phase = sum;
    conn_stats_t *fin = calloc(1, sizeof *fin);
    if (!fin) die("out of memory");
    /* the final records add drops seen while holding; handshake numbers stay those of the phase */
    if (collect(&cfg, rfds, fin, tmp, 10000) == 0) phase->dropped = fin->dropped;
    workers_reap(cfg.workers, pids);
    report(&cfg, phase, complete, elapsed);
    return complete ? 0 : 1;
}
