// A node's rebalance side: its eviction agent, its evacuation, and their cluster face: RPCs for
// status, evacuation start/stop on another node, and taking over a session another node evicts
// (the recipient's socketless holder). The management API and node startup use this one object.
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import type { Cluster } from '../cluster/cluster.js';
import type { SessionStore } from '../store/store.js';
import { realClock, type Clock } from './clock.js';
import { RebalanceError } from './errors.js';
import { Evacuation, type EvacuationStatus } from './evacuation.js';
import { EvictionAgent, type SessionMover } from './eviction-agent.js';
import { checkMigrateTo, evacuationFromJson } from './options.js';

/** Store key of the persisted evacuation. */
export const EVACUATION_KEY = 'evacuation';

/** `GET /load_rebalance/status` of a node (SPEC 8). */
export type NodeStatus = { status: 'disabled' } | ({ status: 'enabled'; process: 'evacuation' } & EvacuationStatus);

/** `GET /load_rebalance/global_status`: evacuations of every running node; rebalance coordinators. */
export interface GlobalStatus {
  evacuations: Array<{ node: string } & EvacuationStatus>;
  rebalances: Array<Record<string, unknown>>;
}

/** An RPC's answer: errors travel as data, so their code survives the hop. */
type Outcome<T> = { ok: T } | { error: { code: RebalanceError['code']; message: string } };

const RPC = {
  status: 'rebalance.status',
  evacuationStart: 'rebalance.evacuation_start',
  evacuationStop: 'rebalance.evacuation_stop',
  takeSession: 'rebalance.take_session',
} as const;

async function outcome<T>(f: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: await f() };
  } catch (err) {
    if (err instanceof RebalanceError) return { error: { code: err.code, message: err.message } };
    throw err;
  }
}

export class NodeRebalance implements SessionMover {
  readonly agent: EvictionAgent;
  readonly evacuation: Evacuation;
  readonly node: string;

  constructor(
    private readonly broker: Broker,
    private readonly store: SessionStore | null,
    readonly cluster: Cluster | null,
    private readonly log: Logger,
    clock: Clock = realClock,
  ) {
    this.node = broker.config.node.name;
    this.agent = new EvictionAgent(broker, cluster === null ? null : this);
    this.evacuation = new Evacuation({
      agent: this.agent,
      clock,
      log,
      recipients: (migrateTo) => this.recipients(migrateTo),
      persist: async (state) => {
        if (this.store !== null) await this.store.putNodeState(EVACUATION_KEY, state);
      },
    });
    if (cluster !== null) {
      const rpc = cluster.rpc;
      rpc.handle(RPC.status, () => this.localStatus());
      rpc.handle(RPC.evacuationStart, (args) => outcome(() => this.startLocal(args)));
      rpc.handle(RPC.evacuationStop, () => outcome(() => this.evacuation.stop()));
      rpc.handle(RPC.takeSession, (args, from) => this.takeSession((args as { clientId: string }).clientId, from));
    }
  }

  /** Node startup, before the listeners accept: resumes a stored evacuation. */
  resume(): boolean {
    return this.store !== null && this.evacuation.resume(this.store.getNodeState(EVACUATION_KEY));
  }

  close(): void {
    this.evacuation.close();
  }

  /** Running cluster nodes, this one included. */
  runningNodes(): string[] {
    return this.cluster === null ? [this.node] : this.cluster.status().running;
  }

  /** Nodes that can take this node's sessions now: the other running ones (of migrateTo). */
  recipients(migrateTo: readonly string[] | undefined): string[] {
    const others = this.runningNodes().filter((n) => n !== this.node);
    return migrateTo === undefined ? others : migrateTo.filter((n) => others.includes(n));
  }

  localStatus(): NodeStatus {
    const s = this.evacuation.status();
    return s === null ? { status: 'disabled' } : { status: 'enabled', process: 'evacuation', ...s };
  }

  /** This node's status, or another member's (RPC). */
  async statusOf(node: string): Promise<NodeStatus> {
    if (node === this.node) return this.localStatus();
    return (await this.call(node, RPC.status, null)) as NodeStatus;
  }

  /** Every running node's evacuation; a node that does not answer is left out. */
  async globalStatus(): Promise<GlobalStatus> {
    const nodes = this.runningNodes();
    const statuses = await Promise.all(nodes.map((n) => this.statusOf(n).catch((): NodeStatus => ({ status: 'disabled' }))));
    const evacuations: GlobalStatus['evacuations'] = [];
    statuses.forEach((s, i) => {
      if (s.status !== 'enabled') return;
      const { status: _status, process: _process, ...rest } = s;
      evacuations.push({ node: nodes[i] as string, ...rest });
    });
    return { evacuations, rebalances: [] };
  }

  /** `POST /load_rebalance/:node/evacuation/start` with its JSON body. */
  async startEvacuation(node: string, body: unknown): Promise<void> {
    if (node === this.node) return this.startLocal(body);
    settle(await this.call(node, RPC.evacuationStart, body ?? null));
  }

  async stopEvacuation(node: string): Promise<void> {
    if (node === this.node) return this.evacuation.stop();
    settle(await this.call(node, RPC.evacuationStop, null));
  }

  private async startLocal(body: unknown): Promise<void> {
    const options = evacuationFromJson(body);
    if (options.migrateTo !== undefined) checkMigrateTo(options.migrateTo, this.recipients(undefined));
    await this.evacuation.start(options);
  }

  /** An RPC to a member; `invalid_node` for a name that is not one, `rpc_failed` when it does not answer. */
  private async call(node: string, method: string, args: unknown): Promise<unknown> {
    const cluster = this.cluster;
    const known = cluster !== null && [...cluster.status().running, ...cluster.status().stopped].includes(node);
    if (!known) throw new RebalanceError('invalid_node', `invalid node: ${node}`);
    const link = cluster.linkTo(node);
    if (link === undefined) throw new RebalanceError('rpc_failed', `node ${node} is not running`);
    try {
      return await cluster.rpc.call(link, method, args);
    } catch (err) {
      throw new RebalanceError('rpc_failed', (err as Error).message);
    }
  }

  /** SessionMover: asks `node` to take the session (it pulls it from here with the takeover). */
  async move(clientId: string, node: string): Promise<boolean> {
    return (await this.call(node, RPC.takeSession, { clientId })) === true;
  }

  /**
   * Recipient side of a session eviction: pulls the session from `from` with the normal takeover
   * and keeps it here without a connection (a socketless holder): its subscriptions queue messages
   * for it, the registry points here, its expiry clock restarts now. False when `from` had no such
   * session any more (lost or expired: nothing to keep).
   */
  private async takeSession(clientId: string, from: string): Promise<boolean> {
    const cluster = this.cluster as Cluster;
    if (this.broker.sessions.has(clientId)) throw new Error(`a session of ${clientId} is already here`);
    await cluster.takeover.pull(from, clientId, false);
    const session = this.broker.sessions.get(clientId);
    if (session === undefined) return false;
    if (session.owner === null) {
      // Disconnected as of now: the expiry timer starts afresh (and a pending will keeps its delay).
      this.broker.closeSession(session, true, Date.now());
      cluster.sessionOpened(session);
    }
    return true;
  }
}

function settle(reply: unknown): void {
  const r = reply as Outcome<unknown>;
  if ('error' in r) throw new RebalanceError(r.error.code, r.error.message);
}
