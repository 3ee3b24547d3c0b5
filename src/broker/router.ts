import type { QoS } from '../mqtt/packets.js';
import { parseSharedFilter } from '../mqtt/topic.js';
import type { SessionStore } from '../store/store.js';
import type { Acl } from './acl.js';
import { messageKey, routeId, type ClusterBridge, type RemotePlan } from './cluster-bridge.js';
import { ownPayload, type Message } from './message.js';
import { RetainedTree } from './retained-tree.js';
import { messageRecord } from './session-journal.js';
import { addSubscriptionId, type Session, type SessionLimits, type SubscriptionIds, type SubscriptionOptions } from './session.js';
import type { BrokerStats } from './stats.js';
import { SubscriptionTrie } from './subscription-trie.js';

/** A session's subscription as the trie holds it. */
interface Subscriber {
  kind: 0;
  session: Session;
  options: SubscriptionOptions;
  /** The ACL may deny some topics this filter matches: each delivery asks RoutePlan.mayRead. */
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

/** What the router needs of the node around it. */
export interface RouterContext {
  readonly acl: Acl;
  readonly stats: BrokerStats;
  readonly limits: SessionLimits;
  /** Where retained messages live; null keeps them in memory only. */
  readonly store: SessionStore | null;
  /** Null keeps the router single-node. */
  readonly cluster: ClusterBridge | null;
}

/**
 * Where one message goes, decided in one place before anything is sent: the other nodes and
 * their shared groups (RemotePlan, filled by the cluster), which local shared groups take it,
 * and the sessions its plain subscriptions matched (Session.routeSlot indexes them) with what
 * their matching subscriptions add up to (one copy each [MQTT-3.3.4-2]). One plan is reused by
 * every publish, local or forwarded: parallel arrays never shortened (that would drop their
 * storage), entries [0, count) are this publish's; nothing is allocated per match.
 */
class RoutePlan implements RemotePlan {
  message: Message | null = null;
  /** For a message another node forwarded: the shared groups it is for here; null for a local publish. */
  groups: readonly string[] | null = null;
  readonly nodes = new Map<string, string[]>();
  readonly elsewhere: string[] = [];
  delivered = 0;
  count = 0;
  readonly sessions: Array<Session | null> = [];
  readonly qos: QoS[] = [];
  readonly retain: boolean[] = [];
  readonly ids: SubscriptionIds[] = [];

  begin(message: Message, groups: readonly string[] | null): void {
    if (this.message !== null) throw new Error('publish() re-entered while routing');
    this.message = message;
    this.groups = groups;
    this.delivered = 0;
  }

  /** Drops the references, so the plan keeps no ended session alive. */
  end(): void {
    for (let i = 0; i < this.count; i++) {
      (this.sessions[i] as Session).routeSlot = -1;
      this.sessions[i] = null;
      this.ids[i] = 0;
    }
    this.count = 0;
    this.message = null;
    this.groups = null;
    if (this.nodes.size > 0) this.nodes.clear();
    this.elsewhere.length = 0;
  }
}

/**
 * The subscription trie, shared groups and retained messages of one node: routes a message to the
 * matching local sessions and sends a new subscription its retained messages. The cluster learns
 * of route changes and decides the remote part of a publish through the ClusterBridge.
 */
export class Router {
  private readonly trie = new SubscriptionTrie<TrieEntry>();
  private readonly retained = new RetainedTree<Message>();
  private readonly plan = new RoutePlan();

  constructor(private readonly ctx: RouterContext) {}

  /** Distinct filters with a local subscription. */
  get filterCount(): number {
    return this.trie.filterCount;
  }

  get retainedCount(): number {
    return this.retained.size;
  }

  retainedMessages(): IterableIterator<Message> {
    return this.retained.messages();
  }

  hasRetained(topic: string): boolean {
    return this.retained.get(topic) !== undefined;
  }

  /**
   * Routes one message to every matching local subscription, updates the retained store and
   * forwards it once to each other node with a matching route. Returns how many subscriptions
   * (remote nodes counted as one each) it matched (5.0 "no matching subscribers").
   */
  publish(message: Message): number {
    const cluster = this.ctx.cluster;
    if (message.retain) {
      this.applyRetained(message);
      if (cluster !== null) cluster.retained(message);
    }
    const plan = this.plan;
    plan.begin(message, null);
    try {
      if (cluster !== null) cluster.planRemote(message, plan);
      this.deliver(plan);
      return cluster === null ? plan.delivered : plan.delivered + cluster.forward(message, plan);
    } finally {
      plan.end();
    }
  }

