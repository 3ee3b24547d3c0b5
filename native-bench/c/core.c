#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- time and stop flag ---- */

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double ns_to_ms(uint64_t ns) { return (double)ns / 1e6; }

volatile sig_atomic_t g_stop = 0;

static void on_stop(int sig) {
    (void)sig;
    g_stop = 1;
}

void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("nbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---- histogram ---- */

static uint32_t hist_index(uint64_t v) {
    if (v < HIST_SUB) return (uint32_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - (HIST_SUB_BITS - 1); /* v >> shift lands in [SUB/2, SUB) */
    return HIST_SUB + (uint32_t)(shift - 1) * (HIST_SUB / 2) + (uint32_t)((v >> shift) - HIST_SUB / 2);
}

static uint64_t hist_upper(uint32_t idx) {
    if (idx < HIST_SUB) return idx;
    uint32_t k = idx - HIST_SUB;
    uint32_t shift = k / (HIST_SUB / 2) + 1;
    uint64_t sub = k % (HIST_SUB / 2) + HIST_SUB / 2;
    return ((sub + 1) << shift) - 1;
}

void hist_add(hist_t *h, uint64_t us) {
    h->b[hist_index(us)]++;
    h->n++;
    if (us > h->max) h->max = us;
}

void hist_merge(hist_t *into, const hist_t *from) {
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) into->b[i] += from->b[i];
    into->n += from->n;
    if (from->max > into->max) into->max = from->max;
}

uint64_t hist_pct(const hist_t *h, double pct) {
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)((pct / 100.0) * (double)h->n + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---- MQTT ---- */

size_t mqtt_encode_varint(uint8_t *out, uint32_t v) {
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[n++] = v ? (uint8_t)(b | 0x80) : b;
    } while (v && n < 4);
    return n;
}

size_t mqtt_varint(const uint8_t *p, size_t len, uint32_t *v) {
    uint32_t val = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= len) return 0;
        val |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = val;
            return i + 1;
        }
    }
    return 0;
}

int mqtt_frame(const uint8_t *buf, size_t len, size_t *hdr_len, size_t *body_len) {
    if (len < 2) return 0;
    uint32_t rem = 0;
    size_t n = mqtt_varint(buf + 1, len - 1, &rem);
    if (n == 0) return (len - 1 >= 4) ? -1 : 0;
    if (rem > MQTT_MAX_PACKET) return -1;
    if (len < 1 + n + rem) return 0;
    *hdr_len = 1 + n;
    *body_len = rem;
    return 1;
}

static uint8_t *put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *putstr(uint8_t *p, const char *s, size_t n) {
    p = put16(p, (uint16_t)n);
    memcpy(p, s, n);
    return p + n;
}

size_t mqtt_connect(uint8_t *out, size_t cap, const mqtt_opts_t *o, const char *client_id) {
    size_t idlen = strlen(client_id);
    size_t plen = (o->version == 5 && o->session_expiry) ? 5 : 0;
    size_t rem = 10 + (o->version == 5 ? 1 + plen : 0) + 2 + idlen;
    if (idlen > 0xffff || rem + 5 > cap) return 0;
    uint8_t *p = out;
    *p++ = MQTT_CONNECT << 4;
    p += mqtt_encode_varint(p, (uint32_t)rem);
    p = putstr(p, "MQTT", 4);
    *p++ = (uint8_t)o->version;
    *p++ = o->clean ? 0x02 : 0x00;
    p = put16(p, o->keepalive);
    if (o->version == 5) {
        *p++ = (uint8_t)plen;
        if (plen) {
            *p++ = 0x11; /* Session Expiry Interval */
            uint32_t e = o->session_expiry;
            *p++ = (uint8_t)(e >> 24);
            *p++ = (uint8_t)(e >> 16);
            *p++ = (uint8_t)(e >> 8);
            *p++ = (uint8_t)e;
        }
    }
    p = putstr(p, client_id, idlen);
    return (size_t)(p - out);
}

size_t mqtt_subscribe(uint8_t *out, size_t cap, int version, uint16_t pid, const char *filter, int qos) {
    size_t flen = strlen(filter);
    size_t rem = 2 + (version == 5 ? 1 : 0) + 2 + flen + 1;
    if (flen > 0xffff || rem + 5 > cap) return 0;
    uint8_t *p = out;
    *p++ = (MQTT_SUBSCRIBE << 4) | 0x02; /* reserved flags 0010 [MQTT-3.8.1-1] */
    p += mqtt_encode_varint(p, (uint32_t)rem);
    p = put16(p, pid);
    if (version == 5) *p++ = 0;
    p = putstr(p, filter, flen);
    *p++ = (uint8_t)qos;
    return (size_t)(p - out);
}

