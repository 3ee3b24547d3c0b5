// One node's part of the cluster (SPEC 4, seed distributed-cluster), the facade over its modules:
// membership (membership.ts), forwarding and retained replication (forwarding.ts), the client
// registry (registry.ts), RPCs and takeover. It holds the link mesh itself (the cluster port with
// its handshake slots, dialing, duplicate links, heartbeats) and dispatches what links receive.
// It is the broker's ClusterBridge; everything it sends to one peer in one event-loop turn leaves
// as one frame.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import type { ClusterBridge, RemotePlan } from '../broker/cluster-bridge.js';
import type { Message } from '../broker/message.js';
import type { Session } from '../broker/session.js';
import { ConfigError, DEFAULT_COOKIE, isLoopback, type Config } from '../config/schema.js';
import { parseNodeAddress } from './address.js';
import { Link, type HandshakeLimits, type LinkHandler, type LinkMessage } from './link.js';
import { Forwarding, type ForwardingStats } from './forwarding.js';
import { ClusterError, DIAL_MAX_MS, DIAL_MIN_MS, Membership, type Member, type MembershipHost, type PersistedState } from './membership.js';
import { Msg } from './messages.js';
import { Registry } from './registry.js';
import type { RouteKey } from './routes.js';
import { Rpc } from './rpc.js';
import { Takeover } from './takeover.js';

/** The management API's kick, run by the node holding the session. */
const KICK_RPC = 'clients.kick';

declare module './rpc.js' {
  interface RpcTable {
    'clients.kick': { args: { clientId: string }; result: boolean };
  }
}
/** Housekeeping period: heartbeats, dialing, discovery, autoclean. */
const TICK_MS = 500;
/** A link sends at least this often (a Ping when idle)... */
const HEARTBEAT_MS = 1000;
/** ...and is declared dead after this long without a byte from the peer. */
export const FAILURE_MS = 5000;
/** At most one log line per this period about connections refused before they authenticated. */
const REFUSAL_LOG_MS = 10_000;

function flushRegistry(cluster: Cluster): void {
  cluster.flushRegistry();
}

export interface ClusterStatus {
  running: string[];
  stopped: string[];
}

/**
 * The built-in cookie is public: refused (a ConfigError, exit 2) unless nothing of the node is
 * reachable from another host, so no stranger can join with it.
 */
export function checkCookie(config: Config): void {
  if (config.node.cookie !== DEFAULT_COOKIE) return;
  const exposed: string[] = [];
  if (!isLoopback(config.listeners.bind)) exposed.push(`listeners.bind = ${config.listeners.bind}`);
  if (!isLoopback(config.management.bind)) exposed.push(`management.bind = ${config.management.bind}`);
  const clusterHost = parseNodeAddress(config.node.name).host;
  if (!isLoopback(clusterHost)) exposed.push(`cluster port on ${clusterHost} (node.name)`);
  if (exposed.length === 0) return;
  throw new ConfigError(
    `node.cookie is the built-in default, which anyone can read in the README, while the node is reachable (${exposed.join(', ')}): set node.cookie (--cookie, TIDEMQ_NODE__COOKIE) to a secret shared by the cluster's nodes`,
  );
}

interface ClusterTls {
  /** Certificate, key and CA, read once at start (a bad file fails the start). */
  readonly context: tls.SecureContextOptions;
  /** Both sides present a certificate signed by the CA. */
  readonly verify: boolean;
}

function clusterTls(c: Config['cluster']): ClusterTls | null {
  if (c.tls_cert_file === '') return null;
  const context: tls.SecureContextOptions = {
    cert: readFileSync(c.tls_cert_file),
    key: readFileSync(c.tls_key_file),
    ...(c.tls_ca_file === '' ? {} : { ca: readFileSync(c.tls_ca_file) }),
    minVersion: 'TLSv1.2',
  };
  return { context, verify: c.tls_verify_peer };
}

/** Counters of the cluster's bounds, read by the metrics. */
export interface ClusterStats extends ForwardingStats {
  /** Handshakes this node failed, by reason (bad_cookie, timeout, frame_too_large, too_many_pending, tls, ...). */
  readonly refusals: Map<string, number>;
  /** Registry changes (session opened or discarded here) announced to the peers. */
  registryChanges: number;
  /** Event-loop turns that sent them: changes / batches is the coalescing per turn. */
  registryBatches: number;
}

