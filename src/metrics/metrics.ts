// Every metric of a node, defined once with prom-client. The broker keeps plain numeric counters
// (BrokerStats, ListenerStats) on its paths; they are read here at scrape time in collect()
// callbacks, so updating a metric on the hot path is a number increment and nothing else.
// Low cardinality by rule: labels are listeners, packet types, reason codes and states, never
// clients or topics.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Broker } from '../broker/broker.js';
import type { LoginThrottle } from '../broker/login-throttle.js';
import { DROP_REASONS, LIMITS } from '../broker/stats.js';
import type { ListenerStats } from '../broker/tcp-listener.js';
import type { Cluster } from '../cluster/cluster.js';
import { PacketType } from '../mqtt/packets.js';
import { reasonName } from '../mqtt/reason-codes.js';
import { REBALANCE_STATES } from '../rebalance/coordinator.js';
import { EVACUATION_STATES } from '../rebalance/evacuation.js';
import type { NodeRebalance } from '../rebalance/service.js';
import { countBroker, type BrokerCounts } from './counts.js';
import { LATENCY_BUCKETS, type LatencyHistogram } from './latency.js';

/** Prefix of every metric name, prom-client's default process and Node.js metrics included. */
const METRIC_PREFIX = 'tidemq_';

/** What the metrics read. */
export interface MetricsSources {
  readonly nodeName: string;
  readonly version: string;
  readonly broker: Broker;
  /** Running listeners and their accept counters (label `listener`). */
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly stats: ListenerStats }>;
  /** The eviction agent, evacuation and rebalance, when the node has them. */
  readonly rebalance?: NodeRebalance;
  /** Membership, forwarding, migration and RPCs, when the node has a cluster. */
  readonly cluster?: Cluster;
  /** The management API's failed-login throttle, when the node serves the API. */
  readonly managementLogins?: LoginThrottle;
}

/** Lower-case packet type names by type number, for the `type` label. */
const PACKET_TYPES: ReadonlyArray<readonly [number, string]> = Object.entries(PacketType).map(([name, n]) => [n, name.toLowerCase()]);

/** Accept outcomes by label value, read from a listener's counters. */
const ACCEPT_OUTCOMES: ReadonlyArray<readonly [string, (s: ListenerStats) => number]> = [
  ['accepted', (s) => s.accepted],
  ['rate_limited', (s) => s.rateLimited],
  ['max_connections', (s) => s.maxConnections],
  ['refused', (s) => s.refused],
  ['emfile', (s) => s.emfile],
  ['connecting_bytes', (s) => s.connectingBytes],
];

type Emit = (labels: Record<string, string>, value: number) => void;

export class Metrics {
  readonly registry = new Registry();
  /** Broker counts computed once per scrape and shared by the gauges that show them. */
  private counts: BrokerCounts | null = null;

