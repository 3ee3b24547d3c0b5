// The cluster's part of a publish: the replicated route table (this node's routes announced to
// the peers, theirs received), the remote part of a publish's plan (which nodes get it, and
// which node each matching shared group's message goes to), the forwards themselves, and the
// replicated retained messages.
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import { routeId, type RemotePlan } from '../broker/cluster-bridge.js';
import type { Message } from '../broker/message.js';
import type { Session } from '../broker/session.js';
import type { Config } from '../config/schema.js';
import { parseSharedFilter } from '../mqtt/topic.js';
import type { Link, LinkMessage } from './link.js';
import { decodeMessage, encodeMessage } from './message-wire.js';
import { Msg } from './messages.js';
import { parseRouteId, RouteTable, type GroupRoute, type RouteKey } from './routes.js';

/** What forwarding needs from the cluster. */
export interface ForwardingHost {
  readonly node: string;
  readonly broker: Broker;
  readonly log: Logger;
  /** The up link to a node, if any. */
  linkTo(node: string): Link | undefined;
  /** Sends to every up link. */
  broadcast(message: LinkMessage): void;
}

/** Counters of the forwarding bounds, part of the cluster's stats. */
export interface ForwardingStats {
  /** QoS 0 forwards dropped because a peer's link was over half its backlog bound. */
  forwardsDropped: number;
  /** Links closed because a QoS 1/2 forward found them over the backlog bound. */
  backlogFailures: number;
}

export class Forwarding {
  readonly routes = new RouteTable();
  /** This node's routes (route ids), sent whole to a peer whose link comes up. */
  private readonly localRoutes = new Set<string>();
  /** The plan planRemote fills, while it walks the route tries (one synchronous pass). */
  private planning: RemotePlan | null = null;
  private seq = 0;
  /** Publishes forwarded to peers (one per peer node), and received from them. */
  forwardsSent = 0;
  forwardsReceived = 0;

  constructor(
    private readonly host: ForwardingHost,
    private readonly config: Config,
    private readonly stats: ForwardingStats,
  ) {}

  /** Takes a session's subscriptions as this node's routes (the broker's state when the cluster attaches). */
  addSession(session: Session): void {
    for (const filter of session.subscriptions.keys()) {
      const shared = parseSharedFilter(filter);
      if (typeof shared === 'object') {
        this.localRoutes.add(routeId(shared.filter, ''));
        this.localRoutes.add(routeId(shared.filter, shared.group));
      } else this.localRoutes.add(routeId(filter, ''));
    }
  }

  /** Alone again: no route of ours to announce. */
  clear(): void {
    this.localRoutes.clear();
  }

  /** The route table as the management API lists it: this node's routes and every peer's. */
  routeList(): Array<{ topic: string; node: string }> {
    const list: Array<{ topic: string; node: string }> = [];
    const add = (node: string, [filter, group]: RouteKey): void => {
      list.push({ topic: group === '' ? filter : `$share/${group}/${filter}`, node });
    };
    for (const id of this.localRoutes) add(this.host.node, parseRouteId(id));
    for (const node of this.routes.nodes()) for (const route of this.routes.routesOf(node)) add(node, route);
    return list;
  }

  /** Every route of ours, for a peer whose link comes up. */
  routeSync(): LinkMessage {
    return [Msg.RouteSync, [...this.localRoutes].map(parseRouteId)];
  }

  /** Every retained message here, for a peer whose link comes up. */
  retainSync(): LinkMessage {
    return [Msg.RetainSync, Array.from(this.host.broker.router.retainedMessages(), (r) => encodeMessage(r, []))];
  }

  routeAdded(filter: string, group: string): void {
    this.localRoutes.add(routeId(filter, group));
    this.host.broadcast([Msg.RouteAdd, filter, group]);
  }

  routeRemoved(filter: string, group: string): void {
    this.localRoutes.delete(routeId(filter, group));
    this.host.broadcast([Msg.RouteDel, filter, group]);
  }

  planRemote(message: Message, plan: RemotePlan): void {
    message.origin = this.host.node;
    message.originSeq = ++this.seq;
    this.planning = plan;
    try {
      this.routes.filters.match(message.topic, this, visitFilterRoute);
      if (this.routes.groups.size > 0) this.routes.groups.match(message.topic, this, visitGroupRoute);
    } finally {
      this.planning = null;
    }
  }

  /** @internal */
  target(node: string): string[] {
    const nodes = (this.planning as RemotePlan).nodes;
    let groups = nodes.get(node);
    if (groups === undefined) nodes.set(node, (groups = []));
    return groups;
  }

  /** @internal A remote group route matched: one of its nodes gets the message, or this one when
   *  it has members of the group too (round robin over them all). */
  pickGroup(route: GroupRoute): void {
    const id = routeId(route.filter, route.group);
    const n = route.nodes.length;
    const local = this.localRoutes.has(id);
    const pick = route.next % (local ? n + 1 : n);
    route.next = pick + 1;
    if (pick === n) return;
    this.target(route.nodes[pick] as string).push(id);
    if (local) (this.planning as RemotePlan).elsewhere.push(id);
  }

  forward(message: Message, plan: RemotePlan): number {
    let sent = 0;
    for (const [node, groups] of plan.nodes) {
      const link = this.host.linkTo(node);
      if (link === undefined) continue;
      const backlog = link.backlog;
      const bound = this.config.cluster.max_link_backlog;
      if (message.qos === 0 && backlog > bound / 2) {
        this.stats.forwardsDropped++;
        continue;
      }
      if (backlog > bound) {
        // A peer that takes QoS 1/2 forwards slower than they come is treated as a dead one.
        this.stats.backlogFailures++;
        this.host.log.warn({ peer: node, backlog, bound }, 'cluster link over cluster.max_link_backlog: closing it as failed');
        link.close(`backlog of ${backlog} bytes over cluster.max_link_backlog`);
        continue;
      }
      link.send(encodeMessage(message, [Msg.Forward, groups]));
      sent++;
    }
    this.forwardsSent += sent;
    return sent;
  }

  onForward(m: LinkMessage): void {
    this.forwardsReceived++;
    this.host.broker.router.publishForwarded(decodeMessage(m, 2), m[1] as string[]);
  }

  retained(message: Message): void {
    this.host.broadcast(encodeMessage(message, [Msg.Retain]));
  }

  /** A replicated retained message; a sync at link-up only fills topics we do not have. */
  applyRetained(r: LinkMessage, at: number, replace: boolean): void {
    const router = this.host.broker.router;
    if (!replace && router.hasRetained(r[at] as string)) return;
    router.applyRetained(decodeMessage(r, at));
  }
}

function visitFilterRoute(forwarding: Forwarding, node: string): void {
  forwarding.target(node);
}

function visitGroupRoute(forwarding: Forwarding, route: GroupRoute): void {
  forwarding.pickGroup(route);
}
