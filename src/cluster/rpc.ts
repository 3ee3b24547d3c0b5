// Request/response over cluster links: method name -> handler, every call bounded by a timeout
// (cluster.rpc_timeout). Takeover, session eviction and rebalance are built on it.
import { LatencyHistogram } from '../metrics/latency.js';
import type { Link } from './link.js';
import { Msg } from './messages.js';

/**
 * Every RPC by name, with its argument and result types. Each module that serves RPCs declares
 * its own methods by augmenting this interface (`declare module '.../rpc.js'`), so the table is
 * complete without the cluster importing the modules above it. A handler gets its arguments as
 * the table says: the peer is an authenticated node (cookie challenge) that called by the table.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RpcTable {}

export type RpcMethod = keyof RpcTable & string;
export type RpcArgs<M extends RpcMethod> = RpcTable[M] extends { args: infer A } ? A : never;
export type RpcResult<M extends RpcMethod> = RpcTable[M] extends { result: infer R } ? R : never;
export type RpcHandler<M extends RpcMethod> = (args: RpcArgs<M>, from: string) => RpcResult<M> | Promise<RpcResult<M>>;

type AnyHandler = (args: unknown, from: string) => unknown;

/** A call that failed: timed out, the peer went down, or its handler threw (message kept). */
export class RpcError extends Error {
  constructor(
    readonly method: string,
    readonly node: string,
    why: string,
  ) {
    super(`rpc ${method} on ${node}: ${why}`);
    this.name = 'RpcError';
  }
}

/** One method's calls made by this node (metrics): latency of the answered ones, and outcomes. */
export class RpcMethodStats {
  readonly latency = new LatencyHistogram();
  ok = 0;
  /** Answered with an error by the peer's handler. */
  error = 0;
  timeout = 0;
  /** No answer: the peer was not connected or went down, or the cluster stopped. */
  down = 0;
}

interface PendingCall {
  method: string;
  node: string;
  stats: RpcMethodStats;
  /** performance.now() when sent. */
  start: number;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class Rpc {
  private readonly handlers = new Map<string, AnyHandler>();
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 0;
  /** By method name: bounded, the names are the handlers' constants. */
  readonly stats = new Map<string, RpcMethodStats>();

  constructor(readonly timeoutMs: number) {}

  handle<M extends RpcMethod>(method: M, handler: RpcHandler<M>): void {
    this.handlers.set(method, handler as AnyHandler);
  }

  call<M extends RpcMethod>(link: Link, method: M, args: RpcArgs<M>, timeoutMs = this.timeoutMs): Promise<RpcResult<M>> {
    const node = link.peer;
    const stats = this.statsOf(method);
    if (!link.up) {
      stats.down++;
      return Promise.reject(new RpcError(method, node, 'node is not connected'));
    }
    const id = ++this.nextId;
    const start = performance.now();
    return new Promise<RpcResult<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        stats.timeout++;
        reject(new RpcError(method, node, `timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, node, stats, start, resolve: resolve as (value: unknown) => void, reject, timer });
      link.send([Msg.Call, id, method, args]);
    });
  }

  private statsOf(method: string): RpcMethodStats {
    let stats = this.stats.get(method);
    if (stats === undefined) this.stats.set(method, (stats = new RpcMethodStats()));
    return stats;
  }

  /** A call from a peer: runs the handler and replies, also with an error. */
  onCall(link: Link, id: unknown, method: unknown, args: unknown): void {
    const handler = typeof method === 'string' ? this.handlers.get(method) : undefined;
    if (handler === undefined) {
      link.send([Msg.Reply, id, false, `unknown method ${String(method)}`]);
      return;
    }
    Promise.resolve()
      .then(() => handler(args, link.peer))
      .then(
        (result) => link.send([Msg.Reply, id, true, result ?? null]),
        (err: unknown) => link.send([Msg.Reply, id, false, err instanceof Error ? err.message : String(err)]),
      );
  }

  onReply(id: unknown, ok: unknown, value: unknown): void {
    const call = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (call === undefined) return; // timed out already
    this.pending.delete(id as number);
    clearTimeout(call.timer);
    call.stats.latency.observe((performance.now() - call.start) / 1000);
    if (ok === true) {
      call.stats.ok++;
      call.resolve(value);
    } else {
      call.stats.error++;
      call.reject(new RpcError(call.method, call.node, String(value)));
    }
  }

  /** The node's link went down: its outstanding calls fail now rather than at their timeout. */
  nodeDown(node: string): void {
    for (const [id, call] of this.pending) {
      if (call.node !== node) continue;
      this.pending.delete(id);
      clearTimeout(call.timer);
      call.stats.down++;
      call.reject(new RpcError(call.method, node, 'node went down'));
    }
  }

  /** Fails every outstanding call (the cluster is stopping). */
  close(): void {
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.stats.down++;
      call.reject(new RpcError(call.method, call.node, 'cluster stopped'));
    }
    this.pending.clear();
  }
}
