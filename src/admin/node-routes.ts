// Node lifecycle endpoints (tidemq extensions, for `ctl cluster upgrade`, SPEC 12), on this node
// or any member:
//   POST /nodes/:node/stop {"leave": bool}          leave the cluster (when asked), then stop gracefully
//   PUT /nodes/:node/upgrade_lease {"owner","ttl"}  take or renew the upgrade lease (ttl 0 releases it)
//   GET /nodes/:node/counts                         its live connections and sessions
import { NodeControlError, type NodeControl } from '../cluster/node-control.js';
import { ok, type Route } from './api.js';
import type { AdminContext } from './context.js';
import { ApiError, type ApiErrorKind } from './errors.js';

const KIND: Record<NodeControlError['code'], ApiErrorKind> = {
  invalid_node: 'invalid_node',
  rpc_failed: 'unavailable',
  lease_held: 'bad_request',
  invalid_param: 'bad_request',
};

async function api<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof NodeControlError) throw new ApiError(KIND[err.code], err.message);
    throw err;
  }
}

export function nodeRoutes(ctx: AdminContext): Route[] {
  const control: NodeControl | undefined = ctx.nodeControl;
  if (control === undefined) return [];
  return [
    {
      method: 'GET',
      path: '/nodes/:node/counts',
      handler: async (req) => {
        const node = req.params.node as string;
        return ok({ node, ...(await api(() => control.countsOf(node))) });
      },
    },
    {
      method: 'POST',
      path: '/nodes/:node/stop',
      handler: async (req) => {
        const leave = (req.body as { leave?: unknown } | undefined)?.leave;
        if (leave !== undefined && typeof leave !== 'boolean') throw new ApiError('bad_request', 'invalid leave value');
        const node = req.params.node as string;
        await api(() => control.stop(node, leave === true));
        return ok({ node, stopping: true });
      },
    },
    {
      method: 'PUT',
      path: '/nodes/:node/upgrade_lease',
      handler: async (req) => {
        const node = req.params.node as string;
        const body = (req.body ?? {}) as { owner?: unknown; ttl?: unknown };
        await api(() => control.takeLease(node, body));
        return ok({ node, owner: body.owner, ttl: body.ttl });
      },
    },
  ];
}
