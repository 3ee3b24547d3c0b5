import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Properties } from '../mqtt/packets.js';
import { DurableAcks } from '../store/durable-acks.js';
import type { SessionStore } from '../store/store.js';
import type { Acl } from './acl.js';
import type { Authenticator } from './auth.js';
import type { ClusterBridge } from './cluster-bridge.js';
import { LimitLog } from './limit-log.js';
import { Router } from './router.js';
import type { SessionLimits, SessionOwner } from './session.js';
import { Sessions, type SessionsContext } from './sessions.js';
import { BrokerStats } from './stats.js';
import type { TimerWheel } from './timer-wheel.js';

/** Set on the broker while the eviction agent refuses new connections (SPEC 5). */
export interface ConnectRefusal {
  /** 5.0 CONNACK 0x9C properties: the Server Reference when a redirect is set. */
  properties: Properties | undefined;
  /** CONNECTs refused so far (metrics: accept outcome refused_evacuating). */
  refused: number;
}

/** A live client connection, whatever carries it (TCP, WebSocket). */
export interface ClientConnection extends SessionOwner {
  readonly clientId: string;
  /** Ends the connection for a takeover: 5.0 DISCONNECT 0x8E, no will (SPEC 4). */
  takenOver(): void;
  /** Server-initiated end: 5.0 DISCONNECT `reason` (+ properties), 3.x close. */
  disconnect(reason: number, publishWill: boolean, properties?: Properties): void;
}

/**
 * One node's broker: what its connections (protocol.ts) share. The router (subscriptions,
 * shared groups, retained messages) and the sessions (their lifecycle and persistence) do the
 * work; the broker holds them with the configuration, the open connections and the counters.
 */
export class Broker implements SessionsContext {
  /** Every open connection, from accept to close (also those still before CONNECT). */
  readonly connections = new Set<ClientConnection>();
  readonly stats = new BrokerStats();
  readonly limits: SessionLimits;
  readonly router: Router;
  readonly sessions: Sessions;
  /** Acks waiting for store durability, batched per turn; null without a store. */
  readonly durableAcks: DurableAcks | null;
  /** Non-null while new CONNECTs are refused before authentication (eviction agent). */
  connectRefusal: ConnectRefusal | null = null;
  /** Set by the cluster when this node is part of one; null keeps the broker single-node. */
  cluster: ClusterBridge | null = null;

  constructor(
    readonly config: Config,
    readonly wheel: TimerWheel,
    readonly authenticator: Authenticator,
    readonly acl: Acl,
    readonly log: Logger,
    /** Where persistent sessions and retained messages live; null keeps everything in memory. */
    readonly store: SessionStore | null = null,
  ) {
    this.durableAcks = store === null ? null : new DurableAcks(store, log);
    this.limits = { maxQueued: config.mqtt.max_queued, maxQueuedBytes: config.mqtt.max_queued_bytes, maxInflightBytes: config.mqtt.max_inflight_bytes };
    this.stats.limitLog = new LimitLog(log);
    this.router = new Router(this);
    this.sessions = new Sessions(this);
  }

  /** A client id for a 5.0 client that sent none [MQTT-3.1.3-6]; unique across nodes. */
  assignClientId(): string {
    return `auto-${randomUUID()}`;
  }
}
