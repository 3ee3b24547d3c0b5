/* Shared core of the nbench load generator: clock, latency histogram, buffered
 * non-blocking connections on one epoll set, MQTT encoders/framing, source
 * address spreading, worker processes and the RESULT line. */
#ifndef NBENCH_CORE_H
#define NBENCH_CORE_H

#define _GNU_SOURCE
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- time and stop flag ---- */
uint64_t now_ns(void);
double ns_to_ms(uint64_t ns);
extern volatile sig_atomic_t g_stop; /* set by SIGINT/SIGTERM */
void install_stop_handlers(void);
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* ---- log-linear histogram of microseconds: ~1.5% resolution, mergeable ---- */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB + 58u * (HIST_SUB / 2u))
typedef struct {
    uint64_t n;
    uint64_t max;
    uint64_t b[HIST_BUCKETS];
} hist_t;
void hist_add(hist_t *h, uint64_t us);
void hist_merge(hist_t *into, const hist_t *from);
uint64_t hist_pct(const hist_t *h, double pct); /* upper bound of the bucket, us */

/* ---- MQTT encoding / framing ---- */
enum { MQTT_CONNECT = 1, MQTT_CONNACK = 2, MQTT_PUBLISH = 3, MQTT_PUBACK = 4, MQTT_SUBSCRIBE = 8,
       MQTT_SUBACK = 9, MQTT_PINGREQ = 12, MQTT_PINGRESP = 13, MQTT_DISCONNECT = 14 };
#define MQTT_MAX_PACKET (16u << 20) /* the generator never accepts bigger packets */

typedef struct {
    int version;             /* 4 = 3.1.1, 5 = 5.0 */
    int clean;               /* clean session / clean start */
    uint16_t keepalive;      /* seconds, 0 = off */
    uint32_t session_expiry; /* v5 only, sent when > 0 */
} mqtt_opts_t;

size_t mqtt_connect(uint8_t *out, size_t cap, const mqtt_opts_t *o, const char *client_id);
size_t mqtt_subscribe(uint8_t *out, size_t cap, int version, uint16_t pid, const char *filter, int qos);
/* Header of a PUBLISH (fixed header, topic, packet id, v5 empty properties) for a payload of len. */
size_t mqtt_publish_header(uint8_t *out, size_t cap, int version, const char *topic, int qos, uint16_t pid,
                           size_t payload_len);
size_t mqtt_encode_varint(uint8_t *out, uint32_t v);
/* 1: a whole packet is at buf (sets header and body length); 0: need more; -1: malformed. */
int mqtt_frame(const uint8_t *buf, size_t len, size_t *hdr_len, size_t *body_len);
/* Reads a varint at p (at most len bytes); returns bytes used or 0 if malformed. */
size_t mqtt_varint(const uint8_t *p, size_t len, uint32_t *v);
/* Finds a UTF-8 string property (e.g. 0x1C Server Reference) in a v5 property block.
 * Returns 1 and copies it NUL-terminated into out (truncated to cap-1), 0 if absent, -1 malformed. */
int mqtt_prop_string(const uint8_t *props, size_t len, uint8_t id, char *out, size_t cap);

/* ---- buffered non-blocking TCP connections on one epoll set ---- */
typedef struct conn conn_t;
/* Called for each complete packet: first byte of the fixed header and the body. Return -1 to close. */
typedef int (*packet_fn)(conn_t *c, uint8_t first, const uint8_t *body, size_t len);

struct conn {
    int fd;
    uint32_t idx;      /* mode-defined index */
    uint8_t *in;       /* partial packet carried between reads */
    uint32_t in_len, in_cap;
    uint8_t *out;      /* bytes the socket did not take yet */
    uint32_t out_off, out_len, out_cap;
    uint8_t want_out;  /* EPOLLOUT registered */
    uint8_t connecting; /* TCP connect in progress */
    uint64_t t_tx;     /* last send, for keepalive pings */
};

extern int g_epfd;
void loop_init(void);
/* Starts a non-blocking TCP connect from src (may be NULL) to dst; registers c. 0 or -errno. */
int conn_open(conn_t *c, const struct sockaddr_in *src, const struct sockaddr_in *dst);
/* Registers an accepted socket. */
void conn_adopt(conn_t *c, int fd);
/* Finishes a pending connect after EPOLLOUT: 0 done, -errno failed. */
int conn_connected(conn_t *c);
/* Queues bytes: writes what the socket takes now, buffers the rest. -1 if over the bound. */
int conn_send(conn_t *c, const void *p, size_t n);
int conn_flush(conn_t *c); /* on EPOLLOUT; -1 on error */
/* Reads everything available and frames packets. 0 ok, -1 EOF, -errno on error, -EPROTO malformed,
 * or the callback's -1 (returned as -EPIPE). */
int conn_read(conn_t *c, packet_fn fn);
void conn_close(conn_t *c, int abort_rst);
size_t conn_pending(const conn_t *c);

/* ---- addresses ---- */
int parse_addr(const char *host, int port, struct sockaddr_in *out);
/* Source address number i, spread over 127.0.0.2 .. 127.0.0.(1+hosts); hosts 0 = no bind. */
void src_addr(uint32_t i, int hosts, struct sockaddr_in *out);
/* "host:port" (first entry of a space-separated MQTT Server Reference); loopback literals only. */
int parse_server_ref(const char *ref, struct sockaddr_in *out);

/* ---- worker processes ---- */
/* Forks n workers running body(i); each gets a pipe to the parent (wfd). Sets pids and rfds. */
void workers_spawn(int n, int (*body)(int i, int wfd, void *arg), void *arg, pid_t *pids, int *rfds);
/* Reads exactly len bytes from fd, waiting at most timeout_ms. 0 ok, -1 EOF/error/timeout. */
int read_full(int fd, void *buf, size_t len, int timeout_ms);
int write_full(int fd, const void *buf, size_t len);
void workers_signal(int n, const pid_t *pids, int sig);
void workers_reap(int n, const pid_t *pids);
double cpu_seconds(void); /* this process and its reaped children */

/* ---- RESULT line ---- */
typedef struct {
    char buf[8192];
    size_t len;
} result_t;
void result_init(result_t *r, const char *mode);
void result_u64(result_t *r, const char *key, uint64_t v);
void result_f(result_t *r, const char *key, double v);
void result_s(result_t *r, const char *key, const char *v);
void result_print(result_t *r);

/* ---- command line helpers ---- */
const char *arg_value(int argc, char **argv, const char *name, const char *def);
int arg_flag(int argc, char **argv, const char *name);
long arg_long(int argc, char **argv, const char *name, long def, long min, long max);
double arg_double(int argc, char **argv, const char *name, double def, double min, double max);
/* Rejects options not in the NULL-terminated list of known ones (flags end with '!'). */
void args_check(int argc, char **argv, const char *const *known);

int mode_conn(int argc, char **argv);
int mode_pubsub(int argc, char **argv);
int mode_watch(int argc, char **argv);
int mode_serve(int argc, char **argv);

#endif