  constructor(private readonly src: MetricsSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: METRIC_PREFIX, eventLoopMonitoringPrecision: 10 });
    const stats = src.broker.stats;

    new Gauge({
      name: 'tidemq_node_info',
      help: 'Constant 1, labelled with the node name and tidemq version',
      labelNames: ['node', 'version'],
      registers: [r],
    }).set({ node: src.nodeName, version: src.version }, 1);

    this.gauge('tidemq_connections', 'Open client connections (sockets), those still before CONNECT included', () => stats.connectionsLive);
    this.gauge('tidemq_sessions', 'Sessions on this node by state: connected (a live connection) or disconnected', ['state'], (emit) => {
      const c = this.current();
      emit({ state: 'connected' }, c.liveConnections);
      emit({ state: 'disconnected' }, c.sessions - c.liveConnections);
    });
    this.gauge('tidemq_subscriptions', 'Subscriptions of all sessions on this node', () => this.current().subscriptions);
    this.gauge('tidemq_topics', 'Distinct subscription filters on this node', () => this.current().topics);
    this.gauge('tidemq_retained_messages', 'Retained messages held by this node', () => src.broker.router.retainedCount);

    this.counter('tidemq_connections_opened_total', 'Client connections opened since start', () => stats.connectionsTotal);
    this.counter('tidemq_accepts_total', 'TCP/WebSocket accepts by listener and outcome', ['listener', 'outcome'], (emit) => {
      for (const l of src.listeners) for (const [outcome, read] of ACCEPT_OUTCOMES) emit({ listener: l.name, outcome }, read(l.stats));
      // Refused at CONNECT by the eviction agent, whichever listener accepted the socket.
      if (src.rebalance !== undefined) emit({ listener: 'all', outcome: 'refused_evacuating' }, src.rebalance.agent.refusedConnects);
    });
    this.gauge('tidemq_listener_accepting', 'Whether a listener accepts (0 while paused by listeners.stop_accepting_on_evacuation)', ['listener'], (emit) => {
      for (const l of src.listeners) emit({ listener: l.name }, l.stats.accepting ? 1 : 0);
    });
    this.gauge('tidemq_listener_connections', 'Open connections by listener, TLS/WebSocket handshakes and PROXY headers in progress included', ['listener'], (emit) => {
      for (const l of src.listeners) emit({ listener: l.name }, l.stats.live);
    });
    this.counter('tidemq_connect_timeouts_total', 'Connections closed for sending no CONNECT (or getting no auth verdict) in time', () => stats.connectTimeouts);
    this.counter('tidemq_connacks_total', 'CONNACKs sent, by reason (success, or why the CONNECT was refused)', ['reason'], (emit) => {
      emit({ reason: reasonName(0) }, stats.connectionsAccepted);
      for (const [code, n] of stats.connectRefused) emit({ reason: reasonName(code) }, n);
    });
    this.counter('tidemq_disconnects_total', 'Connections ended by DISCONNECT, by origin (client or server) and reason', ['origin', 'reason'], (emit) => {
      emitByReason(emit, 'client', stats.clientDisconnects);
      emitByReason(emit, 'server', stats.serverDisconnects);
    });
    this.counter('tidemq_protocol_errors_total', 'Connections ended for bad input or a protocol violation, by reason', ['reason'], (emit) => {
      for (const [reason, n] of stats.protocolErrors) emit({ reason }, n);
    });
    this.counter('tidemq_packets_received_total', 'MQTT packets received, by type', ['type'], (emit) => emitByType(emit, stats.packetsIn));
    this.counter('tidemq_packets_sent_total', 'MQTT packets sent, by type', ['type'], (emit) => emitByType(emit, stats.packetsOut));
    this.counter('tidemq_received_bytes_total', 'Bytes of MQTT packets received (fixed header included), by type', ['type'], (emit) =>
      emitByType(emit, stats.bytesIn),
    );
    this.counter('tidemq_sent_bytes_total', 'Bytes of MQTT packets sent (fixed header included), by type', ['type'], (emit) => emitByType(emit, stats.bytesOut));
    this.counter('tidemq_messages_routed_total', 'Messages routed to local subscriptions (each publish counted once)', () => stats.messagesRouted);
    this.counter('tidemq_messages_dropped_total', 'Messages not delivered to a subscriber, by reason: queue_full (session queue over mqtt.max_queued / max_queued_bytes), congested (QoS 0 to a client over mqtt.max_output_buffer), too_large (over the client maximum packet size or the whole queue), expired', ['reason'], (emit) => {
      DROP_REASONS.forEach((reason, i) => emit({ reason }, stats.drops[i] as number));
    });
    this.counter('tidemq_limit_hits_total', 'Times a per-client or per-node memory bound bit, by limit (README "Limits and memory")', ['limit'], (emit) => {
      LIMITS.forEach((limit, i) => emit({ limit }, stats.limitHits[i] as number));
    });
    this.gauge('tidemq_connecting_bytes', 'Bytes held by connections that have not completed CONNECT (bounded by mqtt.max_connecting_bytes)', () => stats.connectingBytes);
    this.gauge('tidemq_queued_messages', 'Messages waiting in session queues (offline sessions, and connected ones over their window or output bound)', () => this.current().queued);
    this.gauge('tidemq_queued_bytes', 'Bytes of the messages in session queues, as mqtt.max_queued_bytes counts them', () => this.current().queuedBytes);
    this.counter('tidemq_messages_denied_total', 'PUBLISHes refused by the ACL', () => stats.publishDenied);
    this.counter('tidemq_sessions_created_total', 'Sessions created', () => stats.sessionsCreated);
    this.counter('tidemq_sessions_resumed_total', 'Sessions resumed by a reconnecting client', () => stats.sessionsResumed);
    this.counter('tidemq_sessions_taken_over_total', 'Sessions taken over from another connection', () => stats.sessionsTakenOver);
    this.counter('tidemq_sessions_expired_total', 'Disconnected sessions that expired', () => stats.sessionsExpired);
    this.counter('tidemq_wills_published_total', 'Will messages published', () => stats.willsPublished);
    this.securityMetrics();
    if (src.rebalance !== undefined) this.rebalanceMetrics(src.rebalance);
    if (src.cluster !== undefined) this.clusterMetrics(src.cluster);
  }

  /** ACL read checks, password checks and login throttles (SPEC 14). */
  private securityMetrics(): void {
    const { broker, managementLogins } = this.src;
    const auth = broker.authenticator;
    this.counter('tidemq_deliveries_denied_total', 'Deliveries withheld because the subscriber may not read the topic (ACL), whatever its filter matched', () => broker.stats.deliveriesDenied);
    this.gauge('tidemq_acl_cache_entries', 'Read-ACL verdicts cached (auth.acl_cache_size bounds it)', () => broker.acl.cacheSize);
    this.gauge('tidemq_auth_pending_checks', 'Password checks queued or running (auth.max_pending_checks bounds it)', () => auth.pendingChecks);
    this.counter('tidemq_auth_refused_total', 'CONNECTs refused with Server busy before a password check: busy (over auth.max_pending_checks) or throttled (the address failed too often)', ['reason'], (emit) => {
      emit({ reason: 'busy' }, auth.refusedBusy);
      emit({ reason: 'throttled' }, auth.refusedThrottled);
    });
    this.counter('tidemq_auth_checks_cancelled_total', 'Queued password checks dropped because their connection closed first', () => auth.cancelledChecks);
    if (managementLogins !== undefined) {
      this.counter('tidemq_management_logins_throttled_total', 'Management API requests refused with 429 (too many failed logins from the address)', () => managementLogins.throttled);
    }
  }

  /** Members, forwarding, session migration and inter-node RPCs (SPEC 10). */
  private clusterMetrics(cluster: Cluster): void {
    this.gauge('tidemq_cluster_members', 'Cluster members as this node sees them: up (this node included) or down', ['state'], (emit) => {
      const status = cluster.status();
      emit({ state: 'up' }, status.running.length);
      emit({ state: 'down' }, status.stopped.length);
    });
    this.counter('tidemq_messages_forwarded_total', 'Messages forwarded between nodes: out (one per peer node with a matching route) or in', ['direction'], (emit) => {
      emit({ direction: 'out' }, cluster.forwardsSent);
      emit({ direction: 'in' }, cluster.forwardsReceived);
    });
    this.counter('tidemq_cluster_forwards_dropped_total', 'QoS 0 forwards dropped because the link to the peer was over half cluster.max_link_backlog', () => cluster.stats.forwardsDropped);
    this.counter('tidemq_cluster_registry_changes_total', 'Client registry changes (sessions opened or discarded here) announced to the other nodes', () => cluster.stats.registryChanges);
    this.counter('tidemq_cluster_registry_batches_total', 'Batches in which registry changes went out to the other nodes together (changes per batch: the coalescing)', () => cluster.stats.registryBatches);
    this.counter('tidemq_cluster_link_backlog_failures_total', 'Cluster links closed as failed because a QoS 1/2 forward found them over cluster.max_link_backlog', () => cluster.stats.backlogFailures);
    this.counter('tidemq_cluster_handshake_refusals_total', 'Cluster link handshakes failed, by reason (bad_cookie, timeout, frame_too_large, too_many_pending, tls, ...)', ['reason'], (emit) => {
      for (const [reason, n] of cluster.stats.refusals) emit({ reason }, n);
    });
    this.counter('tidemq_sessions_migrated_total', 'Sessions moved between nodes by takeover (client reconnects, evictions): in to this node or out of it', ['direction'], (emit) => {
      emit({ direction: 'in' }, cluster.takeover.migratedIn);
      emit({ direction: 'out' }, cluster.takeover.migratedOut);
    });
    const rpc = cluster.rpc.stats;
    this.counter('tidemq_cluster_rpc_calls_total', 'Inter-node RPCs this node made, by method and outcome (ok, error from the peer, timeout, down: no answer from a node gone)', ['method', 'outcome'], (emit) => {
      for (const [method, s] of rpc) {
        emit({ method, outcome: 'ok' }, s.ok);
        emit({ method, outcome: 'error' }, s.error);
        emit({ method, outcome: 'timeout' }, s.timeout);
        emit({ method, outcome: 'down' }, s.down);
      }
    });
    new LatencyFamily('tidemq_cluster_rpc_duration_seconds', 'Round trip of the inter-node RPCs this node made that got an answer, by method', 'method', this.registry, function* () {
      for (const [method, s] of rpc) yield [method, s.latency];
    });
  }

  /** Eviction agent and evacuation (SPEC 10): states as labelled 0/1 gauges, eviction counters. */
  private rebalanceMetrics(rebalance: NodeRebalance): void {
    const agent = rebalance.agent;
    this.gauge('tidemq_eviction_agent_enabled', 'Eviction agent state: 1 for the kind it is enabled for (evacuation or rebalance), 0 otherwise', ['kind'], (emit) => {
      for (const kind of ['evacuation', 'rebalance'] as const) emit({ kind }, agent.state?.kind === kind ? 1 : 0);
    });
    this.gauge('tidemq_evacuation_state', 'Evacuation of this node: 1 for its current state, 0 for the others (all 0: not evacuating)', ['state'], (emit) => {
      const current = rebalance.evacuation.state;
      for (const state of EVACUATION_STATES) emit({ state }, state === current ? 1 : 0);
    });
    this.counter('tidemq_connections_evicted_total', 'Connections evicted by the eviction agent (5.0 DISCONNECT 0x9C, 3.x close), by kind (evacuation or rebalance)', ['kind'], (emit) => {
      for (const kind of ['evacuation', 'rebalance'] as const) emit({ kind }, agent.evicted[kind].connections);
    });
    this.counter('tidemq_sessions_evicted_total', 'Disconnected sessions moved to another node by the eviction agent, by kind (evacuation or rebalance)', ['kind'], (emit) => {
      for (const kind of ['evacuation', 'rebalance'] as const) emit({ kind }, agent.evicted[kind].sessions);
    });
    this.gauge('tidemq_rebalance_state', "Cluster rebalance: 1 for the current state of this node's part in one (role coordinator or donor), 0 for the others", ['role', 'state'], (emit) => {
      for (const [role, current] of [['coordinator', rebalance.coordinator.state], ['donor', rebalance.donor.state]] as const) {
        for (const state of REBALANCE_STATES) emit({ role, state }, state === current ? 1 : 0);
      }
    });
    // The coordinator's view (0 while it coordinates none): goals are the recipients' averages.
    this.gauge('tidemq_rebalance_goal', "Rebalance coordinated here: the recipients' average connections and disconnected sessions (the donors' goals)", ['count'], (emit) => {
      const s = rebalance.coordinator.status();
      emit({ count: 'connections' }, s?.connection_goal ?? 0);
      emit({ count: 'disconnected_sessions' }, s?.disconnected_session_goal ?? 0);
    });
    this.gauge('tidemq_rebalance_donor_average', "Rebalance coordinated here: the donors' average connections and disconnected sessions", ['count'], (emit) => {
      const s = rebalance.coordinator.status();
      emit({ count: 'connections' }, s?.donor_conn_avg ?? 0);
      emit({ count: 'disconnected_sessions' }, s?.donor_sess_avg ?? 0);
    });
    this.counter('tidemq_session_evictions_failed_total', 'Session moves to another node that failed (the session stayed here)', () => agent.sessionMovesFailed);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    this.counts = null;
    try {
      return await this.registry.metrics();
    } finally {
      this.counts = null;
    }
  }

  private current(): BrokerCounts {
    return (this.counts ??= countBroker(this.src.broker));
  }

  /** A gauge set at scrape time: one value (read), or labelled values (labelNames + readAll). */
  private gauge(name: string, help: string, read: () => number): void;
  private gauge(name: string, help: string, labelNames: string[], readAll: (emit: Emit) => void): void;
  private gauge(name: string, help: string, a: string[] | (() => number), readAll?: (emit: Emit) => void): void {
    const [labelNames, read] = Array.isArray(a) ? [a, undefined] : [[], a];
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        if (read !== undefined) this.set(read());
        else readAll?.((labels, value) => this.set(labels, value));
      },
    });
  }

  /**
   * A counter whose total lives elsewhere (a BrokerStats field): at scrape time it is replaced by
   * that total. One value (read), or labelled values (labelNames + readAll).
   */
  private counter(name: string, help: string, read: () => number): void;
  private counter(name: string, help: string, labelNames: string[], readAll: (emit: Emit) => void): void;
  private counter(name: string, help: string, a: string[] | (() => number), readAll?: (emit: Emit) => void): void {
    const [labelNames, read] = Array.isArray(a) ? [a, undefined] : [[], a];
    new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        if (read !== undefined) this.inc(read());
        else readAll?.((labels, value) => this.inc(labels, value));
      },
    });
  }
}

