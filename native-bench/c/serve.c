/* serve: the machine's reference server. Accepts, frames one CONNECT, answers a fixed
 * CONNACK and holds the connection (answering PINGREQ). With --evict-after it behaves
 * like an evacuating node: after that time it disconnects everyone (5.0: DISCONNECT
 * with --evict-reason and the Server Reference; 3.x: close) and refuses new CONNECTs
 * (5.0: CONNACK with the reason and the reference; 3.x: return code 3). */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define MAX_CONNECT 65536 /* a CONNECT larger than this is not a benchmark client */

enum { C_FREE, C_AWAIT_CONNECT, C_UP };
static conn_t g_conns[MAX_FD];
static uint8_t g_state[MAX_FD];
static uint8_t g_version[MAX_FD];
static int g_evicting;
static int g_reason;
static const char *g_ref;
static uint64_t g_accepted, g_connacks, g_refused, g_evicted, g_emfile;

/* DISCONNECT or CONNACK (5.0) carrying a reason code and, when set, the Server Reference. */
static size_t refusal(uint8_t *out, int connack) {
    size_t rlen = g_ref ? strlen(g_ref) : 0;
    if (rlen > 1000) rlen = 1000;
    uint32_t plen = g_ref ? (uint32_t)(3 + rlen) : 0;
    uint8_t props[8];
    size_t pl = mqtt_encode_varint(props, plen);
    size_t rem = (connack ? 2 : 1) + pl + plen;
    uint8_t *p = out;
    *p++ = connack ? MQTT_CONNACK << 4 : MQTT_DISCONNECT << 4;
    p += mqtt_encode_varint(p, (uint32_t)rem);
    if (connack) *p++ = 0; /* session present 0 */
    *p++ = (uint8_t)g_reason;
    memcpy(p, props, pl);
    p += pl;
    if (g_ref) {
        *p++ = 0x1C; /* Server Reference */
        *p++ = (uint8_t)(rlen >> 8);
        *p++ = (uint8_t)rlen;
        memcpy(p, g_ref, rlen);
        p += rlen;
    }
    return (size_t)(p - out);
}

static void drop(conn_t *c) {
    g_state[c->fd] = C_FREE;
    conn_close(c, 0);
}

static int on_packet(conn_t *c, uint8_t first, const uint8_t *body, size_t len) {
    int fd = c->fd;
    uint8_t type = first >> 4;
    if (g_state[fd] == C_UP) {
        static const uint8_t pingresp[2] = {MQTT_PINGRESP << 4, 0};
        if (type == MQTT_PINGREQ) return conn_send(c, pingresp, sizeof pingresp);
        return type == MQTT_DISCONNECT ? -1 : 0;
    }
    /* the first packet must be CONNECT [MQTT-3.1.0-1]: protocol name (6 bytes), then the level */
    if (type != MQTT_CONNECT || len < 7 || len > MAX_CONNECT) return -1;
    uint8_t level = body[6];
    g_version[fd] = level;
    if (g_evicting) {
        static const uint8_t unavailable[4] = {MQTT_CONNACK << 4, 2, 0, 3}; /* 3.x: server unavailable */
        uint8_t out[1100];
        size_t n = level == 5 ? refusal(out, 1) : sizeof unavailable;
        conn_send(c, level == 5 ? out : unavailable, n);
        g_refused++;
        return -1;
    }
    static const uint8_t ok3[4] = {MQTT_CONNACK << 4, 2, 0, 0};
    static const uint8_t ok5[5] = {MQTT_CONNACK << 4, 3, 0, 0, 0};
    g_state[fd] = C_UP;
    g_connacks++;
    return level == 5 ? conn_send(c, ok5, sizeof ok5) : conn_send(c, ok3, sizeof ok3);
}

static void evict_all(void) {
    uint8_t out[1100];
    size_t n = refusal(out, 0);
    g_evicting = 1;
    for (int fd = 0; fd < MAX_FD; fd++) {
        if (g_state[fd] != C_UP) continue;
        if (g_version[fd] == 5) conn_send(&g_conns[fd], out, n);
        g_evicted++;
        drop(&g_conns[fd]);
    }
}

static void accept_some(int lfd) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) g_emfile++;
            return;
        }
        if (fd >= MAX_FD) {
            close(fd);
            continue;
        }
        g_accepted++;
        g_state[fd] = C_AWAIT_CONNECT;
        conn_adopt(&g_conns[fd], fd);
    }
}

int mode_serve(int argc, char **argv) {
    static const char *const known[] = {"--host", "--port", "--evict-after", "--evict-reason", "--server-ref",
                                        NULL};
    args_check(argc, argv, known);
    const char *host = arg_value(argc, argv, "--host", "127.0.0.1");
    int port = (int)arg_long(argc, argv, "--port", 1883, 0, 65535);
    long evict_after = arg_long(argc, argv, "--evict-after", -1, -1, 86400000L);
    g_reason = (int)arg_long(argc, argv, "--evict-reason", 0x9C, 0x80, 0xFF);
    g_ref = arg_value(argc, argv, "--server-ref", NULL);
    struct sockaddr_in addr;
    if (parse_addr(host, port, &addr) < 0) die("--host must be an IPv4 loopback address, got '%s'", host);

    install_stop_handlers();
    loop_init();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0)
        die("listen on %s:%d: %s", host, port, strerror(errno));
    socklen_t al = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &al);
    conn_t listener = {.fd = lfd};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listener};
    epoll_ctl(g_epfd, EPOLL_CTL_ADD, lfd, &ev);
    printf("LISTENING port=%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    uint64_t evict_at = evict_after >= 0 ? now_ns() + (uint64_t)evict_after * 1000000ull : 0;
    struct epoll_event evs[512];
    while (!g_stop) {
        if (evict_at && !g_evicting && now_ns() >= evict_at) evict_all();
        int n = epoll_wait(g_epfd, evs, 512, 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == &listener) {
                accept_some(lfd);
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && conn_flush(c) < 0) {
                drop(c);
                continue;
            }
            if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn_read(c, on_packet) != 0) drop(c);
        }
    }
    for (int fd = 0; fd < MAX_FD; fd++)
        if (g_state[fd] != C_FREE) drop(&g_conns[fd]);
    close(lfd);
    result_t r;
    result_init(&r, "serve");
    result_u64(&r, "accepted", g_accepted);
    result_u64(&r, "connacks", g_connacks);
    result_u64(&r, "refused", g_refused);
    result_u64(&r, "evicted", g_evicted);
    result_u64(&r, "emfile", g_emfile);
    result_f(&r, "cpu_s", cpu_seconds());
    result_print(&r);
    return 0;
}