  /**
   * Delivers a message another node forwarded to the local subscribers: every matching plain
   * subscription and, of the shared groups, only those in `groups` (the publishing node picked
   * this node for them). Not retained or forwarded again: the publishing node does that.
   */
  publishForwarded(message: Message, groups: readonly string[]): number {
    const plan = this.plan;
    plan.begin(message, groups);
    try {
      this.deliver(plan);
      return plan.delivered;
    } finally {
      plan.end();
    }
  }

  /** The local part of the plan: walks the trie, then sends the sessions with several matches their one copy. */
  private deliver(plan: RoutePlan): void {
    this.trie.match((plan.message as Message).topic, this, visitEntry);
    for (let i = 0; i < plan.count; i++) {
      this.deliverTo(plan.sessions[i] as Session, plan.qos[i] as QoS, plan.retain[i] as boolean, plan.ids[i] as SubscriptionIds);
    }
    this.ctx.stats.messagesRouted++;
  }

  /** @internal Whether the message being routed goes to this local shared group. */
  takesGroup(group: SharedGroup): boolean {
    const plan = this.plan;
    if (plan.groups !== null) return plan.groups.includes(group.id);
    return plan.elsewhere.length === 0 || !plan.elsewhere.includes(group.id);
  }

  /** Sets or (empty payload) clears a retained message here and in the store; the cluster
   *  calls it for the retained messages other nodes replicate. */
  applyRetained(message: Message): void {
    const store = this.ctx.store;
    // [MQTT-3.3.1-6] a zero-length retained payload removes the retained message.
    if (message.payload.length === 0) {
      this.retained.delete(message.topic);
      if (store !== null) store.deleteRetained(message.topic);
      return;
    }
    ownPayload(message);
    this.retained.set(message.topic, message);
    if (store !== null) store.putRetained(messageRecord(message));
  }

  /** A retained message loaded from the store at start. */
  restoreRetained(message: Message): void {
    this.retained.set(message.topic, message);
  }

  /** @internal Whether the subscriber may read the message being routed (SPEC 14: whatever its filter). */
  mayRead(sub: Subscriber): boolean {
    return !sub.readCheck || this.ctx.acl.mayRead(sub.session.clientId, sub.session.username, (this.plan.message as Message).topic);
  }

  /**
   * @internal Called by visitEntry for each matching plain subscription: the first one of a
   * session with several subscriptions adds it to the plan; another one of the same session
   * (overlapping filters) makes that one copy go at the higher QoS and carry its Subscription
   * Identifier too [MQTT-3.3.4-2] [MQTT-3.3.4-3]. Retain-as-published: the retain flag is kept if
   * any of them asks so.
   */
  matchSubscriber(sub: Subscriber): void {
    const plan = this.plan;
    const message = plan.message as Message;
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
      const n = plan.count++;
      session.routeSlot = n;
      plan.sessions[n] = session;
      plan.qos[n] = qos;
      plan.retain[n] = retain;
      plan.ids[n] = options.subscriptionId;
      return;
    }
    if (qos > (plan.qos[slot] as QoS)) plan.qos[slot] = qos;
    if (retain) plan.retain[slot] = true;
    plan.ids[slot] = addSubscriptionId(plan.ids[slot] as SubscriptionIds, options.subscriptionId);
  }

  /** @internal A shared group's pick: a delivery of its own, whatever else the session matched. */
  deliverShared(sub: Subscriber): void {
    const message = this.plan.message as Message;
    const options = sub.options;
    const qos = (message.qos < options.qos ? message.qos : options.qos) as QoS;
    this.deliverTo(sub.session, qos, options.retainAsPublished && message.retain, options.subscriptionId);
  }

  /** @internal */
  denied(): void {
    this.ctx.stats.deliveriesDenied++;
  }

  /** One copy of the routed message to one session. */
  private deliverTo(session: Session, qos: QoS, retain: boolean, subscriptionIds: SubscriptionIds): void {
    const message = this.plan.message as Message;
    const handover = session.handover;
    if (handover !== null) {
      // Taken over from another node just now: a message that reached both nodes is delivered once.
      const key = messageKey(message);
      if (key !== undefined) {
        if (handover.has(key)) return;
        handover.add(key);
      }
    }
    this.plan.delivered++;
    session.deliver(message, qos, retain, subscriptionIds, this.ctx.limits, this.ctx.stats);
  }

