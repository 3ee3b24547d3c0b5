// The /load_rebalance endpoints (SPEC 8): node and global status, evacuation and rebalance start
// and stop on any member, and the read-only rebalance plan (a tidemq extension). Handlers call the node's NodeRebalance; its errors map here, once, to
// API error kinds. The availability check itself is in broker-routes (the agent is its switch).
import { RebalanceError } from '../rebalance/errors.js';
import type { NodeRebalance } from '../rebalance/service.js';
import { ok, raw, type ApiRequest, type ApiResult, type Route } from './api.js';
import type { AdminContext } from './context.js';
import { ApiError, type ApiErrorKind } from './errors.js';

function kindOf(err: RebalanceError): ApiErrorKind {
  switch (err.code) {
    case 'invalid_node':
      return 'invalid_node';
    case 'rpc_failed':
      return 'unavailable';
    default:
      return 'bad_request';
  }
}

async function api<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof RebalanceError) throw new ApiError(kindOf(err), err.message);
    throw err;
  }
}

/** A start/stop that succeeded: EMQX 4.4 `{"code":0,"data":[]}`, EMQX 5 `{}`. */
function started(req: ApiRequest): ApiResult {
  return req.version === 'v4' ? ok([]) : raw({});
}

export function rebalanceRoutes(ctx: AdminContext): Route[] {
  const r: NodeRebalance | undefined = ctx.rebalance;
  if (r === undefined) return [];
  return [
    {
      method: 'GET',
      path: '/load_rebalance/status',
      // `?node=` (a tidemq extension, for `ctl rebalance node-status <node>`): another member's status.
      handler: async (req) => raw(await api(() => r.statusOf(req.query.get('node') ?? r.node))),
    },
    { method: 'GET', path: '/load_rebalance/global_status', handler: async () => raw(await api(() => r.globalStatus())) },
    {
      // tidemq extension: the name of the node that answers, for the CLI's local commands.
      method: 'GET',
      path: '/load_rebalance/local_node',
      handler: () => raw({ node: r.node }),
    },
    {
      method: 'POST',
      path: '/load_rebalance/:node/evacuation/start',
      handler: async (req) => {
        await api(() => r.startEvacuation(req.params.node as string, req.body));
        return started(req);
      },
    },
    {
      method: 'POST',
      path: '/load_rebalance/:node/evacuation/stop',
      handler: async (req) => {
        await api(() => r.stopEvacuation(req.params.node as string));
        return started(req);
      },
    },
    {
      method: 'POST',
      path: '/load_rebalance/:node/start',
      handler: async (req) => {
        await api(() => r.startRebalance(req.params.node as string, req.body));
        return started(req);
      },
    },
    {
      method: 'POST',
      path: '/load_rebalance/:node/stop',
      handler: async (req) => {
        await api(() => r.stopRebalance(req.params.node as string));
        return started(req);
      },
    },
    {
      // tidemq extension: what `start` with these options (the body's names as query parameters) would do.
      method: 'GET',
      path: '/load_rebalance/plan',
      handler: async (req) => raw(await api(() => r.plan(req.query))),
    },
  ];
}