/** The refusals a stranger can cause, exported at 0 from the start: a dashboard's rate() then has
 *  a series before the first one happens. */
const COMMON_REFUSALS = ['bad_cookie', 'timeout', 'frame_too_large', 'too_many_pending', 'tls'];

export { ClusterError };

export class Cluster implements ClusterBridge, LinkHandler, MembershipHost {
  readonly node: string;
  private readonly forwarding: Forwarding;
  private readonly registry: Registry;
  /**
   * Registry changes of this event-loop turn, by client id: the claim's `at`, or null for a
   * discard; the last change of a client wins. Sent once per turn (setImmediate, after the
   * CONNECTs the turn read), leaving in one link frame per peer. Still as Reg/Unreg: a node of an earlier version
   * (a blue-green upgrade's other half) reads them.
   */
  private readonly regOut = new Map<string, number | null>();
  private regScheduled = false;
  readonly rpc: Rpc;
  readonly takeover: Takeover;
  private readonly membership: Membership;
  /** The members, with their links (Membership's map). */
  private readonly members: Map<string, Member>;
  /** Links accepted or dialed by address whose peer is not a member yet (handshake). */
  private readonly loose = new Set<Link>();
  private readonly incarnation = randomUUID();
  private readonly cookie: string;
  private readonly handshake: HandshakeLimits;
  private readonly tls: ClusterTls | null;
  /**
   * Connections to the cluster port not authenticated yet (TLS handshake included), by their TCP
   * pair `address:port`; bounded by cluster.max_pending_handshakes.
   */
  private readonly handshaking = new Map<string, Socket>();
  /** The TCP pair of each accepted link in its handshake (a TLS socket reports its TCP socket's). */
  private readonly acceptedPairs = new Map<Link, string>();
  /** Wraps accepted sockets in TLS when cluster TLS is on; it does not listen itself. */
  private tlsServer: tls.Server | null = null;
  private refusalLogAt = 0;
  private refusalsUnlogged = 0;
  private server: Server | null = null;
  private ticker: NodeJS.Timeout | null = null;
  readonly stats: ClusterStats = { refusals: new Map(COMMON_REFUSALS.map((r) => [r, 0])), forwardsDropped: 0, backlogFailures: 0, registryChanges: 0, registryBatches: 0 };
  /** Publishes forwarded to peers (one per peer node), and received from them. */
  get forwardsSent(): number {
    return this.forwarding.forwardsSent;
  }

  get forwardsReceived(): number {
    return this.forwarding.forwardsReceived;
  }

