// Stopping a node and the upgrade lease, on this node or on any other member by RPC: what `ctl
// cluster upgrade` (SPEC 12) uses to stop an emptied old node through the one management API it
// talks to, and to refuse a second upgrade while one runs (every node of an upgrade holds its lease).
import type { Logger } from 'pino';
import type { Cluster } from './cluster.js';
import type { RpcArgs, RpcResult } from './rpc.js';

const RPC = { stop: 'node.stop', lease: 'node.lease', counts: 'node.counts' } as const;

declare module './rpc.js' {
  interface RpcTable {
    'node.stop': { args: { leave: boolean } | null; result: Outcome };
    /** Checked by leaseRequest on arrival, as a management API body is. */
    'node.lease': { args: unknown; result: Outcome };
    'node.counts': { args: null; result: NodeCounts };
  }
}
/** Leave and stop after the answer has gone out (the RPC reply or the HTTP response). */
const STOP_DELAY_MS = 100;
/** A lease outlives a silent holder by at most this (the CLI renews far more often). */
const MAX_LEASE_TTL_S = 600;

type NodeControlErrorCode = 'lease_held' | 'invalid_node' | 'rpc_failed' | 'invalid_param';

export class NodeControlError extends Error {
  constructor(
    readonly code: NodeControlErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NodeControlError';
  }
}

/** What asks for a lease: an opaque holder id (the CLI's host, pid and a random part) and a ttl. */
interface LeaseRequest {
  readonly owner: string;
  /** Seconds, 1..MAX_LEASE_TTL_S; 0 releases the holder's lease. */
  readonly ttl: number;
}

interface Lease {
  owner: string;
  since: number;
  expiresAt: number;
}

type Outcome = { ok: true } | { error: { code: NodeControlErrorCode; message: string } };

/** A node's live connections and sessions (what an upgrade's plan is computed from). */
export interface NodeCounts {
  readonly connections: number;
  readonly sessions: number;
}

function leaseRequest(args: unknown): LeaseRequest {
  const { owner, ttl } = (args ?? {}) as { owner?: unknown; ttl?: unknown };
  if (typeof owner !== 'string' || owner === '' || owner.length > 200) throw new NodeControlError('invalid_param', 'invalid owner value');
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > MAX_LEASE_TTL_S) throw new NodeControlError('invalid_param', 'invalid ttl value');
  return { owner, ttl };
}

export class NodeControl {
  private lease: Lease | null = null;
  private stopping = false;

  constructor(
    private readonly cluster: Cluster,
    /** Stops this node's process gracefully (as SIGTERM does). */
    private readonly requestStop: () => void,
    private readonly counts: () => NodeCounts,
    private readonly log: Logger,
  ) {
    cluster.rpc.handle(RPC.counts, () => this.counts());
    cluster.rpc.handle(RPC.stop, (args) => this.outcome(() => this.stopLocal(args?.leave === true)));
    cluster.rpc.handle(RPC.lease, (args) => this.outcome(() => this.leaseLocal(leaseRequest(args))));
  }

  /** `node` (this one or a member) leaves its cluster when `leave`, then stops gracefully. */
  async stop(node: string, leave: boolean): Promise<void> {
    if (node === this.cluster.node) return this.stopLocal(leave);
    await this.remote(node, RPC.stop, { leave });
  }

  /** Takes or renews (ttl > 0) or releases (ttl 0) the upgrade lease of `node`; `lease_held` when another holder has it. */
  async takeLease(node: string, request: unknown): Promise<void> {
    const checked = leaseRequest(request);
    if (node === this.cluster.node) return this.leaseLocal(checked);
    await this.remote(node, RPC.lease, checked);
  }

  /** `node`'s live connections and sessions. */
  async countsOf(node: string): Promise<NodeCounts> {
    if (node === this.cluster.node) return this.counts();
    return await this.remote(node, RPC.counts, null);
  }

  private stopLocal(leave: boolean): void {
    if (this.stopping) return;
    this.stopping = true;
    this.log.warn({ leave }, 'stop requested over the management API');
    setTimeout(() => {
      if (leave && this.cluster.status().running.length + this.cluster.status().stopped.length > 1) this.cluster.leave();
      this.requestStop();
    }, STOP_DELAY_MS).unref();
  }

  private leaseLocal({ owner, ttl }: LeaseRequest): void {
    const now = Date.now();
    const held = this.lease !== null && this.lease.expiresAt > now ? this.lease : null;
    if (held !== null && held.owner !== owner) {
      const left = Math.ceil((held.expiresAt - now) / 1000);
      throw new NodeControlError('lease_held', `an upgrade is already running on ${this.cluster.node} (holder ${held.owner}, since ${new Date(held.since).toISOString()}, lease expires in ${left} s)`);
    }
    if (ttl === 0) this.lease = null;
    else this.lease = { owner, since: held?.since ?? now, expiresAt: now + ttl * 1000 };
  }

  private async outcome(f: () => void): Promise<Outcome> {
    try {
      f();
      return { ok: true };
    } catch (err) {
      if (err instanceof NodeControlError) return { error: { code: err.code, message: err.message } };
      throw err;
    }
  }

  /** An RPC to a member: its answer, or its error (an Outcome) thrown. */
  private async remote<M extends 'node.stop' | 'node.lease' | 'node.counts'>(node: string, method: M, args: RpcArgs<M>): Promise<RpcResult<M>> {
    const { running, stopped } = this.cluster.status();
    if (!running.includes(node) && !stopped.includes(node)) throw new NodeControlError('invalid_node', `invalid node: ${node}`);
    const link = this.cluster.linkTo(node);
    if (link === undefined) throw new NodeControlError('rpc_failed', `node ${node} is not running`);
    let answer: RpcResult<M>;
    try {
      answer = await this.cluster.rpc.call(link, method, args);
    } catch (err) {
      throw new NodeControlError('rpc_failed', (err as Error).message);
    }
    const failed = (answer as Partial<Extract<Outcome, { error: unknown }>>).error;
    if (failed !== undefined) throw new NodeControlError(failed.code, failed.message);
    return answer;
  }
}
