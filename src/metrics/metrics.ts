// Every metric of a node, defined once with prom-client. The broker keeps plain numeric counters
// (BrokerStats, ListenerStats) on its paths; they are read here at scrape time in collect()
// callbacks, so updating a metric on the hot path is a number increment and nothing else.
// Low cardinality by rule: labels are listeners, packet types, reason codes and states, never
// clients or topics.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Broker } from '../broker/broker.js';
import type { ListenerStats } from '../broker/tcp-listener.js';
import { PacketType } from '../mqtt/packets.js';
import { reasonName } from '../mqtt/reason-codes.js';
import { EVACUATION_STATES } from '../rebalance/evacuation.js';
import type { NodeRebalance } from '../rebalance/service.js';
import { countBroker, type BrokerCounts } from './counts.js';

/** Prefix of every metric name, prom-client's default process and Node.js metrics included. */
export const METRIC_PREFIX = 'tidemq_';

/** What the metrics read. */
export interface MetricsSources {
  readonly nodeName: string;
  readonly version: string;
  readonly broker: Broker;
  /** Running listeners and their accept counters (label `listener`). */
  readonly listeners: ReadonlyArray<{ readonly name: string; readonly stats: ListenerStats }>;
  /** The eviction agent and evacuation, when the node has them. */
  readonly rebalance?: NodeRebalance;
}

/** Lower-case packet type names by type number, for the `type` label. */
const PACKET_TYPES: ReadonlyArray<readonly [number, string]> = Object.entries(PacketType).map(([name, n]) => [n, name.toLowerCase()]);

/** Accept outcomes by label value, read from a listener's counters. */
const ACCEPT_OUTCOMES: ReadonlyArray<readonly [string, (s: ListenerStats) => number]> = [
  ['accepted', (s) => s.accepted],
  ['rate_limited', (s) => s.rateLimited],
  ['max_connections', (s) => s.maxConnections],
  ['refused', (s) => s.refused],
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
    this.gauge('tidemq_retained_messages', 'Retained messages held by this node', () => src.broker.retained.size);

    this.counter('tidemq_connections_opened_total', 'Client connections opened since start', () => stats.connectionsTotal);
    this.counter('tidemq_accepts_total', 'TCP/WebSocket accepts by listener and outcome', ['listener', 'outcome'], (emit) => {
      for (const l of src.listeners) for (const [outcome, read] of ACCEPT_OUTCOMES) emit({ listener: l.name, outcome }, read(l.stats));
      // Refused at CONNECT by the eviction agent, whichever listener accepted the socket.
      if (src.rebalance !== undefined) emit({ listener: 'all', outcome: 'refused_evacuating' }, src.rebalance.agent.refusedConnects);
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
    this.counter('tidemq_messages_dropped_total', 'Messages dropped: full offline queue, congested client, over the client maximum packet size', () => stats.dropped);
    this.counter('tidemq_messages_denied_total', 'PUBLISHes refused by the ACL', () => stats.publishDenied);
    this.counter('tidemq_sessions_created_total', 'Sessions created', () => stats.sessionsCreated);
    this.counter('tidemq_sessions_resumed_total', 'Sessions resumed by a reconnecting client', () => stats.sessionsResumed);
    this.counter('tidemq_sessions_taken_over_total', 'Sessions taken over from another connection', () => stats.sessionsTakenOver);
    this.counter('tidemq_sessions_expired_total', 'Disconnected sessions that expired', () => stats.sessionsExpired);
    this.counter('tidemq_wills_published_total', 'Will messages published', () => stats.willsPublished);
    if (src.rebalance !== undefined) this.rebalanceMetrics(src.rebalance);
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
    this.counter('tidemq_connections_evicted_total', 'Connections evicted by the eviction agent (5.0 DISCONNECT 0x9C, 3.x close)', () => agent.connectionsEvicted);
    this.counter('tidemq_sessions_evicted_total', 'Disconnected sessions moved to another node by the eviction agent', () => agent.sessionsEvicted);
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
