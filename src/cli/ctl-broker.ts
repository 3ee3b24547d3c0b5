// `tidemq ctl broker stats`: the node's counters, one `key : value` line each (EMQX's names).
import type { CtlFamily } from './ctl.js';

export const brokerCommands: CtlFamily = {
  name: 'broker',
  describe: "the node's counters",
  commands: [
    {
      command: 'stats',
      describe: 'connections, sessions, subscriptions, topics and retained messages of the node',
      read: true,
      async run(ctx) {
        // One entry per node, the node that answers first.
        const nodes = (await ctx.request('GET', '/stats')) as Array<Record<string, unknown>>;
        if (ctx.json) return ctx.printJson(nodes);
        const { node: _node, ...stats } = nodes[0] ?? {};
        for (const [key, value] of Object.entries(stats)) ctx.print(`${key} : ${String(value)}`);
      },
    },
  ],
};
