// GET /nodes, GET /stats and the load balancers' availability check, for this node. Cluster
// members are added by the cluster routes.
import { freemem, loadavg, totalmem } from 'node:os';
import { openFileLimit } from '../broker/fd-table.js';
import { countBroker, emqxStats } from '../metrics/counts.js';
import { ok, raw, type ApiRequest, type Route } from './api.js';
import type { AdminContext } from './context.js';
import { ApiError } from './errors.js';

/** EMQX 4.4 uptime text, e.g. `2 days, 3 hours, 4 minutes, 5 seconds`. */
function formatUptime(ms: number): string {
  let s = Math.floor(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['days', 86400], ['hours', 3600], ['minutes', 60]] as const) {
    const n = Math.floor(s / size);
    s -= n * size;
    if (n > 0 || parts.length > 0) parts.push(`${n} ${unit}`);
  }
  parts.push(`${s} seconds`);
  return parts.join(', ');
}

/** This node in the shape of EMQX's node list for the version asked. */
function nodeInfo(ctx: AdminContext, req: ApiRequest, fds: number): Record<string, unknown> {
  const c = countBroker(ctx.broker);
  const uptime = Date.now() - ctx.startedAt;
  const [load1, load5, load15] = loadavg().map((l) => Math.round(l * 100) / 100) as [number, number, number];
  const common = {
    node: ctx.nodeName,
    version: ctx.version,
    connections: c.connections,
    live_connections: c.liveConnections,
    memory_total: totalmem(),
    memory_used: totalmem() - freemem(),
    max_fds: fds,
    otp_release: `node-${process.version}`,
  };
  if (req.version === 'v4') {
    return { ...common, node_status: 'Running', uptime: formatUptime(uptime), load1: load1.toFixed(2), load5: load5.toFixed(2), load15: load15.toFixed(2) };
  }
  return { ...common, node_status: 'running', uptime, load1, load5, load15, role: 'core', edition: 'tidemq' };
}

export function brokerRoutes(ctx: AdminContext): Route[] {
  const fds = openFileLimit() ?? 0; // 0 where unknown
  return [
    { method: 'GET', path: '/nodes', handler: (req) => ok([nodeInfo(ctx, req, fds)]) },
    {
      method: 'GET',
      path: '/nodes/:node',
      handler: (req) => {
        if (req.params.node !== ctx.nodeName) throw new ApiError('not_found', `invalid node: ${req.params.node}`);
        return ok(nodeInfo(ctx, req, fds));
      },
    },
    {
      method: 'GET',
      path: '/stats',
      handler: (req) => {
        const stats = emqxStats(countBroker(ctx.broker));
        // EMQX 5: `aggregate=true` sums the nodes into one object; otherwise one entry per node.
        if (req.version === 'v5' && req.query.get('aggregate') === 'true') return ok(stats);
        return ok([{ node: ctx.nodeName, ...stats }]);
      },
    },
    {
      method: 'GET',
      path: '/load_rebalance/availability_check',
      public: true,
      handler: () => {
        if (!ctx.availability.serving) throw new ApiError('node_evacuating', 'Node Evacuating');
        return raw({});
      },
    },
  ];
}