size_t mqtt_publish_header(uint8_t *out, size_t cap, int version, const char *topic, int qos, uint16_t pid,
                           size_t payload_len) {
    size_t tlen = strlen(topic);
    size_t rem = 2 + tlen + (qos ? 2 : 0) + (version == 5 ? 1 : 0) + payload_len;
    if (tlen > 0xffff || rem > MQTT_MAX_PACKET || 5 + rem - payload_len > cap) return 0;
    uint8_t *p = out;
    *p++ = (uint8_t)((MQTT_PUBLISH << 4) | (qos << 1));
    p += mqtt_encode_varint(p, (uint32_t)rem);
    p = putstr(p, topic, tlen);
    if (qos) p = put16(p, pid);
    if (version == 5) *p++ = 0;
    return (size_t)(p - out);
}

int mqtt_prop_string(const uint8_t *props, size_t len, uint8_t id, char *out, size_t cap) {
    size_t off = 0;
    while (off < len) {
        uint32_t pid;
        size_t n = mqtt_varint(props + off, len - off, &pid);
        if (n == 0) return -1;
        off += n;
        size_t skip;
        switch (pid) {
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2A:
            skip = 1;
            break;
        case 0x13: case 0x21: case 0x22: case 0x23:
            skip = 2;
            break;
        case 0x02: case 0x11: case 0x18: case 0x27:
            skip = 4;
            break;
        case 0x0B: {
            uint32_t v;
            skip = mqtt_varint(props + off, len - off, &v);
            if (skip == 0) return -1;
            break;
        }
        case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A: case 0x1C: case 0x1F: {
            if (off + 2 > len) return -1;
            size_t l = (size_t)props[off] << 8 | props[off + 1];
            if (off + 2 + l > len) return -1;
            if (pid == id) {
                size_t c = l < cap - 1 ? l : cap - 1;
                memcpy(out, props + off + 2, c);
                out[c] = 0;
                return 1;
            }
            skip = 2 + l;
            break;
        }
        case 0x26: { /* user property: two strings */
            if (off + 2 > len) return -1;
            size_t l1 = (size_t)props[off] << 8 | props[off + 1];
            if (off + 4 + l1 > len) return -1;
            size_t l2 = (size_t)props[off + 2 + l1] << 8 | props[off + 3 + l1];
            skip = 4 + l1 + l2;
            break;
        }
        default:
            return -1;
        }
        off += skip;
        if (off > len) return -1;
    }
    return 0;
}

/* ---- connections ---- */

#define OUT_MAX (8u << 20)     /* a connection that owes more than this is broken */
#define READS_PER_EVENT 16     /* level-triggered epoll brings us back for the rest */

int g_epfd = -1;
static uint8_t g_scratch[1 << 16];

void loop_init(void) {
    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g_epfd < 0) die("epoll_create1: %s", strerror(errno));
}

static int ep_set(conn_t *c, int op, int out) {
    struct epoll_event ev;
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    c->want_out = (uint8_t)out;
    return epoll_ctl(g_epfd, op, c->fd, &ev);
}

static void conn_reset_state(conn_t *c, int fd) {
    c->fd = fd;
    c->in_len = 0;
    c->out_off = c->out_len = 0;
    c->want_out = 0;
    c->connecting = 0;
    c->t_tx = now_ns();
}