/** One value of a metric as prom-client's registry formats it. */
interface MetricLine {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * A Prometheus histogram over LatencyHistograms kept elsewhere (fixed buckets, plain numbers), one
 * per value of `label`: prom-client cannot load bucket counts, so the registry's read is replaced.
 */
class LatencyFamily extends Histogram<string> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    private readonly label: string,
    registry: Registry,
    private readonly read: () => Iterable<[string, LatencyHistogram]>,
  ) {
    super({ name: metricName, help: helpText, labelNames: [label], buckets: [...LATENCY_BUCKETS], registers: [registry] });
  }

  /** What Registry.metrics() reads of a histogram (prom-client 15). */
  async getForPromString(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: MetricLine[] }> {
    const values: MetricLine[] = [];
    const bucket = `${this.metricName}_bucket`;
    for (const [key, h] of this.read()) {
      let cumulative = 0;
      for (let i = 0; i <= LATENCY_BUCKETS.length; i++) {
        cumulative += h.counts[i] as number;
        values.push({ metricName: bucket, labels: { [this.label]: key, le: LATENCY_BUCKETS[i] ?? '+Inf' }, value: cumulative });
      }
      values.push({ metricName: `${this.metricName}_sum`, labels: { [this.label]: key }, value: h.sum });
      values.push({ metricName: `${this.metricName}_count`, labels: { [this.label]: key }, value: h.count });
    }
    return { name: this.metricName, help: this.helpText, type: 'histogram', aggregator: 'sum', values };
  }
}

function emitByType(emit: Emit, counts: Float64Array): void {
  for (const [type, name] of PACKET_TYPES) emit({ type: name }, counts[type] as number);
}

/** Only the reasons that occurred: 256 zero series per origin would be noise. */
function emitByReason(emit: Emit, origin: string, counts: Float64Array): void {
  for (let code = 0; code < counts.length; code++) {
    const n = counts[code] as number;
    if (n > 0) emit({ origin, reason: reasonName(code) }, n);
  }
}
