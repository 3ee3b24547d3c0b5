// `tidemq ctl node drain [--timeout S] [evacuation flags]` (SPEC 12): evacuates the node the CLI
// talks to and waits until it is empty (exit 0) or the timeout passes (exit 1, the evacuation
// stays on): a Kubernetes preStop hook or a systemd ExecStop. `node undrain [--timeout S]` is its
// other half: an evacuation survives a restart (SPEC 6), so a drained pod that comes back on its
// volume must be told to serve again (postStart hook, ExecStartPost); it waits for the API first.
import { Progress } from './ctl-rebalance.js';
import { CtlError, type CtlFamily } from './ctl.js';
import { countsOf, evacuationBody, evacuationOptions, startOrContinue, statusOf, waitEvacuated } from './evacuation-wait.js';

/** Without --timeout a drain waits this long. */
const DEFAULT_DRAIN_TIMEOUT_S = 600;
/** Progress lines this often when stdout is not a terminal (a pod's log). */
const QUIET_EVERY_MS = 10_000;
/** Without --timeout an undrain waits this long for the node's API. */
const DEFAULT_UNDRAIN_TIMEOUT_S = 60;
const RETRY_MS = 500;

function timeoutOf(argv: Record<string, unknown>, fallback: number): number {
  const timeout = argv.timeout === undefined ? fallback : Number(argv.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0) throw new CtlError('invalid --timeout value', undefined, 2);
  return timeout;
}

export const nodeCommands: CtlFamily = {
  name: 'node',
  describe: 'this node: drain, undrain',
  commands: [
    {
      command: 'drain',
      describe: 'evacuate this node and wait until it has no connection and no session (exit 0) or --timeout passes (exit 1, the evacuation stays on)',
      read: false,
      builder: (y) =>
        evacuationOptions(y).option('timeout', { type: 'number', requiresArg: true, describe: `seconds to wait (${DEFAULT_DRAIN_TIMEOUT_S})` }),
      async run(ctx, argv) {
        const timeout = timeoutOf(argv, DEFAULT_DRAIN_TIMEOUT_S);
        const body = evacuationBody(argv);
        const node = ((await ctx.request('GET', '/load_rebalance/local_node')) as { node: string }).node;
        const how = await startOrContinue(ctx, node, body, await statusOf(ctx, node));
        ctx.print(`Draining ${node}: evacuation ${how}`);
        const progress = new Progress();
        const every = process.stdout.isTTY === true ? 0 : QUIET_EVERY_MS;
        let printed = 0;
        const done = await waitEvacuated(ctx, node, Date.now() + timeout * 1000, (s, now) => {
          const line = progress.line(`${node} `, s, now);
          if (now - printed >= every) {
            printed = now;
            ctx.print(line);
          }
        });
        if (done !== undefined) return ctx.print(`Node ${node} drained: no connection and no session left`);
        const left = countsOf(await statusOf(ctx, node));
        throw new CtlError(
          `${node} not drained within ${timeout} s: ${left.connections} connections and ${left.sessions} sessions left; ` +
            'its evacuation stays on (tidemq ctl rebalance stop accepts connections again)',
        );
      },
    },
    {
      command: 'undrain',
      describe: "stop this node's evacuation, if any, so it accepts connections again; waits up to --timeout for the node's API to answer",
      read: false,
      builder: (y) => y.option('timeout', { type: 'number', requiresArg: true, describe: `seconds to wait for the API (${DEFAULT_UNDRAIN_TIMEOUT_S})` }),
      async run(ctx, argv) {
        const deadline = Date.now() + timeoutOf(argv, DEFAULT_UNDRAIN_TIMEOUT_S) * 1000;
        let node: string;
        for (;;) {
          try {
            node = ((await ctx.request('GET', '/load_rebalance/local_node')) as { node: string }).node;
            break;
          } catch (err) {
            // A node still starting: its API is not up yet.
            if (!(err instanceof CtlError) || err.apiError !== undefined || Date.now() >= deadline) throw err;
            await new Promise((r) => setTimeout(r, RETRY_MS));
          }
        }
        const s = await statusOf(ctx, node);
        if (s.status === 'enabled' && s.process === 'evacuation') {
          await ctx.request('POST', `/load_rebalance/${encodeURIComponent(node)}/evacuation/stop`);
          return ctx.print(`Node ${node} serves again: evacuation stopped`);
        }
        ctx.print(`Node ${node} serves: no evacuation`);
      },
    },
  ],
};
