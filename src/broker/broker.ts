import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { encodePacket } from '../mqtt/encode.js';
import { PacketType, type Properties, type ProtocolVersion, type QoS } from '../mqtt/packets.js';
import { ReasonCode } from '../mqtt/reason-codes.js';
import { parseSharedFilter } from '../mqtt/topic.js';
import { restoreSession, SessionJournal, toMessage } from '../store/journal.js';
import { DurableAcks } from '../store/durable-acks.js';
import type { SessionStore } from '../store/store.js';
import type { Acl } from './acl.js';
import type { Authenticator } from './auth.js';
import { messageKey, routeId, type ClusterBridge } from './cluster-bridge.js';
import { ownPayload, type Message } from './message.js';
import { LimitLog } from './limit-log.js';
import { RetainedTree } from './retained-tree.js';
import { addSubscriptionId, Session, type SessionLimits, type SessionOwner, type SubscriptionIds, type SubscriptionOptions, type WillState } from './session.js';
import { BrokerStats } from './stats.js';
import { SubscriptionTrie } from './subscription-trie.js';
import { TimerWheel, WheelTimer } from './timer-wheel.js';

/** A session's subscription as the trie holds it. */
interface Subscriber {
  kind: 0;
  session: Session;
  options: SubscriptionOptions;
  /** The ACL may deny some topics this filter matches: each delivery asks Broker.mayRead. */
  readCheck: boolean;
}

/** One `$share/group/filter`: each message goes to one member, round robin [MQTT-4.8.2-3]. */
interface SharedGroup {
  kind: 1;
  members: Subscriber[];
  next: number;
  filter: string;
  group: string;
  /** routeId(filter, group): how a forwarded message names the groups it is for. */
  id: string;
}

type TrieEntry = Subscriber | SharedGroup;

/** Session Expiry Interval meaning "never expires" [MQTT-3.1.2-?] (0xFFFFFFFF). */
export const NEVER_EXPIRES = 0xffffffff;

/** What a connection asks for when it opens a session. */
export interface SessionRequest {
  clientId: string;
  username: string | undefined;
  cleanStart: boolean;
  expiryInterval: number;
  will: WillState | undefined;
}

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
 * One node's broker state: sessions, the subscription trie, retained messages and wills. It
 * routes a message to local sessions; connections (protocol.ts) call into it.
 */
