// A node's rebalance side: its eviction agent, its evacuation, its part in cluster rebalances
// (coordinator, donor, participant), and their cluster face: RPCs for status, evacuation and
// rebalance start/stop on another node, a coordinator's reads and donor syncs, and taking over a
// session another node evicts (the recipient's socketless holder). The management API and node
// startup use this one object.
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import type { Cluster } from '../cluster/cluster.js';
import type { RpcArgs, RpcMethod, RpcResult } from '../cluster/rpc.js';
import type { SessionStore } from '../store/store.js';
import { realClock, type Clock } from './clock.js';
import { RebalanceCoordinator, type CoordinatorStatus, type Participants } from './coordinator.js';
import { RebalanceDonor, reportOf, type DonorStatus, type DonorSync, type ParticipantReport } from './donor.js';
import { RebalanceError } from './errors.js';
import { Evacuation, type EvacuationStatus } from './evacuation.js';
import { EvictionAgent, type SessionMover } from './eviction-agent.js';
import { checkMigrateTo, evacuationFromJson, rebalanceFromJson, rebalanceFromQuery, type RebalanceOptions } from './options.js';
import { previewPlan, type PlanPreview } from './plan.js';

/** Store key of the persisted evacuation. */
const EVACUATION_KEY = 'evacuation';

/** `GET /load_rebalance/status` of a node (SPEC 8). */
export type NodeStatus =
  | { status: 'disabled' }
  | ({ status: 'enabled'; process: 'evacuation' } & EvacuationStatus)
  | ({ status: 'enabled'; process: 'rebalance' } & DonorStatus);

/** `GET /load_rebalance/global_status`: evacuations of every running node; rebalance coordinators. */
export interface GlobalStatus {
  evacuations: Array<{ node: string } & EvacuationStatus>;
  rebalances: Array<{ node: string } & CoordinatorStatus>;
}

/** An RPC's answer: errors travel as data, so their code survives the hop. */
type Outcome<T> = { ok: T } | { error: { code: RebalanceError['code']; message: string } };

const RPC = {
  status: 'rebalance.status',
  evacuationStart: 'rebalance.evacuation_start',
  evacuationStop: 'rebalance.evacuation_stop',
  takeSession: 'rebalance.take_session',
  start: 'rebalance.start',
  stop: 'rebalance.stop',
  coordinatorStatus: 'rebalance.coordinator_status',
  report: 'rebalance.report',
  donorSync: 'rebalance.donor_sync',
  donorRelease: 'rebalance.donor_release',
} as const;

declare module '../cluster/rpc.js' {
  interface RpcTable {
    /** `start`/`evacuation_start` carry the management API's JSON body, checked on arrival. */
    'rebalance.start': { args: unknown; result: Outcome<void> };
    'rebalance.stop': { args: null; result: Outcome<void> };
    'rebalance.coordinator_status': { args: null; result: CoordinatorStatus | null };
    'rebalance.report': { args: null; result: ParticipantReport };
    'rebalance.donor_sync': { args: DonorSync; result: Outcome<void> };
    'rebalance.donor_release': { args: { coordinator: string; id: string }; result: void };
    'rebalance.status': { args: null; result: NodeStatus };
    'rebalance.evacuation_start': { args: unknown; result: Outcome<void> };
    'rebalance.evacuation_stop': { args: null; result: Outcome<void> };
    'rebalance.take_session': { args: { clientId: string }; result: boolean };
  }
}

async function outcome<T>(f: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: await f() };
  } catch (err) {
    if (err instanceof RebalanceError) return { error: { code: err.code, message: err.message } };
    throw err;
  }
}

export class NodeRebalance implements SessionMover, Participants {
  readonly agent: EvictionAgent;
  readonly evacuation: Evacuation;
  readonly coordinator: RebalanceCoordinator;
  readonly donor: RebalanceDonor;
  readonly node: string;

  constructor(
    private readonly broker: Broker,
    private readonly store: SessionStore | null,
    private readonly cluster: Cluster | null,
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
    this.donor = new RebalanceDonor({
      node: this.node,
      agent: this.agent,
      clock,
      log,
      reachable: (node) => node === this.node || cluster?.linkTo(node)?.up === true,
    });
    this.coordinator = new RebalanceCoordinator({ node: this.node, participants: this, clock, log });
    if (cluster !== null) {
      const rpc = cluster.rpc;
      rpc.handle(RPC.start, (args) => outcome(() => this.startRebalanceLocal(args)));
      rpc.handle(RPC.stop, () => outcome(() => this.coordinator.stop()));
      rpc.handle(RPC.coordinatorStatus, () => this.coordinator.status());
      rpc.handle(RPC.report, () => reportOf(this.node, this.agent));
      rpc.handle(RPC.donorSync, (args) => outcome(() => this.donor.sync(args)));
      rpc.handle(RPC.donorRelease, (args) => this.donor.release(args.coordinator, args.id));
      rpc.handle(RPC.status, () => this.localStatus());
      rpc.handle(RPC.evacuationStart, (args) => outcome(() => this.startLocal(args)));
      rpc.handle(RPC.evacuationStop, () => outcome(() => this.evacuation.stop()));
      rpc.handle(RPC.takeSession, (args, from) => this.takeSession(args.clientId, from));
    }
  }

