// Request/response over cluster links: method name -> handler, every call bounded by a timeout
// (cluster.rpc_timeout). Takeover, and later eviction and rebalance, are built on it.
import type { Link } from './link.js';
import { Msg } from './messages.js';

export type RpcHandler = (args: unknown, from: string) => unknown;

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

interface PendingCall {
  method: string;
  node: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class Rpc {
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 0;

  constructor(readonly timeoutMs: number) {}

  handle(method: string, handler: RpcHandler): void {
    this.handlers.set(method, handler);
  }

  call(link: Link, method: string, args: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    const node = link.peer;
    if (!link.up) return Promise.reject(new RpcError(method, node, 'node is not connected'));
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcError(method, node, `timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { method, node, resolve, reject, timer });
      link.send([Msg.Call, id, method, args]);
    });
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
    if (ok === true) call.resolve(value);
    else call.reject(new RpcError(call.method, call.node, String(value)));
  }

  /** The node's link went down: its outstanding calls fail now rather than at their timeout. */
  nodeDown(node: string): void {
    for (const [id, call] of this.pending) {
      if (call.node !== node) continue;
      this.pending.delete(id);
      clearTimeout(call.timer);
      call.reject(new RpcError(call.method, node, 'node went down'));
    }
  }

  /** Fails every outstanding call (the cluster is stopping). */
  close(): void {
    for (const call of this.pending.values()) {
      clearTimeout(call.timer);
      call.reject(new RpcError(call.method, call.node, 'cluster stopped'));
    }
    this.pending.clear();
  }
}