  /**
   * Adds or replaces a subscription ([MQTT-3.8.4-3]: a repeated filter replaces the old one).
   * `filter` is valid (possibly `$share/group/f`). Returns whether it existed before.
   */
  subscribe(session: Session, filter: string, options: SubscriptionOptions): boolean {
    const existed = session.setSubscription(filter, options);
    const shared = parseSharedFilter(filter);
    const plain = typeof shared === 'object' ? shared.filter : filter;
    const sub: Subscriber = { kind: 0, session, options, readCheck: this.ctx.acl.readLimited(session.clientId, session.username, plain) };
    const cluster = this.ctx.cluster;
    if (typeof shared === 'object') {
      const key = `$share/${shared.group}`;
      let group = this.trie.get(shared.filter, key);
      if (group === undefined || group.kind !== 1) {
        group = { kind: 1, members: [], next: 0, filter: shared.filter, group: shared.group, id: routeId(shared.filter, shared.group) };
        const first = this.trie.add(shared.filter, key, group);
        if (cluster !== null) {
          if (first) cluster.routeAdded(shared.filter, '');
          cluster.routeAdded(shared.filter, shared.group);
        }
      }
      const i = group.members.findIndex((m) => m.session === session);
      if (i >= 0) group.members[i] = sub;
      else group.members.push(sub);
    } else if (this.trie.add(filter, session.clientId, sub) && cluster !== null) {
      cluster.routeAdded(filter, '');
    }
    return existed;
  }

  /** Subscribes a session again to each of its filters (its read checks are decided anew). */
  resubscribe(session: Session): void {
    for (const [filter, options] of session.subscriptions) this.subscribe(session, filter, options);
  }

  unsubscribe(session: Session, filter: string): boolean {
    if (!session.deleteSubscription(filter)) return false;
    this.removeSubscription(session, filter);
    return true;
  }

  /** Removes every subscription of a session that ends. */
  unsubscribeAll(session: Session): void {
    if (session.subscriptions.size === 0) return; // a publisher-only session: no iterator
    for (const filter of session.subscriptions.keys()) this.removeSubscription(session, filter);
    session.clearSubscriptions();
  }

  private removeSubscription(session: Session, filter: string): void {
    const cluster = this.ctx.cluster;
    const shared = parseSharedFilter(filter);
    if (typeof shared !== 'object') {
      if (this.trie.remove(filter, session.clientId) && cluster !== null) cluster.routeRemoved(filter, '');
      return;
    }
    const key = `$share/${shared.group}`;
    const group = this.trie.get(shared.filter, key);
    if (group === undefined || group.kind !== 1) return;
    group.members = group.members.filter((m) => m.session !== session);
    if (group.members.length > 0) return;
    const last = this.trie.remove(shared.filter, key);
    if (cluster !== null) {
      cluster.routeRemoved(shared.filter, shared.group);
      if (last) cluster.routeRemoved(shared.filter, '');
    }
  }

  /** Sends the retained messages matching a new subscription (not for shared ones). */
  sendRetained(session: Session, filter: string, options: SubscriptionOptions): void {
    const readCheck = this.ctx.acl.readLimited(session.clientId, session.username, filter);
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
    const { acl, stats, store } = this.ctx;
    if (message.expiresAt !== 0 && message.expiresAt <= Date.now()) {
      this.retained.delete(message.topic);
      if (store !== null) store.deleteRetained(message.topic);
      return;
    }
    if (target.readCheck && !acl.mayRead(target.session.clientId, target.session.username, message.topic)) {
      stats.deliveriesDenied++;
      return;
    }
    const qos = (message.qos < target.options.qos ? message.qos : target.options.qos) as QoS;
    // Sent because of a new subscription: the retain flag is set [MQTT-3.3.1-9].
    target.session.deliver(message, qos, true, target.options.subscriptionId, this.ctx.limits, stats);
  }
}

function visitEntry(router: Router, entry: TrieEntry): void {
  if (entry.kind === 0) {
    if (router.mayRead(entry)) router.matchSubscriber(entry);
    else router.denied();
    return;
  }
  if (!router.takesGroup(entry)) return;
  // Prefer a connected member that may read the message; a group of offline members still gets
  // one copy, queued (for the first of them that may read it).
  const members = entry.members;
  const n = members.length;
  let chosen = -1;
  for (let i = 0; i < n; i++) {
    const at = (entry.next + i) % n;
    const m = members[at] as Subscriber;
    if (!router.mayRead(m)) continue;
    if (chosen < 0 || m.session.owner !== null) chosen = at;
    if (m.session.owner !== null) break;
  }
  if (chosen < 0) {
    router.denied();
    return;
  }
  entry.next = (chosen + 1) % n;
  router.deliverShared(members[chosen] as Subscriber);
}

function visitRetained(router: Router, _topic: string, message: Message): void {
  router.deliverRetained(message);
}
