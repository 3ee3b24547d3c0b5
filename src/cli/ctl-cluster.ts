// `tidemq ctl cluster join <node> | leave | force-leave <node> | status`, worded as EMQX 4.4's
// `emqx_ctl cluster` (seed distributed-cluster), and `upgrade` (ctl-upgrade.ts).
import { upgradeCommand } from './ctl-upgrade.js';
import { CtlError, CtlReported, type CtlContext, type CtlFamily } from './ctl.js';

interface ClusterView {
  running_nodes: string[];
  stopped_nodes: string[];
}

const quoted = (nodes: readonly string[]): string => nodes.map((n) => `'${n}'`).join(',');

/** `Cluster status: [{running_nodes,['a@h','b@h']}]`, with `{stopped_nodes,[...]}` when some are down. */
function statusLine(view: ClusterView): string {
  const parts = [`{running_nodes,[${quoted(view.running_nodes)}]}`];
  if (view.stopped_nodes.length > 0) parts.push(`{stopped_nodes,[${quoted(view.stopped_nodes)}]}`);
  return `Cluster status: [${parts.join(',')}]`;
}

/** Runs a membership change; its refusal prints `<failure>: <reason>` (stdout, as EMQX) and fails. */
async function change(ctx: CtlContext, success: string, failure: string, f: () => Promise<unknown>): Promise<void> {
  try {
    await f();
  } catch (err) {
    if (!(err instanceof CtlError) || err.apiError === undefined) throw err;
    ctx.print(`${failure}: ${err.apiError.message}`);
    throw new CtlReported(err.apiError.message);
  }
  const view = (await ctx.request('GET', '/cluster')) as ClusterView;
  ctx.print(success);
  ctx.print(statusLine(view));
}

export const clusterCommands: CtlFamily = {
  name: 'cluster',
  describe: 'join, leave, force-leave and status of the cluster; blue-green upgrade',
  commands: [
    {
      command: 'join <node>',
      describe: 'this node joins the cluster of <node> (name@host, or name@host:port for a non-default cluster port)',
      read: false,
      builder: (y) => y.positional('node', { type: 'string', demandOption: true }),
      run: (ctx, argv) =>
        change(ctx, 'Join the cluster successfully.', 'Failed to join the cluster', () => ctx.request('POST', '/cluster/join', { node: argv.node })),
    },
    {
      command: 'leave',
      describe: 'this node leaves its cluster',
      read: false,
      run: (ctx) => change(ctx, 'Leave the cluster successfully.', 'Failed to leave the cluster', () => ctx.request('POST', '/cluster/leave')),
    },
    {
      command: 'force-leave <node>',
      describe: 'remove another node from the cluster',
      read: false,
      builder: (y) => y.positional('node', { type: 'string', demandOption: true }),
      run: (ctx, argv) =>
        change(ctx, 'Remove the node from cluster successfully.', 'Failed to remove the node from cluster', () =>
          ctx.request('DELETE', `/cluster/${encodeURIComponent(String(argv.node))}/force_leave`),
        ),
    },
    {
      command: 'status',
      describe: 'running and stopped members',
      read: true,
      async run(ctx) {
        const view = (await ctx.request('GET', '/cluster')) as ClusterView;
        if (ctx.json) ctx.printJson(view);
        else ctx.print(statusLine(view));
      },
    },
    upgradeCommand,
  ],
};