export class Broker {
  readonly sessions = new Map<string, Session>();
  /** Every open connection, from accept to close (also those still before CONNECT). */
  readonly connections = new Set<ClientConnection>();
  readonly subscriptions = new SubscriptionTrie<TrieEntry>();
  readonly retained = new RetainedTree<Message>();
  readonly stats = new BrokerStats();
  readonly limits: SessionLimits;
  /** Acks waiting for store durability, batched per turn; null without a store. */
  readonly durableAcks: DurableAcks | null;
  /** Non-null while new CONNECTs are refused before authentication (eviction agent). */
  connectRefusal: ConnectRefusal | null = null;
  /** CONNACKs for the common case, built once: [3.1, 3.1.1 no session, 3.1.1 session, 5.0 no session, 5.0 session]. */
  private readonly connacks: Buffer[];
  /** CONNACK properties every 5.0 client gets: our limits and what we do not support. */
  private readonly connackProperties: Properties;
  /** The message being routed by publish(); the trie visitor reads it instead of a closure. */
  private routing: Message | null = null;
  private routed = 0;
  /**
   * The sessions the routed message's plain subscriptions matched, in match order, and what their
   * matching subscriptions add up to (Session.routeSlot indexes these): each gets one copy
   * [MQTT-3.3.4-2]. Parallel arrays reused across publishes, never shortened (that would drop
   * their storage): entries [0, matchedCount) are this publish's; nothing is allocated per match.
   */
  private matchedCount = 0;
  private readonly matched: Array<Session | null> = [];
  private readonly matchedQos: QoS[] = [];
  private readonly matchedRetain: boolean[] = [];
  private readonly matchedIds: SubscriptionIds[] = [];
  /** Set by the cluster when this node is part of one; null keeps the broker single-node. */
  cluster: ClusterBridge | null = null;
  /** While routing a message forwarded by another node: the shared groups it is for here. */
  private forwardedGroups: readonly string[] | null = null;

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
    const mqtt = config.mqtt;
    const p: Properties = {};
    if (mqtt.max_inflight < 65535) p.receiveMaximum = mqtt.max_inflight;
    p.maximumPacketSize = mqtt.max_packet_size;
    if (mqtt.max_topic_alias > 0) p.topicAliasMaximum = mqtt.max_topic_alias;
    if (mqtt.max_qos < 2) p.maximumQoS = mqtt.max_qos;
    if (!mqtt.retain_available) p.retainAvailable = 0;
    if (!mqtt.wildcard_subscriptions) p.wildcardSubscriptionAvailable = 0;
    if (!mqtt.subscription_identifiers) p.subscriptionIdentifiersAvailable = 0;
    if (!mqtt.shared_subscriptions) p.sharedSubscriptionAvailable = 0;
    this.connackProperties = p;
    const build = (version: ProtocolVersion, sessionPresent: boolean): Buffer =>
      encodePacket({ type: PacketType.CONNACK, sessionPresent, reasonCode: 0, properties: version === 5 ? p : undefined }, version);
    this.connacks = [build(3, false), build(4, false), build(4, true), build(5, false), build(5, true)];
  }

  /** A successful CONNACK; prebuilt unless this connection needs `extra` 5.0 properties. */
  connack(version: ProtocolVersion, sessionPresent: boolean, extra: Properties | undefined): Buffer {
    if (extra !== undefined) {
      return encodePacket({ type: PacketType.CONNACK, sessionPresent, reasonCode: 0, properties: { ...this.connackProperties, ...extra } }, version);
    }
    const i = version === 3 ? 0 : (version === 4 ? 1 : 3) + (sessionPresent ? 1 : 0);
    return this.connacks[i] as Buffer;
  }

  /** A client id for a 5.0 client that sent none [MQTT-3.1.3-6]; unique across nodes. */
  assignClientId(): string {
    return `auto-${randomUUID()}`;
  }

  /**
   * Routes one message to every matching local subscription and updates the retained store.
   * Returns how many subscriptions it matched.
   */
  publish(message: Message): number {
    const cluster = this.cluster;
    if (message.retain) {
      this.applyRetained(message);
      if (cluster !== null) cluster.retained(message);
    }
    if (cluster !== null) cluster.beginPublish(message);
    this.route(message, null);
    this.stats.messagesRouted++;
    // Remote nodes with a matching route count as matches (5.0 "no matching subscribers").
    return cluster === null ? this.routed : this.routed + cluster.forward(message);
  }

  /**
   * Delivers a message another node forwarded to the local subscribers: every matching plain
   * subscription and, of the shared groups, only those in `groups` (the publishing node picked
   * this node for them). Not retained or forwarded again: the publishing node does that.
   */
  publishForwarded(message: Message, groups: readonly string[]): number {
    this.route(message, groups);
    this.stats.messagesRouted++;
    return this.routed;
  }

  private route(message: Message, groups: readonly string[] | null): void {
    if (this.routing !== null) throw new Error('publish() re-entered while routing');
    this.routing = message;
    this.forwardedGroups = groups;
    this.routed = 0;
    const matched = this.matched;
    try {
      this.subscriptions.match(message.topic, this, visitEntry);
      for (let i = 0; i < this.matchedCount; i++) {
        this.deliverTo(matched[i] as Session, this.matchedQos[i] as QoS, this.matchedRetain[i] as boolean, this.matchedIds[i] as SubscriptionIds);
      }
    } finally {
      // The references go, so the arrays keep no ended session alive.
      for (let i = 0; i < this.matchedCount; i++) {
        (matched[i] as Session).routeSlot = -1;
        matched[i] = null;
        this.matchedIds[i] = 0;
      }
      this.matchedCount = 0;
      this.routing = null;
      this.forwardedGroups = null;
    }
  }

  /** @internal Whether the message being routed goes to this local shared group. */
  takesGroup(group: SharedGroup): boolean {
    const forwarded = this.forwardedGroups;
    if (forwarded !== null) return forwarded.includes(group.id);
    return this.cluster === null || this.cluster.shareLocally(group.filter, group.group);
  }

  /** Sets or (empty payload) clears a retained message here and in the store; the cluster
   *  calls it for the retained messages other nodes replicate. */
  applyRetained(message: Message): void {
    // [MQTT-3.3.1-6] a zero-length retained payload removes the retained message.
    if (message.payload.length === 0) {
      this.retained.delete(message.topic);
      if (this.store !== null) this.store.deleteRetained(message.topic);
      return;
    }
    ownPayload(message);
    this.retained.set(message.topic, message);
    if (this.store !== null) this.store.putRetained(message);
  }

  /** @internal Whether the subscriber may read the message being routed (SPEC 14: whatever its filter). */
  mayRead(sub: Subscriber): boolean {
    return !sub.readCheck || this.acl.mayRead(sub.session.clientId, sub.session.username, (this.routing as Message).topic);
  }

  /**
   * @internal Called by visitEntry for each matching plain subscription: the first one of a
   * session with several subscriptions adds it to the match list; another one of the same session
   * (overlapping filters) makes that one copy go at the higher QoS and carry its Subscription
   * Identifier too [MQTT-3.3.4-2] [MQTT-3.3.4-3]. Retain-as-published: the retain flag is kept if
   * any of them asks so.
   */
  matchSubscriber(sub: Subscriber): void {
    const message = this.routing as Message;
    const options = sub.options;
    const session = sub.session;
    if (options.noLocal && session.clientId === message.from) return; // [MQTT-3.8.3-3]
    const qos = (message.qos < options.qos ? message.qos : options.qos) as QoS;
    // [MQTT-3.3.1-12] [MQTT-3.3.1-13]
    const retain = options.retainAsPublished && message.retain;
    // The common case: no other subscription of the session can match, so it is delivered now.
    if (session.subscriptions.size === 1) {
      this.deliverTo(session, qos, retain, options.subscriptionId);
      return;
    }
    const slot = session.routeSlot;
    if (slot < 0) {
      const n = this.matchedCount++;
      session.routeSlot = n;
      this.matched[n] = session;
      this.matchedQos[n] = qos;
      this.matchedRetain[n] = retain;
      this.matchedIds[n] = options.subscriptionId;
      return;
    }
    if (qos > (this.matchedQos[slot] as QoS)) this.matchedQos[slot] = qos;
    if (retain) this.matchedRetain[slot] = true;
    this.matchedIds[slot] = addSubscriptionId(this.matchedIds[slot] as SubscriptionIds, options.subscriptionId);
  }

  /** @internal A shared group's pick: a delivery of its own, whatever else the session matched. */
  deliverShared(sub: Subscriber): void {
    const message = this.routing as Message;
    const options = sub.options;
    const qos = (message.qos < options.qos ? message.qos : options.qos) as QoS;
    this.deliverTo(sub.session, qos, options.retainAsPublished && message.retain, options.subscriptionId);
  }

  /** One copy of the routed message to one session. */
  private deliverTo(session: Session, qos: QoS, retain: boolean, subscriptionIds: SubscriptionIds): void {
    const message = this.routing as Message;
    const handover = session.handover;
    if (handover !== null) {
      // Taken over from another node just now: a message that reached both nodes is delivered once.
      const key = messageKey(message);
      if (key !== undefined) {
        if (handover.has(key)) return;
        handover.add(key);
      }
    }
    this.routed++;
    session.deliver(message, qos, retain, subscriptionIds, this.limits, this.stats);
  }

  /**
   * Opens the session for a connection that has passed authentication: takes it from a live
   * connection if there is one, resumes or replaces it per Clean Start [MQTT-3.1.2-4]
   * [MQTT-3.1.2-5]. The caller attaches its connection after sending CONNACK.
   */
  openSession(req: SessionRequest, now: number): { session: Session; present: boolean } {
    let session = this.sessions.get(req.clientId);
    if (session !== undefined) {
      const owner = session.owner;
      if (owner !== null) {
        (owner as ClientConnection).takenOver();
        this.stats.sessionsTakenOver++;
      }
      this.cancelTimers(session);
      if (this.sessions.get(req.clientId) !== session) {
        // An expiry-0 session ended with the connection just taken over: nothing to resume, and
        // Session Present must be 0 [MQTT-3.2.2-2].
        session = undefined;
      } else if (req.cleanStart) {
        // The old session ends here: a will still waiting for its delay is due now [MQTT-3.1.3-9].
        if (session.will !== undefined && owner === null) this.publishWill(session);
        this.discard(session);
        session = undefined;
      } else {
        // Resumed before the will delay ran out: the will is not sent [MQTT-3.1.3-9].
        this.stats.sessionsResumed++;
      }
    }
    const present = session !== undefined;
    if (session === undefined) {
      session = new Session(req.clientId, req.expiryInterval, now);
      this.sessions.set(req.clientId, session);
      this.stats.sessionsCreated++;
    }
    session.expiryInterval = req.expiryInterval;
    session.will = req.will;
    if (session.username !== req.username) {
      session.username = req.username;
      // Another identity resumes it: its subscriptions' read checks are decided again.
      for (const [filter, options] of session.subscriptions) this.subscribe(session, filter, options);
    }
    // Connected from here on: stored so, a crash restarts its expiry clock at the restart.
    session.disconnectedAt = 0;
    this.persist(session);
    if (this.cluster !== null) this.cluster.sessionOpened(session);
    return { session, present };
  }

  /** Installs a session taken over from another node, disconnected, with its subscriptions. */
  adoptSession(session: Session, subscriptions: ReadonlyArray<[string, SubscriptionOptions]>): void {
    this.sessions.set(session.clientId, session);
    for (const [filter, options] of subscriptions) this.subscribe(session, filter, options);
  }

  /**
   * Another node takes this client's session: the live connection ends (5.0 DISCONNECT 0x8E, no
   * will) and the session stops its timers while it is handed over. Undefined when there is no
   * session left to hand over (none, or one that ended with its connection).
   */
  handOver(clientId: string): Session | undefined {
    const session = this.sessions.get(clientId);
    if (session === undefined) return undefined;
    if (session.owner !== null) {
      (session.owner as ClientConnection).takenOver();
      this.stats.sessionsTakenOver++;
    }
    if (this.sessions.get(clientId) !== session) return undefined;
    this.cancelTimers(session);
    return session;
  }

  /** The end of a handOver: `moved`, the session is gone from here (no will); else it stays,
   *  disconnected, with its timers running again. */
  endHandOver(session: Session, moved: boolean, now: number): void {
    if (moved) {
      session.will = undefined;
      this.discard(session);
    } else if (session.owner === null && this.sessions.get(session.clientId) === session) {
      this.scheduleEnd(session, now);
    }
  }

  /** Keeps the store in step with whether the session outlives its connection (SPEC 3). */
  private persist(session: Session): void {
    const store = this.store;
    if (store === null) return;
    const journal = session.journal;
    if (session.expiryInterval === 0) {
      // It ends with its connection: a stored copy would outlive it.
      if (journal !== null) {
        journal.delete(session);
        session.journal = null;
      }
      return;
    }
    if (journal !== null) journal.save(session);
    else {
      session.journal = new SessionJournal(store, store.allocateSid(), 0);
      session.journal.saveAll(session);
    }
  }

  /** Writes a persistent session's header after its subscriptions changed. */
  saveSession(session: Session): void {
    if (session.journal !== null) session.journal.save(session);
  }

  /**
   * Loads the store at start: retained messages, and the persistent sessions, disconnected, with
   * their expiry clocks restarted from the stored disconnect time; expired ones are dropped (their
   * entries are deleted in the background by the store's sweep).
   */
  restore(now: number): { sessions: number; expired: number; retained: number } {
    const counts = { sessions: 0, expired: 0, retained: 0 };
    const store = this.store;
    if (store === null) return counts;
    for (const stored of store.loadRetained()) {
      if (stored.expiresAt !== 0 && stored.expiresAt <= now) store.deleteRetained(stored.topic);
      else {
        this.retained.set(stored.topic, toMessage(stored));
        counts.retained++;
      }
    }
    const restored: Session[] = [];
    /** Expired while the node was down with their wills still pending. */
    const ended: Session[] = [];
    for (const stored of store.loadSessions()) {
      const session = restoreSession(stored, store, now, { limits: this.limits, stats: this.stats });
      const expiry = session.expiryInterval;
      if (expiry !== NEVER_EXPIRES && session.disconnectedAt + expiry * 1000 <= now) {
        if (session.will !== undefined) ended.push(session);
        else store.deleteSession(session.clientId, stored.sid);
        counts.expired++;
        continue;
      }
      this.sessions.set(session.clientId, session);
      for (const [filter, options] of stored.record.subscriptions) this.subscribe(session, filter, options);
      restored.push(session);
    }
    // Every subscriber is in place before an overdue will goes out.
    for (const session of restored) this.scheduleEnd(session, now);
    // The session ended while the node was down, and its will with it [MQTT-3.1.3-9]: published
    // now, once (the stored will is gone with the session), before the session is discarded.
    for (const session of ended) {
      this.publishWill(session);
      this.discard(session);
    }
    counts.sessions = restored.length;
    return counts;
  }

  /**
   * A session's connection has ended. A session with expiry 0 ends now; otherwise it waits,
   * disconnected, for its expiry. With `publishWill`, the will goes out now or after its delay,
   * whichever of delay and session end comes first [MQTT-3.1.3-9]; without, it is dropped
   * (normal DISCONNECT [MQTT-3.14.4-3], or a takeover).
   */
  closeSession(session: Session, publishWill: boolean, now: number): void {
    session.detach(now);
    if (!publishWill) session.will = undefined;
    if (session.expiryInterval === 0) {
      if (session.will !== undefined) this.publishWill(session);
      this.discard(session);
      return;
    }
    if (session.journal !== null) session.journal.save(session);
    this.scheduleEnd(session, now);
  }

  /** Expiry and will timers of a disconnected session, counted from its disconnect time. */
  private scheduleEnd(session: Session, now: number): void {
    const since = session.disconnectedAt;
    if (session.expiryInterval !== NEVER_EXPIRES) {
      session.expiryTimer ??= new WheelTimer(() => this.expire(session));
      this.wheel.schedule(session.expiryTimer, since + session.expiryInterval * 1000);
    }
    const will = session.will;
    if (will !== undefined) {
      const at = since + will.delay * 1000;
      if (at <= now) this.publishWill(session);
      else {
        session.willTimer ??= new WheelTimer(() => this.publishWill(session));
        this.wheel.schedule(session.willTimer, at);
      }
    }
  }

  private expire(session: Session): void {
    if (this.endSession(session)) this.stats.sessionsExpired++;
  }

  /**
   * Ends a disconnected session now, as its expiry would: a will still waiting for its delay goes
   * out [MQTT-3.1.3-9]. Also the management API's kick of a disconnected client (EMQX discards
   * such a session). Returns whether it ended one.
   */
  private endSession(session: Session): boolean {
    if (session.owner !== null || this.sessions.get(session.clientId) !== session) return false;
    if (session.will !== undefined) this.publishWill(session);
    this.discard(session);
    return true;
  }

  /**
   * The management API's kick, on the node that holds the session: a live connection ends
   * server-side (5.0 DISCONNECT 0x98, the will is published [MQTT-3.1.2-8]); a disconnected
   * session is discarded with its pending will, as EMQX 4.4 does. False when there is none here.
   */
  kick(clientId: string): boolean {
    const session = this.sessions.get(clientId);
    if (session === undefined) return false;
    const owner = session.owner;
    if (owner !== null) (owner as ClientConnection).disconnect(ReasonCode.AdministrativeAction, true);
    else this.endSession(session);
    return true;
  }

  private publishWill(session: Session): void {
    const will = session.will;
    if (will === undefined) return;
    session.will = undefined;
    if (session.willTimer !== null) this.wheel.cancel(session.willTimer);
    if (session.journal !== null) session.journal.save(session);
    // Checked at CONNECT too; again here, for a session restored or moved with its will.
    if (!this.acl.check('publish', session.clientId, session.username, will.topic)) {
      this.stats.publishDenied++;
      return;
    }
    let properties: Properties | undefined;
    let expiresAt = 0;
    if (will.properties !== undefined) {
      const { willDelayInterval: _delay, ...rest } = will.properties;
      properties = rest;
      if (rest.messageExpiryInterval !== undefined) expiresAt = Date.now() + rest.messageExpiryInterval * 1000;
    }
    this.stats.willsPublished++;
    this.publish({ topic: will.topic, payload: will.payload, qos: will.qos, retain: will.retain, properties, expiresAt, from: session.clientId, owned: true });
  }

  /** Removes a session and all its subscriptions. */
  private discard(session: Session): void {
    this.cancelTimers(session);
    for (const filter of session.subscriptions.keys()) this.removeSubscription(session, filter);
    session.subscriptions.clear();
    if (this.sessions.get(session.clientId) === session) {
      this.sessions.delete(session.clientId);
      if (this.cluster !== null) this.cluster.sessionDiscarded(session.clientId);
    }
    if (session.journal !== null) {
      session.journal.delete(session);
      session.journal = null;
    }
  }

  private cancelTimers(session: Session): void {
    if (session.expiryTimer !== null) this.wheel.cancel(session.expiryTimer);
    if (session.willTimer !== null) this.wheel.cancel(session.willTimer);
  }

  /**
   * Adds or replaces a subscription ([MQTT-3.8.4-3]: a repeated filter replaces the old one).
   * `filter` is valid (possibly `$share/group/f`). Returns whether it existed before.
   */
  subscribe(session: Session, filter: string, options: SubscriptionOptions): boolean {
    const existed = session.subscriptions.has(filter);
    session.subscriptions.set(filter, options);
    const shared = parseSharedFilter(filter);
    const plain = typeof shared === 'object' ? shared.filter : filter;
    const sub: Subscriber = { kind: 0, session, options, readCheck: this.acl.readLimited(session.clientId, session.username, plain) };
    if (typeof shared === 'object') {
      const key = `$share/${shared.group}`;
      let group = this.subscriptions.get(shared.filter, key);
      if (group === undefined || group.kind !== 1) {
        group = { kind: 1, members: [], next: 0, filter: shared.filter, group: shared.group, id: routeId(shared.filter, shared.group) };
        const first = this.subscriptions.add(shared.filter, key, group);
        if (this.cluster !== null) {
          if (first) this.cluster.routeAdded(shared.filter, '');
          this.cluster.routeAdded(shared.filter, shared.group);
        }
      }
      const i = group.members.findIndex((m) => m.session === session);
      if (i >= 0) group.members[i] = sub;
      else group.members.push(sub);
    } else if (this.subscriptions.add(filter, session.clientId, sub) && this.cluster !== null) {
      this.cluster.routeAdded(filter, '');
    }
    return existed;
  }

  unsubscribe(session: Session, filter: string): boolean {
    if (!session.subscriptions.delete(filter)) return false;
    this.removeSubscription(session, filter);
    return true;
  }

  private removeSubscription(session: Session, filter: string): void {
    const shared = parseSharedFilter(filter);
    if (typeof shared !== 'object') {
      if (this.subscriptions.remove(filter, session.clientId) && this.cluster !== null) this.cluster.routeRemoved(filter, '');
      return;
    }
    const key = `$share/${shared.group}`;
    const group = this.subscriptions.get(shared.filter, key);
    if (group === undefined || group.kind !== 1) return;
    group.members = group.members.filter((m) => m.session !== session);
    if (group.members.length > 0) return;
    const last = this.subscriptions.remove(shared.filter, key);
    if (this.cluster !== null) {
      this.cluster.routeRemoved(shared.filter, shared.group);
      if (last) this.cluster.routeRemoved(shared.filter, '');
    }
  }

  /** Sends the retained messages matching a new subscription (not for shared ones). */
  sendRetained(session: Session, filter: string, options: SubscriptionOptions): void {
    const readCheck = this.acl.readLimited(session.clientId, session.username, filter);
    this.retainedTarget = { session, options, readCheck };
    try {
      this.retained.match(filter, this, visitRetained);
    } finally {
      this.retainedTarget = null;
    }
  }

  private retainedTarget: { session: Session; options: SubscriptionOptions; readCheck: boolean } | null = null;

  /** @internal Called for each matching retained message by visitRetained. */
  deliverRetained(message: Message): void {
    const target = this.retainedTarget;
    if (target === null) return;
    if (message.expiresAt !== 0 && message.expiresAt <= Date.now()) {
      this.retained.delete(message.topic);
      if (this.store !== null) this.store.deleteRetained(message.topic);
      return;
    }
    if (target.readCheck && !this.acl.mayRead(target.session.clientId, target.session.username, message.topic)) {
      this.stats.deliveriesDenied++;
      return;
    }
    const qos = (message.qos < target.options.qos ? message.qos : target.options.qos) as QoS;
    // Sent because of a new subscription: the retain flag is set [MQTT-3.3.1-9].
    target.session.deliver(message, qos, true, target.options.subscriptionId, this.limits, this.stats);
  }
}

function visitEntry(broker: Broker, entry: TrieEntry): void {
  if (entry.kind === 0) {
    if (broker.mayRead(entry)) broker.matchSubscriber(entry);
    else broker.stats.deliveriesDenied++;
    return;
  }
  if (!broker.takesGroup(entry)) return;
  // Prefer a connected member that may read the message; a group of offline members still gets
  // one copy, queued (for the first of them that may read it).
  const members = entry.members;
  const n = members.length;
  let chosen = -1;
  for (let i = 0; i < n; i++) {
    const at = (entry.next + i) % n;
    const m = members[at] as Subscriber;
    if (!broker.mayRead(m)) continue;
    if (chosen < 0 || m.session.owner !== null) chosen = at;
    if (m.session.owner !== null) break;
  }
  if (chosen < 0) {
    broker.stats.deliveriesDenied++;
    return;
  }
  entry.next = (chosen + 1) % n;
  broker.deliverShared(members[chosen] as Subscriber);
}

function visitRetained(broker: Broker, _topic: string, message: Message): void {
  broker.deliverRetained(message);
}