  constructor(
    readonly broker: Broker,
    private readonly config: Config,
    readonly log: Logger,
  ) {
    this.node = config.node.name;
    this.registry = new Registry(this.node);
    this.cookie = config.node.cookie;
    this.handshake = { timeoutMs: config.cluster.handshake_timeout * 1000, maxFrame: config.cluster.max_handshake_frame };
    this.tls = clusterTls(config.cluster);
    this.rpc = new Rpc(config.cluster.rpc_timeout * 1000);
    this.takeover = new Takeover(this);
    this.forwarding = new Forwarding(this, config, this.stats);
    this.rpc.handle(KICK_RPC, (args) => broker.sessions.kick(args.clientId));
    this.membership = new Membership(this.node, config, log, this);
    this.members = this.membership.members;
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Listens on the cluster port, takes over the broker's state as this node's, dials known members. */
  async start(): Promise<number> {
    const now = Date.now();
    this.membership.load();
    const server = createServer((socket) => this.gate(socket));
    if (this.tls !== null) {
      // The TLS handshake is part of the link's: the same deadline and slot, and a failure is a refusal.
      const options = { ...this.tls.context, requestCert: this.tls.verify, rejectUnauthorized: this.tls.verify, handshakeTimeout: this.handshake.timeoutMs };
      this.tlsServer = tls.createServer(options, (socket) => this.accept(socket));
      this.tlsServer.on('tlsClientError', (err, socket) => this.refusedAt(socket.remoteAddress, 'tls', err.message));
    }
    this.server = server;
    const host = parseNodeAddress(this.node).host;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.cluster.port, host, () => resolve());
    });
    // Accept errors (EMFILE) are logged; without a listener they would crash the node.
    server.on('error', (err) => this.log.error({ err }, 'cluster listener error'));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : this.config.cluster.port;
    this.ticker = setInterval(() => this.tick(Date.now()), TICK_MS);
    this.ticker.unref();
    this.tick(now);
    this.log.info({ node: this.node, cluster_port: port, discovery: this.config.cluster.discovery, members: [...this.members.keys()] }, 'cluster started');
    return port;
  }

  async stop(): Promise<void> {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.takeover.close();
    this.rpc.close();
    for (const link of this.allLinks()) link.close('node stopping');
    this.detach();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  status(): ClusterStatus {
    const running = [this.node];
    const stopped: string[] = [];
    for (const m of this.members.values()) (m.link !== null ? running : stopped).push(m.name);
    return { running: running.sort(), stopped: stopped.sort() };
  }

  /**
   * Becomes the broker's bridge once there is a member: a node alone pays nothing on its hot path
   * (the broker checks one null). Local routes and registry entries are taken from the broker's state.
   */
  attach(): void {
    if (this.broker.cluster === this) return;
    const now = Date.now();
    for (const session of this.broker.sessions.values()) {
      this.registry.addLocal(session.clientId, session.disconnectedAt === 0 ? now : session.disconnectedAt);
      this.forwarding.addSession(session);
    }
    this.broker.cluster = this;
  }

  detach(): void {
    if (this.broker.cluster === this) this.broker.cluster = null;
    this.forwarding.clear();
    this.registry.clear();
  }

  /** The route table as the management API lists it: this node's routes and every peer's. */
  routeList(): Array<{ topic: string; node: string }> {
    return this.forwarding.routeList();
  }

  // ---- membership (membership.ts) ---------------------------------------------------------

  /** `cluster join <node>` (Membership.join). */
  join(target: string): Promise<void> {
    return this.membership.join(target);
  }

  /** `cluster leave` (Membership.leave). */
  leave(): void {
    this.membership.leave();
  }

  /** `cluster force-leave <node>` (Membership.forceLeave). */
  forceLeave(name: string): void {
    this.membership.forceLeave(name);
  }

  dialingFor(intent: string): boolean {
    for (const l of this.loose) if (l.dialed && l.intent === intent) return true;
    return false;
  }

  listenPort(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : this.config.cluster.port;
  }

  memberDropped(name: string): void {
    this.forwarding.routes.purge(name);
    this.rpc.nodeDown(name);
    this.registry.forget(name);
  }

  /** Heartbeats on up links; membership's housekeeping for the others. */
  private tick(now: number): void {
    for (const m of this.members.values()) {
      const link = m.link;
      if (link === null) continue;
      if (now - link.lastReceived > FAILURE_MS) link.close(`no heartbeat for ${FAILURE_MS} ms`);
      else if (now - link.lastSent >= HEARTBEAT_MS) link.send([Msg.Ping]);
    }
    this.membership.tick(now);
  }

  // ---- links ---------------------------------------------------------------------------------

  /** A TCP connection to the cluster port: it gets a handshake slot, or is closed at once. */
  private gate(socket: Socket): void {
    const max = this.config.cluster.max_pending_handshakes;
    if (this.handshaking.size >= max) {
      this.refusedAt(socket.remoteAddress, 'too_many_pending', `over cluster.max_pending_handshakes (${max})`);
      socket.destroy();
      return;
    }
    const pair = `${socket.remoteAddress}:${socket.remotePort}`;
    this.handshaking.set(pair, socket);
    socket.once('close', () => {
      if (this.handshaking.get(pair) === socket) this.handshaking.delete(pair);
    });
    if (this.tlsServer === null) this.accept(socket);
    else this.tlsServer.emit('connection', socket);
  }

  private accept(socket: Socket): void {
    const link = new Link(socket, this.node, this.cookie, this.incarnation, this, this.log, undefined, false, 'member', this.handshake);
    this.loose.add(link);
    this.acceptedPairs.set(link, `${socket.remoteAddress}:${socket.remotePort}`);
  }

  /** An accepted link's handshake is over (up or failed): its slot is free. */
  private handshakeOver(link: Link): void {
    const pair = this.acceptedPairs.get(link);
    if (pair === undefined) return;
    this.acceptedPairs.delete(link);
    this.handshaking.delete(pair);
  }

  dial(host: string, port: number, expected: string | undefined, intent: string): Link {
    // Peers are identified by the cluster CA and the cookie, not by host names in certificates
    // (nodes are often named by IP address).
    const socket =
      this.tls === null ? connect({ host, port }) : tls.connect({ ...this.tls.context, rejectUnauthorized: this.tls.verify, host, port, checkServerIdentity: () => undefined });
    const link = new Link(socket, this.node, this.cookie, this.incarnation, this, this.log, expected, true, intent, this.handshake);
    const m = expected === undefined ? undefined : this.members.get(expected);
    if (m !== undefined) m.dialing = link;
    else this.loose.add(link);
    return link;
  }

  /** The kept link of a pair is the one dialed by the smaller name. */
  private preferred(link: Link): boolean {
    const dialer = link.dialed ? this.node : link.peer;
    return dialer === (this.node < link.peer ? this.node : link.peer);
  }

  /** Why a second link for a name with a live link is refused; undefined when it replaces it. */
  private duplicate(link: Link, current: Link): string | undefined {
    if (current.peerIncarnation !== link.peerIncarnation) return 'name_in_use';
    return this.preferred(link) && !this.preferred(current) ? undefined : 'duplicate_link';
  }

  admit(link: Link): string | undefined {
    if (link.peer === this.node) return 'name_in_use';
    if (this.membership.removed.has(link.peer) && link.intent !== 'join') return 'removed_from_cluster';
    const current = this.members.get(link.peer)?.link;
    return current != null && current !== link ? this.duplicate(link, current) : undefined;
  }

  refused(link: Link, reason: string): void {
    // The dialer's own refusals are logged by the link (an operator's wrong cookie); what a
    // stranger sends to our port only in the rate-limited line.
    if (link.dialed) this.countRefusal(reason);
    else this.refusedAt(link.socket.remoteAddress, reason, 'handshake failed');
  }

  private countRefusal(reason: string): void {
    this.stats.refusals.set(reason, (this.stats.refusals.get(reason) ?? 0) + 1);
  }

  /** A connection to the cluster port refused before it authenticated: counted, logged at most once per period. */
  private refusedAt(remote: string | undefined, reason: string, detail: string): void {
    this.countRefusal(reason);
    const now = Date.now();
    if (now - this.refusalLogAt < REFUSAL_LOG_MS) {
      this.refusalsUnlogged++;
      return;
    }
    this.log.warn({ remote, reason, detail, refused_since_last_line: this.refusalsUnlogged }, 'cluster port: connection refused before authentication');
    this.refusalLogAt = now;
    this.refusalsUnlogged = 0;
  }

  linkUp(link: Link): void {
    this.loose.delete(link);
    this.handshakeOver(link);
    const peer = link.peer;
    let m = this.members.get(peer);
    if (link.dialed) {
      const current = m?.link;
      const why = peer === this.node ? 'name_in_use' : current != null ? this.duplicate(link, current) : undefined;
      if (why !== undefined) {
        if (why === 'name_in_use') this.log.warn({ peer, remote: link.remote }, 'cluster link closed: node name already in use');
        link.close(why);
        return;
      }
    }
    if (link.intent === 'join') this.membership.removed.delete(peer);
    let added = false;
    if (m === undefined) {
      // A dialed peer listens where we reached it; one that dialed us says where in its Members.
      m = this.membership.addMember(peer, link.socket.remoteAddress ?? '', link.dialed ? (link.socket.remotePort ?? 0) : 0, 0, 0);
      added = true;
    }
    if (m.dialing === link) m.dialing = null;
    const old = m.link;
    m.link = link;
    m.downSince = 0;
    m.failures = 0;
    if (old !== null && old !== link) old.close('replaced by another link');
    this.log.info({ peer, remote: link.remote }, 'cluster node up');
    this.sendState(link);
    if (added) {
      this.membership.broadcastMembers(link);
      this.membership.persist();
    }
  }

  linkDown(link: Link, why: string): void {
    this.loose.delete(link);
    this.handshakeOver(link);
    const joinWaiter = this.membership.joinWaiter;
    if (joinWaiter !== null && joinWaiter.link === link) this.membership.settleJoin(new ClusterError(`cannot join ${joinWaiter.name}: ${why}`));
    // Only a member's own links (its live link, our dial to it) speak for it: a connection that
    // merely claimed its name changes nothing.
    const m = this.members.get(link.peer !== '' ? link.peer : (link.expected ?? ''));
    if (m === undefined || (m.link !== link && m.dialing !== link)) return;
    if (link.refusal === 'removed_from_cluster') {
      // It removed us while we were away: we are not part of its cluster any more.
      this.membership.dropMember(m.name, why);
      this.membership.persist();
      return;
    }
    if (m.dialing === link) {
      m.dialing = null;
      m.failures++;
      m.nextDial = Date.now() + Math.min(DIAL_MAX_MS, DIAL_MIN_MS * 2 ** Math.min(m.failures, 5));
    }
    if (m.link !== link) return;
    m.link = null;
    m.downSince = Date.now();
    m.nextDial = Date.now() + DIAL_MIN_MS;
    const routes = this.forwarding.routes.purge(m.name);
    this.rpc.nodeDown(m.name);
    this.log.warn({ peer: m.name, why, routes_purged: routes }, 'cluster node down');
  }

  linkMessage(link: Link, m: LinkMessage): void {
    const peer = link.peer;
    switch (m[0]) {
      case Msg.Ping:
        return;
      case Msg.Forward:
        this.forwarding.onForward(m);
        return;
      case Msg.RouteAdd:
        this.forwarding.routes.add(peer, m[1] as string, m[2] as string);
        return;
      case Msg.RouteDel:
        this.forwarding.routes.remove(peer, m[1] as string, m[2] as string);
        return;
      case Msg.RouteSync:
        this.forwarding.routes.replace(peer, m[1] as RouteKey[]);
        return;
      case Msg.Reg:
        this.onReg(peer, m[1] as string, m[2] as number);
        return;
      case Msg.Unreg:
        this.onUnreg(peer, m[1] as string);
        return;
      case Msg.RegSync:
        this.onRegSync(peer, m[1] as Array<[string, number]>);
        return;
      case Msg.Retain:
        this.forwarding.applyRetained(m, 1, true);
        return;
      case Msg.RetainSync:
        for (const r of m[1] as LinkMessage[]) this.forwarding.applyRetained(r, 0, false);
        return;
      case Msg.Members:
        this.membership.onMembers(peer, m[1] as PersistedState['members'], m[2] as PersistedState['removed']);
        return;
      case Msg.Call:
        this.rpc.onCall(link, m[1], m[2], m[3]);
        return;
      case Msg.Reply:
        this.rpc.onReply(m[1], m[2], m[3]);
        return;
      case Msg.Leave:
        this.membership.applyRemoval(peer, Date.now(), 'left the cluster');
        this.membership.persist();
        return;
      case Msg.Removed:
        this.membership.onRemoved(m[1] as string, m[2] as number);
        return;
      default:
        this.log.warn({ peer, type: m[0] }, 'cluster link: unknown message type');
    }
  }

  linkTo(node: string): Link | undefined {
    return this.members.get(node)?.link ?? undefined;
  }

  upNodes(): string[] {
    const nodes: string[] = [];
    for (const m of this.members.values()) if (m.link !== null) nodes.push(m.name);
    return nodes;
  }

  private allLinks(): Link[] {
    const links = [...this.loose];
    for (const m of this.members.values()) {
      if (m.link !== null) links.push(m.link);
      if (m.dialing !== null) links.push(m.dialing);
    }
    return links;
  }

  broadcast(message: LinkMessage): void {
    for (const m of this.members.values()) if (m.link !== null) m.link.send(message);
  }

  /** Everything a peer needs from us when its link comes up: join, rejoin and partition heal alike. */
  private sendState(link: Link): void {
    link.send(this.membership.membersMessage());
    link.send(this.forwarding.routeSync());
    link.send([Msg.RegSync, this.registry.local()]);
    link.send(this.forwarding.retainSync());
  }

  // ---- registry ------------------------------------------------------------------------------

  ownerOf(clientId: string): string | undefined {
    return this.registry.ownerOf(clientId);
  }

  /** Claims the client id for this node (Registry.claim) and tells the peers. */
  sessionOpened(session: Session): void {
    this.queueReg(session.clientId, this.registry.claim(session.clientId, Date.now()));
  }

  sessionDiscarded(clientId: string): void {
    if (this.registry.release(clientId)) this.queueReg(clientId, null);
  }

  private queueReg(clientId: string, at: number | null): void {
    this.regOut.set(clientId, at);
    if (this.regScheduled) return;
    this.regScheduled = true;
    setImmediate(flushRegistry, this);
  }

  /** @internal Sends this turn's registry changes (setImmediate callback). */
  flushRegistry(): void {
    this.regScheduled = false;
    if (this.regOut.size === 0) return;
    const changes = this.regOut.size;
    // A peer whose link comes up later gets the registry itself in its RegSync (sendState).
    if (this.hasLinks()) {
      for (const [clientId, at] of this.regOut) this.broadcast(at === null ? [Msg.Unreg, clientId] : [Msg.Reg, clientId, at]);
      this.stats.registryChanges += changes;
      this.stats.registryBatches++;
    }
    this.regOut.clear();
  }

  private hasLinks(): boolean {
    for (const m of this.members.values()) if (m.link !== null) return true;
    return false;
  }

  private onUnreg(peer: string, clientId: string): void {
    this.registry.onUnreg(peer, clientId);
  }

  /** A peer opened a session for a client id: when its claim beats ours, ours yields (Registry.onReg). */
  private onReg(peer: string, clientId: string, at: number): void {
    if (this.registry.onReg(peer, clientId, at, this.takeover.handingOver(clientId))) this.yieldSession(clientId);
  }

  /** A claim beat ours: our connection ends (5.0 DISCONNECT 0x8E) and our copy goes, no will. */
  private yieldSession(clientId: string): void {
    const session = this.broker.sessions.handOver(clientId);
    if (session !== undefined) this.broker.sessions.endHandOver(session, true, Date.now());
  }

  /** A handover of ours ended (Takeover.settle): a claim that beat ours meanwhile is settled now. */
  handOverEnded(clientId: string, moved: boolean): void {
    if (this.registry.handOverEnded(clientId, !moved && this.broker.sessions.has(clientId))) this.yieldSession(clientId);
  }

  private onRegSync(peer: string, regs: Array<[string, number]>): void {
    for (const clientId of this.registry.onRegSync(peer, regs, (id) => this.takeover.handingOver(id))) this.yieldSession(clientId);
  }


  /**
   * Kicks a client whose session another node holds (the management API, from any node): that
   * node ends its connection or discards its disconnected session (Broker.kick). False when no
   * reachable node holds it; rejects (RpcError) when the holder does not answer in time.
   */
  async kickRemote(clientId: string): Promise<boolean> {
    const owner = this.registry.ownerOf(clientId);
    const link = owner === undefined || owner === this.node ? undefined : this.linkTo(owner);
    if (link === undefined) return false;
    return (await this.rpc.call(link, KICK_RPC, { clientId })) === true;
  }

  pullSession(clientId: string, cleanStart: boolean): Promise<void> | null {
    const owner = this.registry.ownerOf(clientId);
    if (owner === undefined || owner === this.node || this.linkTo(owner) === undefined) return null;
    return this.takeover.pull(owner, clientId, cleanStart);
  }

  // ---- routes and forwarding (forwarding.ts) -----------------------------------------------

  routeAdded(filter: string, group: string): void {
    this.forwarding.routeAdded(filter, group);
  }

  routeRemoved(filter: string, group: string): void {
    this.forwarding.routeRemoved(filter, group);
  }

  planRemote(message: Message, plan: RemotePlan): void {
    this.forwarding.planRemote(message, plan);
  }

  forward(message: Message, plan: RemotePlan): number {
    return this.forwarding.forward(message, plan);
  }

  retained(message: Message): void {
    this.forwarding.retained(message);
  }
}
