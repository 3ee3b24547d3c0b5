// `tidemq ctl node drain [--timeout S] [evacuation flags]` (SPEC 12): evacuates the node the CLI
// talks to and waits until it is empty (exit 0) or the timeout passes (exit 1, the evacuation
// stays on): a Kubernetes preStop hook or a systemd ExecStop.
import { Progress } from './ctl-rebalance.js';
import { CtlError, type CtlFamily } from './ctl.js';
import { countsOf, evacuationBody, evacuationOptions, startOrContinue, statusOf, waitEvacuated } from './evacuation-wait.js';

/** Without --timeout a drain waits this long. */
export const DEFAULT_DRAIN_TIMEOUT_S = 600;
/** Progress lines this often when stdout is not a terminal (a pod's log). */
const QUIET_EVERY_MS = 10_000;

export const nodeCommands: CtlFamily = {
  name: 'node',
  describe: 'this node: drain',
  commands: [
    {
      command: 'drain',
      describe: 'evacuate this node and wait until it has no connection and no session (exit 0) or --timeout passes (exit 1, the evacuation stays on)',
      read: false,
      builder: (y) =>
        evacuationOptions(y).option('timeout', { type: 'number', requiresArg: true, describe: `seconds to wait (${DEFAULT_DRAIN_TIMEOUT_S})` }),
      async run(ctx, argv) {
        const timeout = argv.timeout === undefined ? DEFAULT_DRAIN_TIMEOUT_S : Number(argv.timeout);
        if (!Number.isFinite(timeout) || timeout <= 0) throw new CtlError('invalid --timeout value', undefined, 2);
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
  ],
};
