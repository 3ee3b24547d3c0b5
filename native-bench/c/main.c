/* nbench: MQTT load generator and reference server (loopback only). */
#include "core.h"

#include <string.h>

static const char usage[] =
    "usage: nbench <mode> [options]   (every mode ends with a 'RESULT key=value ...' line)\n"
    "  conn    -n N [--rate R] [--inflight M] [--version 4|5] [--persistent] [--session-expiry S]\n"
    "          [--keepalive S] [--prefix P] [--hold S] [--timeout S] [--handshake-timeout S]\n"
    "          [--src-hosts K] [--per-worker N]\n"
    "          open N connections, print 'READY ...' once done, hold them for --hold s or until\n"
    "          SIGTERM, report outcomes and CONNACK latency\n"
    "  pubsub  [--subs S] [--pubs P] [--qos 0|1] [--payload B] [--rate R | --window W]\n"
    "          [--duration S] [--drain S] [--topic T] [--version 4|5] [--prefix P] [--src-hosts K]\n"
    "          S subscribers and P publishers on one topic; R msgs/s in total, or closed loop with\n"
    "          W messages per publisher not yet delivered to every subscriber (R = 0)\n"
    "  watch   -n N [--duration S] [--follow] [--version 4|5] [--persistent] [--keepalive S]\n"
    "          [--reconnect-delay MS] [--max-retries N] [--progress S] [--prefix P] [--src-hosts K]\n"
    "          hold N connections with auto-reconnect; report server-initiated disconnects by cause\n"
    "  serve   [--port P] [--evict-after MS --evict-reason RC --server-ref REF]\n"
    "          reference server: frames one CONNECT, answers a fixed CONNACK, holds the connection;\n"
    "          optionally evicts everyone after MS ms and refuses later connects (like an evacuation)\n"
    "common: --host 127.0.0.1 --port 1883\n";

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "conn") == 0) return mode_conn(argc, argv);
    if (strcmp(argv[1], "pubsub") == 0) return mode_pubsub(argc, argv);
    if (strcmp(argv[1], "watch") == 0) return mode_watch(argc, argv);
    if (strcmp(argv[1], "serve") == 0) return mode_serve(argc, argv);
    fprintf(stderr, "nbench: unknown mode '%s'\n%s", argv[1], usage);
    return 2;
}
