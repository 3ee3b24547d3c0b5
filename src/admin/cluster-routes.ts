// The cluster's management endpoints (what `tidemq ctl cluster ...` calls):
//   GET /cluster                       this node's view: running and stopped members
//   POST /cluster/join {"node": ...}   this node joins the cluster of `node` (name@host[:port])
//   POST /cluster/leave                this node leaves its cluster
//   DELETE /cluster/:node/force_leave  removes another node
//   GET /routes                        the route table: topic filter -> node
import { ClusterError, type Cluster } from '../cluster/cluster.js';
import { done, ok, type Route } from './api.js';
import type { AdminContext } from './context.js';
import { ApiError } from './errors.js';

/** The cluster status as the API returns it. */
function clusterView(cluster: Cluster): { name: string; running_nodes: string[]; stopped_nodes: string[] } {
  const { running, stopped } = cluster.status();
  return { name: cluster.node, running_nodes: running, stopped_nodes: stopped };
}

/** A membership command's refusal becomes a 400 with its reason. */
async function command(f: () => void | Promise<void>): Promise<void> {
  try {
    await f();
  } catch (err) {
    if (err instanceof ClusterError) throw new ApiError('bad_request', err.message);
    throw err;
  }
}

export function clusterRoutes(ctx: AdminContext): Route[] {
  const cluster = ctx.cluster;
  if (cluster === undefined) return [];
  return [
    { method: 'GET', path: '/cluster', handler: () => ok(clusterView(cluster)) },
    {
      method: 'POST',
      path: '/cluster/join',
      handler: async (req) => {
        const node = (req.body as { node?: unknown } | undefined)?.node;
        if (typeof node !== 'string' || !node.includes('@')) throw new ApiError('bad_request', `invalid node: ${String(node)}`);
        await command(() => cluster.join(node));
        return ok(clusterView(cluster));
      },
    },
    {
      method: 'POST',
      path: '/cluster/leave',
      handler: async () => {
        await command(() => cluster.leave());
        return ok(clusterView(cluster));
      },
    },
    {
      method: 'DELETE',
      path: '/cluster/:node/force_leave',
      handler: async (req) => {
        await command(() => cluster.forceLeave(req.params.node as string));
        return done();
      },
    },
    { method: 'GET', path: '/routes', handler: () => ok(cluster.routeList()) },
  ];
}
