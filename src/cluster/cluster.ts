// One node's part of the cluster (SPEC 4, seed distributed-cluster), the facade over its modules:
// the link mesh (mesh.ts), membership (membership.ts), forwarding and retained replication
// (forwarding.ts), the client registry (registry.ts), RPCs and takeover. It dispatches what links
// receive and sends a peer our state when its link comes up. It is the broker's ClusterBridge;
// everything it sends to one peer in one event-loop turn leaves as one frame, except the
// registry's changes: gathered over up to REGISTRY_WINDOW_MS, then written at once.
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import type { ClusterBridge, HeldOutput, RemotePlan } from '../broker/cluster-bridge.js';
import type { Message } from '../broker/message.js';
import type { Session } from '../broker/session.js';
import { ConfigError, DEFAULT_COOKIE, isLoopback, type Config } from '../config/schema.js';
import { parseNodeAddress } from './address.js';
import type { Link, LinkMessage } from './link.js';
import { Forwarding, type ForwardingStats } from './forwarding.js';
import { ClusterError, Membership, type Member, type MembershipHost, type PersistedState } from './membership.js';
import { FAILURE_MS, Mesh, type MeshHost } from './mesh.js';
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
/**
 * Registry changes leave at most once per this many ms: on a connect burst a peer then reads one
 * frame per window, not one per connect (README Performance, The client registry). After a quiet
 * window they leave at the end of the turn.
 */
const REGISTRY_WINDOW_MS = 2;

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

/** Counters of the cluster's bounds, read by the metrics. */
export interface ClusterStats extends ForwardingStats {
  /** Handshakes this node failed, by reason (bad_cookie, timeout, frame_too_large, too_many_pending, tls, ...). */
  readonly refusals: Map<string, number>;
  /** Registry changes (session opened or discarded here) announced to the peers. */
  registryChanges: number;
  /** Batches that sent them (one frame per peer each): changes / batches is the coalescing. */
  registryBatches: number;
}

/** The refusals a stranger can cause, exported at 0 from the start: a dashboard's rate() then has
 *  a series before the first one happens. */
const COMMON_REFUSALS = ['bad_cookie', 'timeout', 'frame_too_large', 'too_many_pending', 'tls'];

export { ClusterError, FAILURE_MS };

export class Cluster implements ClusterBridge, MembershipHost, MeshHost {
  readonly node: string;
  private readonly forwarding: Forwarding;
  private readonly registry: Registry;
  /**
   * Registry changes not yet sent, by client id: the claim's `at`, or null for a discard; the
   * last change of a client wins. Sent together (one link frame per peer) at the end of the turn
   * when none left in the last REGISTRY_WINDOW_MS, else when that window ends. Still as
   * Reg/Unreg: a node of an earlier version (a blue-green upgrade's other half) reads them.
   */
  private readonly regOut = new Map<string, number | null>();
  private regScheduled = false;
  /** When the last registry changes were sent (ms). */
  private regSentAt = 0;
  /**
   * Connections whose output (CONNACK first) waits for their session's claim to be sent
   * (holdConnack): a client that hears CONNACK and at once reconnects to another node must find
   * its session known there, however long the window.
   */
  private held: HeldOutput[] = [];
  readonly rpc: Rpc;
  readonly takeover: Takeover;
  private readonly membership: Membership;
  /** The members, with their links (Membership's map). */
  private readonly members: Map<string, Member>;
  private readonly mesh: Mesh;
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
    this.rpc = new Rpc(config.cluster.rpc_timeout * 1000);
    this.takeover = new Takeover(this);
    this.forwarding = new Forwarding(this, config, this.stats);
    this.rpc.handle(KICK_RPC, (args) => broker.sessions.kick(args.clientId));
    this.membership = new Membership(this.node, config, log, this);
    this.members = this.membership.members;
    this.mesh = new Mesh(this.node, config, log, this.membership, this.stats.refusals, this);
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Listens on the cluster port, takes over the broker's state as this node's, dials known members. */
  async start(): Promise<number> {
    const now = Date.now();
    this.membership.load();
    const port = await this.mesh.listen();
    this.ticker = setInterval(() => this.tick(Date.now()), TICK_MS);
    this.ticker.unref();
    this.tick(now);
    this.log.info({ node: this.node, cluster_port: port, discovery: this.config.cluster.discovery, members: [...this.members.keys()] }, 'cluster started');
    return port;
  }

  async stop(): Promise<void> {
    // What waits for the window leaves now, and no connection stays held.
    this.flushRegistry();
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    this.takeover.close();
    this.rpc.close();
    const closed = this.mesh.close();
    this.detach();
    await closed;
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

  // ---- the mesh (mesh.ts) ------------------------------------------------------------------

  dial(host: string, port: number, expected: string | undefined, intent: string): Link {
    return this.mesh.dial(host, port, expected, intent);
  }

  dialingFor(intent: string): boolean {
    return this.mesh.dialingFor(intent);
  }

  listenPort(): number {
    return this.mesh.listenPort();
  }

  linkTo(node: string): Link | undefined {
    return this.mesh.linkTo(node);
  }

  upNodes(): string[] {
    return this.mesh.upNodes();
  }

  broadcast(message: LinkMessage): void {
    this.mesh.broadcast(message);
  }

  peerUp(link: Link): void {
    this.sendState(link);
  }

  peerDown(name: string): number {
    const routes = this.forwarding.routes.purge(name);
    this.rpc.nodeDown(name);
    return routes;
  }

  memberDropped(name: string): void {
    this.forwarding.routes.purge(name);
    this.rpc.nodeDown(name);
    this.registry.forget(name);
  }

  /** Heartbeats on up links; membership's housekeeping for the others. */
  private tick(now: number): void {
    this.mesh.heartbeat(now);
    this.membership.tick(now);
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

  /** What an up link received. */
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

  holdConnack(clientId: string, output: HeldOutput): void {
    if (!this.regOut.has(clientId)) return; // no peer to tell
    output.hold();
    this.held.push(output);
  }

  private queueReg(clientId: string, at: number | null): void {
    // No peer to tell: one that links up later gets the whole registry in its RegSync.
    if (!this.hasLinks()) return;
    this.regOut.set(clientId, at);
    if (this.regScheduled) return;
    this.regScheduled = true;
    const wait = this.regSentAt + REGISTRY_WINDOW_MS - Date.now();
    if (wait <= 0) setImmediate(flushRegistry, this);
    else setTimeout(flushRegistry, wait, this);
  }

  /**
   * @internal Sends the registry changes now (setImmediate or timer callback; and at stop), each
   * peer's frame written before the connections waiting for it are released.
   */
  flushRegistry(): void {
    this.regScheduled = false;
    if (this.regOut.size > 0) {
      // A peer whose link comes up later gets the registry itself in its RegSync (sendState).
      if (this.hasLinks()) {
        for (const [clientId, at] of this.regOut) this.broadcast(at === null ? [Msg.Unreg, clientId] : [Msg.Reg, clientId, at]);
        this.mesh.flush();
        this.stats.registryChanges += this.regOut.size;
        this.stats.registryBatches++;
        this.regSentAt = Date.now();
      }
      this.regOut.clear();
    }
    if (this.held.length === 0) return;
    const held = this.held;
    this.held = [];
    for (const output of held) output.release();
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
