// `tidemq ctl clients list|show <id>|kick <id>`.
import type { CtlContext, CtlFamily } from './ctl.js';

/** Clients fetched per request while listing, and at most this many requests (10 M clients). */
const PAGE = 1000;
const MAX_PAGES = 10_000;

/** One client as a line, like EMQX's `Client(id, key=value, ...)`. */
function clientLine(c: Record<string, unknown>): string {
  const peer = c.ip_address === null ? 'undefined' : `${String(c.ip_address)}:${String(c.port)}`;
  const fields: Array<[string, unknown]> = [
    ['username', c.username ?? 'undefined'],
    ['peername', peer],
    ['clean_start', c.clean_start],
    ['keepalive', c.keepalive],
    ['session_expiry_interval', c.expiry_interval],
    ['subscriptions', c.subscriptions_cnt],
    ['inflight', c.inflight_cnt],
    ['mqueue_len', c.mqueue_len],
    ['connected', c.connected],
    ['created_at', c.created_at],
    c.connected === true ? ['connected_at', c.connected_at] : ['disconnected_at', c.disconnected_at ?? 'undefined'],
  ];
  return `Client(${String(c.clientid)}, ${fields.map(([k, v]) => `${k}=${String(v)}`).join(', ')})`;
}

interface Page {
  data: Array<Record<string, unknown>>;
  meta: { hasnext: boolean };
}

async function listAll(ctx: CtlContext): Promise<Array<Record<string, unknown>>> {
  const all: Array<Record<string, unknown>> = [];
  for (let page = 1; page <= MAX_PAGES; page++) {
    const res = (await ctx.request('GET', `/clients?page=${page}&limit=${PAGE}`)) as Page;
    all.push(...res.data);
    if (!res.meta.hasnext || res.data.length === 0) break;
  }
  return all;
}

export const clientCommands: CtlFamily = {
  name: 'clients',
  describe: 'list, show and kick clients',
  commands: [
    {
      command: 'list',
      describe: 'every client (session) of the node',
      read: true,
      async run(ctx) {
        const clients = await listAll(ctx);
        if (ctx.json) return ctx.printJson(clients);
        for (const c of clients) ctx.print(clientLine(c));
      },
    },
    {
      command: 'show <clientid>',
      describe: 'one client',
      read: true,
      builder: (y) => y.positional('clientid', { type: 'string', demandOption: true }),
      async run(ctx, argv) {
        const c = (await ctx.request('GET', `/clients/${encodeURIComponent(String(argv.clientid))}`)) as Record<string, unknown>;
        if (ctx.json) return ctx.printJson(c);
        ctx.print(clientLine(c));
      },
    },
    {
      command: 'kick <clientid>',
      describe: 'disconnect a client (5.0: DISCONNECT 0x98 Administrative action)',
      read: false,
      builder: (y) => y.positional('clientid', { type: 'string', demandOption: true }),
      async run(ctx, argv) {
        await ctx.request('DELETE', `/clients/${encodeURIComponent(String(argv.clientid))}`);
        ctx.print('ok');
      },
    },
  ],
};