  /** Node startup, before the listeners accept: resumes a stored evacuation. */
  resume(): boolean {
    return this.store !== null && this.evacuation.resume(this.store.getNodeState(EVACUATION_KEY));
  }

  close(): void {
    this.evacuation.close();
    this.coordinator.close();
    this.donor.close();
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
    if (s !== null) return { status: 'enabled', process: 'evacuation', ...s };
    const d = this.donor.status();
    return d === null ? { status: 'disabled' } : { status: 'enabled', process: 'rebalance', ...d };
  }

  /** This node's status, or another member's (RPC). */
  async statusOf(node: string): Promise<NodeStatus> {
    if (node === this.node) return this.localStatus();
    return await this.call(node, RPC.status, null);
  }

  /** Every running node's evacuation and coordinated rebalance; a node that does not answer is left out. */
  async globalStatus(): Promise<GlobalStatus> {
    const nodes = this.runningNodes();
    const [statuses, coordinators] = await Promise.all([
      Promise.all(nodes.map((n) => this.statusOf(n).catch((): NodeStatus => ({ status: 'disabled' })))),
      Promise.all(nodes.map((n) => this.coordinatorStatusOf(n).catch(() => null))),
    ]);
    const evacuations: GlobalStatus['evacuations'] = [];
    statuses.forEach((s, i) => {
      if (s.status !== 'enabled' || s.process !== 'evacuation') return;
      const { status: _status, process: _process, ...rest } = s;
      evacuations.push({ node: nodes[i] as string, ...rest });
    });
    const rebalances: GlobalStatus['rebalances'] = [];
    coordinators.forEach((c, i) => {
      if (c !== null) rebalances.push({ node: nodes[i] as string, ...c });
    });
    return { evacuations, rebalances };
  }

  private async coordinatorStatusOf(node: string): Promise<CoordinatorStatus | null> {
    if (node === this.node) return this.coordinator.status();
    return await this.call(node, RPC.coordinatorStatus, null);
  }

  /** `POST /load_rebalance/:node/start` with its JSON body: a rebalance coordinated by `node`. */
  async startRebalance(node: string, body: unknown): Promise<void> {
    if (node === this.node) return this.startRebalanceLocal(body);
    settle(await this.call(node, RPC.start, body ?? null));
  }

  async stopRebalance(node: string): Promise<void> {
    if (node === this.node) return this.coordinator.stop();
    settle(await this.call(node, RPC.stop, null));
  }

  /** `GET /load_rebalance/plan`: what a rebalance with these options (query) would do now, starting nothing. */
  async plan(query: Iterable<[string, string]>): Promise<PlanPreview> {
    const options = rebalanceFromQuery(query);
    const nodes = this.participantsOf(options);
    return previewPlan(await Promise.all(nodes.map((n) => this.report(n))), options);
  }

  private async startRebalanceLocal(body: unknown): Promise<void> {
    const options = rebalanceFromJson(body);
    await this.coordinator.start(options, this.participantsOf(options));
  }

  /** `nodes`, checked against the running nodes (SPEC 8 messages), or every running node. */
  private participantsOf(options: RebalanceOptions): string[] {
    if (options.nodes === undefined) return this.runningNodes();
    checkMigrateTo(options.nodes, this.runningNodes(), 'nodes');
    return [...new Set(options.nodes)];
  }

  // Participants: the coordinator's reach, a local call for this node, an RPC for the others.

  async report(node: string): Promise<ParticipantReport> {
    if (node === this.node) return reportOf(this.node, this.agent);
    return await this.call(node, RPC.report, null);
  }

  async sync(node: string, s: DonorSync): Promise<void> {
    if (node === this.node) return this.donor.sync(s);
    settle(await this.call(node, RPC.donorSync, s));
  }

  async release(node: string, coordinator: string, id: string): Promise<void> {
    if (node === this.node) return this.donor.release(coordinator, id);
    await this.call(node, RPC.donorRelease, { coordinator, id });
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
  private async call<M extends RpcMethod>(node: string, method: M, args: RpcArgs<M>): Promise<RpcResult<M>> {
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
      this.broker.sessions.close(session, true, Date.now());
      cluster.sessionOpened(session);
    }
    return true;
  }
}

function settle(r: Outcome<unknown>): void {
  if ('error' in r) throw new RebalanceError(r.error.code, r.error.message);
}