int conn_open(conn_t *c, const struct sockaddr_in *src, const struct sockaddr_in *dst) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (src) {
        /* Port chosen at connect() from the full 4-tuple, so each source address
         * has the whole ephemeral range per destination. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)src, sizeof *src) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof *dst) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    conn_reset_state(c, fd);
    c->connecting = 1;
    if (ep_set(c, EPOLL_CTL_ADD, 1) < 0) {
        int e = errno;
        close(fd);
        c->fd = -1;
        return -e;
    }
    return 0;
}

void conn_adopt(conn_t *c, int fd) {
    conn_reset_state(c, fd);
    if (ep_set(c, EPOLL_CTL_ADD, 0) < 0) die("epoll_ctl: %s", strerror(errno));
}

int conn_connected(conn_t *c) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    if (err) return -err;
    c->connecting = 0;
    if (c->out_len == 0) ep_set(c, EPOLL_CTL_MOD, 0);
    return 0;
}

size_t conn_pending(const conn_t *c) { return c->out_len; }

int conn_send(conn_t *c, const void *p, size_t n) {
    size_t done = 0;
    if (c->out_len == 0 && !c->connecting) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR) return -1;
            w = 0;
        }
        done = (size_t)w;
    }
    c->t_tx = now_ns();
    if (done == n) return 0;
    size_t rest = n - done;
    if ((size_t)c->out_len + rest > OUT_MAX) return -1;
    if (c->out_off + c->out_len + rest > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len);
            c->out_off = 0;
        }
        if (c->out_len + rest > c->out_cap) {
            uint32_t cap = c->out_cap ? c->out_cap : 256;
            while (cap < c->out_len + rest) cap *= 2;
            uint8_t *nb = realloc(c->out, cap);
            if (!nb) return -1;
            c->out = nb;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_off + c->out_len, (const uint8_t *)p + done, rest);
    c->out_len += (uint32_t)rest;
    if (!c->want_out && ep_set(c, EPOLL_CTL_MOD, 1) < 0) return -1;
    return 0;
}

int conn_flush(conn_t *c) {
    while (c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            return -1;
        }
        c->out_off += (uint32_t)w;
        c->out_len -= (uint32_t)w;
    }
    c->out_off = 0;
    if (c->want_out && ep_set(c, EPOLL_CTL_MOD, 0) < 0) return -1;
    return 0;
}

static int keep_input(conn_t *c, const uint8_t *p, size_t n) {
    if (n > c->in_cap) {
        /* p may point into c->in (a carried partial packet being extended): realloc frees the old
         * block, so p must follow the data to the new one (reading the old one crashed pubsub) */
        uintptr_t at = (uintptr_t)p, base = (uintptr_t)c->in;
        int inside = c->in != NULL && at >= base && at < base + c->in_cap;
        size_t off = inside ? (size_t)(at - base) : 0;
        uint32_t cap = c->in_cap ? c->in_cap : 256;
        while (cap < n) cap *= 2;
        uint8_t *nb = realloc(c->in, cap);
        if (!nb) return -1;
        c->in = nb;
        c->in_cap = cap;
        if (inside) p = nb + off;
    }
    memmove(c->in, p, n);
    c->in_len = (uint32_t)n;
    return 0;
}

int conn_read(conn_t *c, packet_fn fn) {
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t r = read(c->fd, g_scratch, sizeof g_scratch);
        if (r == 0) return -1;
        if (r < 0) {
            if (errno == EAGAIN) return 0;
            if (errno == EINTR) continue;
            return -errno;
        }
        const uint8_t *p = g_scratch;
        size_t len = (size_t)r;
        if (c->in_len) { /* complete the carried partial packet first */
            if ((size_t)c->in_len + len > MQTT_MAX_PACKET + 8) return -EPROTO;
            size_t had = c->in_len;
            if (keep_input(c, c->in, had + len) < 0) return -ENOMEM;
            memcpy(c->in + had, g_scratch, len);
            p = c->in;
            len = c->in_len;
        }
        size_t off = 0;
        while (off < len) {
            size_t h, b;
            int f = mqtt_frame(p + off, len - off, &h, &b);
            if (f < 0) return -EPROTO;
            if (f == 0) break;
            if (fn(c, p[off], p + off + h, b) < 0) return -EPIPE;
            off += h + b;
        }
        if (keep_input(c, p + off, len - off) < 0) return -ENOMEM;
        if (c->in_len == 0 && c->in_cap > 4096) { /* do not keep big buffers on idle connections */
            free(c->in);
            c->in = NULL;
            c->in_cap = 0;
        }
    }
    return 0;
}

void conn_close(conn_t *c, int abort_rst) {
    if (c->fd < 0) return;
    if (abort_rst) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->in_len = c->in_cap = c->out_len = c->out_off = c->out_cap = 0;
    c->want_out = c->connecting = 0;
}

/* ---- addresses ---- */

int parse_addr(const char *host, int port, struct sockaddr_in *out) {
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1) return -1;
    return (ntohl(out->sin_addr.s_addr) >> 24) == 127 ? 0 : -1; /* loopback only */
}

void src_addr(uint32_t i, int hosts, struct sockaddr_in *out) {
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_addr.s_addr = htonl(0x7f000002u + i % (uint32_t)hosts);
}

int parse_server_ref(const char *ref, struct sockaddr_in *out) {
    char first[256];
    size_t n = strcspn(ref, " ");
    if (n == 0 || n >= sizeof first) return -1;
    memcpy(first, ref, n);
    first[n] = 0;
    char *colon = strrchr(first, ':');
    if (!colon) return -1;
    *colon = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port <= 0 || port > 65535) return -1;
    return parse_addr(first, (int)port, out);
}

/* ---- workers ---- */

