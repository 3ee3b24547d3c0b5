import type { LimitLog } from './limit-log.js';

/** Why a message was not delivered to a subscriber (metric label `reason`, clients API). */
export const DropReason = { QueueFull: 0, Congested: 1, TooLarge: 2, Expired: 3, Count: 4 } as const;
export type DropReason = number;
export const DROP_REASONS: readonly string[] = ['queue_full', 'congested', 'too_large', 'expired'];

/** The per-client bounds (metric label `limit`); one bit each in a client's logged-once mask. */
export const LimitHit = {
  Queue: 0,
  OutputBuffer: 1,
  SlowConsumer: 2,
  InflightBytes: 3,
  Subscriptions: 4,
  TopicAliasBytes: 5,
  PendingBytes: 6,
  ConnectingBytes: 7,
  CloseLinger: 8,
  Count: 9,
} as const;
export type LimitHit = number;
export const LIMITS: readonly string[] = [
  'queue', 'output_buffer', 'slow_consumer', 'inflight_bytes', 'subscriptions', 'topic_alias_bytes', 'pending_bytes', 'connecting_bytes', 'close_linger',
];

/**
 * Plain counters the broker bumps on its paths (no allocation, no labels); the metrics module
 * reads them at scrape time.
 */
export class BrokerStats {
  connectionsLive = 0;
  connectionsTotal = 0;
  /** CONNACK 0 sent. */
  connectionsAccepted = 0;
  /** Sockets closed for sending no CONNECT (or getting no auth verdict) within idle_timeout. */
  connectTimeouts = 0;
  acceptRateLimited = 0;
  acceptMaxConnections = 0;
  messagesRouted = 0;
  /** Messages not delivered to a subscriber, all reasons; by DropReason in `drops`. */
  dropped = 0;
  readonly drops = new Float64Array(DropReason.Count);
  /** Times a per-client bound bit, by LimitHit. */
  readonly limitHits = new Float64Array(LimitHit.Count);
  /** Bytes held by connections that have not completed CONNECT (mqtt.max_connecting_bytes). */
  connectingBytes = 0;
  /** Set by the broker: the rate-limited log of first bites. */
  limitLog: LimitLog | null = null;
  sessionsCreated = 0;
  sessionsResumed = 0;
  sessionsTakenOver = 0;
  sessionsExpired = 0;
  willsPublished = 0;
  /** PUBLISH (and wills) refused by the ACL. */
  publishDenied = 0;
  /** Deliveries withheld because the subscriber may not read the topic (ACL), its filter notwithstanding. */
  deliveriesDenied = 0;
  /** CONNECTs answered with an error CONNACK, by 5.0 reason code. */
  readonly connectRefused = new Map<number, number>();
  /** Connections ended for bad input or a protocol violation, by reason label. */
  readonly protocolErrors = new Map<string, number>();

  /** By packet type (index 1..15): packets, and bytes with the fixed header, in and out. */
  readonly packetsIn = new Float64Array(16);
  readonly bytesIn = new Float64Array(16);
  readonly packetsOut = new Float64Array(16);
  readonly bytesOut = new Float64Array(16);
  /** Connection endings by 5.0 reason code: a client's DISCONNECT, and server-initiated ones (any version). */
  readonly clientDisconnects = new Float64Array(256);
  readonly serverDisconnects = new Float64Array(256);

  countIn(type: number, bytes: number): void {
    bump(this.packetsIn, type, 1);
    bump(this.bytesIn, type, bytes);
  }

  countOut(type: number, bytes: number): void {
    bump(this.packetsOut, type, 1);
    bump(this.bytesOut, type, bytes);
  }

  countDrop(reason: DropReason): void {
    this.dropped++;
    bump(this.drops, reason, 1);
  }

  /**
   * A bound bit client `clientId`: counted, and logged when it is the first time for this client
   * (`logged`: the client's mask of bounds already logged). Returns the updated mask.
   */
  hitLimit(limit: LimitHit, clientId: string, logged: number): number {
    bump(this.limitHits, limit, 1);
    const bit = 1 << limit;
    if ((logged & bit) !== 0) return logged;
    this.limitLog?.first(LIMITS[limit] as string, clientId);
    return logged | bit;
  }

  countConnectRefused(reason: number): void {
    this.connectRefused.set(reason, (this.connectRefused.get(reason) ?? 0) + 1);
  }

  countProtocolError(label: string): void {
    this.protocolErrors.set(label, (this.protocolErrors.get(label) ?? 0) + 1);
  }
}

/** Typed-array counters: fixed size, no allocation on the paths that bump them. */
export function bump(counters: Float64Array, index: number, by: number): void {
  counters[index] = (counters[index] as number) + by;
}
