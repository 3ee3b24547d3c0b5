// Point-in-time counts of one node's clients, sessions and topics: what `/stats` reports (EMQX
// names) and what the gauges of `/metrics` show, computed in one place.
import type { Broker } from '../broker/broker.js';

export interface BrokerCounts {
  /** Open client connections, including those that have not sent CONNECT yet. */
  readonly connections: number;
  /** Sessions with a live connection (MQTT clients past CONNACK). */
  readonly liveConnections: number;
  readonly sessions: number;
  /** Subscriptions of all sessions (shared ones included). */
  readonly subscriptions: number;
  /** Distinct non-shared subscription filters with at least one subscriber. */
  readonly topics: number;
  readonly retained: number;
  /** Deliveries waiting in session queues, and their bytes (payload and topic). */
  readonly queued: number;
  readonly queuedBytes: number;
}

/** One pass over the sessions: O(sessions), meant for scrapes and API calls, not the hot path. */
export function countBroker(broker: Broker): BrokerCounts {
  let live = 0;
  let subscriptions = 0;
  let queued = 0;
  let queuedBytes = 0;
  for (const session of broker.sessions.values()) {
    if (session.owner !== null) live++;
    subscriptions += session.subscriptions.size;
    queued += session.queuedCount;
    queuedBytes += session.queuedBytes;
  }
  return {
    connections: broker.stats.connectionsLive,
    liveConnections: live,
    sessions: broker.sessions.size,
    subscriptions,
    topics: broker.router.filterCount,
    retained: broker.router.retainedCount,
    queued,
    queuedBytes,
  };
}

/** The `/stats` view, with EMQX's key names (`tidemq ctl broker stats` prints them in this order). */
export function emqxStats(c: BrokerCounts): Record<string, number> {
  return {
    'connections.count': c.connections,
    'live_connections.count': c.liveConnections,
    'sessions.count': c.sessions,
    'channels.count': c.sessions,
    'subscriptions.count': c.subscriptions,
    'subscribers.count': c.subscriptions,
    'topics.count': c.topics,
    'retained.count': c.retained,
  };
}