void workers_spawn(int n, int (*body)(int i, int wfd, void *arg), void *arg, pid_t *pids, int *rfds) {
    pid_t parent = getpid();
    for (int i = 0; i < n; i++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(fds[0]);
            for (int j = 0; j < i; j++) close(rfds[j]);
            prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the parent */
            if (getppid() != parent) _exit(1);
            int rc = body(i, fds[1], arg);
            close(fds[1]);
            _exit(rc);
        }
        close(fds[1]);
        pids[i] = pid;
        rfds[i] = fds[0];
    }
}

int read_full(int fd, void *buf, size_t len, int timeout_ms) {
    uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    size_t got = 0;
    while (got < len) {
        uint64_t now = now_ns();
        if (now >= deadline) return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int wait_ms = (int)((deadline - now) / 1000000ull) + 1;
        int pr = poll(&pfd, 1, wait_ms > 100 ? 100 : wait_ms);
        if (pr < 0 && errno != EINTR) return -1;
        if (pr <= 0) continue;
        ssize_t r = read(fd, (uint8_t *)buf + got, len - got);
        if (r == 0) return -1;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int write_full(int fd, const void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, (const uint8_t *)buf + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

void workers_signal(int n, const pid_t *pids, int sig) {
    for (int i = 0; i < n; i++)
        if (pids[i] > 0) kill(pids[i], sig);
}

void workers_reap(int n, const pid_t *pids) {
    for (int i = 0; i < n; i++) {
        /* bounded: 5 s, then SIGKILL */
        int done = 0;
        for (int t = 0; t < 500 && !done; t++) {
            pid_t r = waitpid(pids[i], NULL, WNOHANG);
            if (r == pids[i] || (r < 0 && errno == ECHILD)) done = 1;
            else usleep(10000);
        }
        if (!done) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    }
}

double cpu_seconds(void) {
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) +
           (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) / 1e6;
}

/* ---- RESULT line ---- */

void result_init(result_t *r, const char *mode) {
    r->len = (size_t)snprintf(r->buf, sizeof r->buf, "RESULT mode=%s", mode);
}

static void result_add(result_t *r, const char *key, const char *val) {
    if (r->len >= sizeof r->buf) return;
    int n = snprintf(r->buf + r->len, sizeof r->buf - r->len, " %s=", key);
    if (n < 0) return;
    r->len += (size_t)n;
    for (const char *p = val; *p && r->len + 1 < sizeof r->buf; p++)
        r->buf[r->len++] = (*p == ' ' || *p == '=') ? '_' : *p; /* keep key=value parseable */
    r->buf[r->len < sizeof r->buf ? r->len : sizeof r->buf - 1] = 0;
}

void result_u64(result_t *r, const char *key, uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    result_add(r, key, b);
}

void result_f(result_t *r, const char *key, double v) {
    char b[48];
    snprintf(b, sizeof b, "%.3f", v);
    result_add(r, key, b);
}

void result_s(result_t *r, const char *key, const char *v) { result_add(r, key, v); }

void result_print(result_t *r) {
    printf("%s\n", r->buf);
    fflush(stdout);
}

/* ---- command line ---- */

const char *arg_value(int argc, char **argv, const char *name, const char *def) {
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

int arg_flag(int argc, char **argv, const char *name) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

long arg_long(int argc, char **argv, const char *name, long def, long min, long max) {
    const char *v = arg_value(argc, argv, name, NULL);
    if (!v) return def;
    char *end;
    long x = strtol(v, &end, 0); /* 0x9C style accepted */
    if (*end || x < min || x > max) die("%s must be an integer in [%ld, %ld], got '%s'", name, min, max, v);
    return x;
}

double arg_double(int argc, char **argv, const char *name, double def, double min, double max) {
    const char *v = arg_value(argc, argv, name, NULL);
    if (!v) return def;
    char *end;
    double x = strtod(v, &end);
    if (*end || x < min || x > max) die("%s must be a number in [%g, %g], got '%s'", name, min, max, v);
    return x;
}

void args_check(int argc, char **argv, const char *const *known) {
    for (int i = 2; i < argc; i++) {
        int ok = 0, takes_value = 0;
        for (const char *const *k = known; *k; k++) {
            size_t l = strlen(*k);
            int flag = (*k)[l - 1] == '!';
            if (strncmp(argv[i], *k, flag ? l - 1 : l) == 0 && argv[i][flag ? l - 1 : l] == 0) {
                ok = 1;
                takes_value = !flag;
                break;
            }
        }
        if (!ok) die("unknown argument '%s' (see nbench --help)", argv[i]);
        if (takes_value) {
            if (i + 1 >= argc) die("%s needs a value", argv[i]);
            i++;
        }
    }
}
