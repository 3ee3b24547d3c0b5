// `tidemq ctl rebalance start [--evacuation] [...] | node-status [node] | status | stop` with
// EMQX's lines (SPEC 9), and `plan [...]`: a rebalance's preview, starting nothing. Flags are validated here with the CLI's wording, then sent to the node's
// /load_rebalance API; its validation errors come back in the CLI's wording too.
import type { Argv } from 'yargs';
import { RebalanceError } from '../rebalance/errors.js';
import { cliMessage, parseStartFlags, START_FLAGS, type ParsedStart } from '../rebalance/options.js';
import type { PlanPreview } from '../rebalance/plan.js';
import { formatFloat, formatGlobalStatus, formatNodeStatus, formatPlan } from '../rebalance/status-format.js';
import { CtlError, CtlReported, type CtlContext, type CtlFamily } from './ctl.js';

/** --watch redraws this often, for at most WATCH_MAX_MS. */
const WATCH_EVERY_MS = 1000;
const WATCH_MAX_MS = 24 * 3600 * 1000;

type Status = Record<string, unknown>;
interface Global {
  evacuations: Status[];
  rebalances: Status[];
}

async function localNode(ctx: CtlContext): Promise<string> {
  return ((await ctx.request('GET', '/load_rebalance/local_node')) as { node: string }).node;
}

/** Prints `<prefix>: <reason>` (stdout, as EMQX) and fails the command. */
function report(ctx: CtlContext, prefix: string, reason: string): never {
  ctx.print(`${prefix}: ${reason}`);
  throw new CtlReported(reason);
}

/** Runs an API call; an API error is reported as `<prefix>: <reason in CLI words>`. */
async function orReport<T>(ctx: CtlContext, prefix: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof CtlError && err.apiError !== undefined) report(ctx, prefix, cliMessage(err.apiError.message));
    throw err;
  }
}

/** States in which sessions, not connections, are what is left. */
const SESSION_STATES = new Set(['waiting_takeover', 'evicting_sessions', 'wait_takeover']);

/**
 * One progress line of an evacuation, a rebalance donor or a rebalance coordinator: what is left
 * (for a rebalance: above the recipients' average), the rate measured since the last sample, an ETA.
 */
export class Progress {
  private last: { at: number; left: number; state: unknown } | undefined;

  line(label: string, s: Status, now: number): string {
    const sessionPhase = SESSION_STATES.has(String(s.state));
    const above = (v: unknown, goal: unknown): number => Math.max(0, Number(v) - Number(goal));
    if (Array.isArray(s.donors)) {
      const n = s.donors.length;
      const left = Math.round(sessionPhase ? above(s.donor_sess_avg, s.disconnected_session_goal) * n : above(s.donor_conn_avg, s.connection_goal) * n);
      return (
        `${label}rebalance ${String(s.state)}: donor average ${formatFloat(s.donor_conn_avg)} connections, ` +
        `recipient average ${formatFloat(s.connection_goal)}, ${this.pace(left, s.state, now)}`
      );
    }
    const stats = (s.stats ?? {}) as Record<string, number>;
    const conns = stats.current_connected ?? 0;
    const donor = s.process === 'rebalance';
    const sessions = (donor ? stats.current_disconnected_sessions : stats.current_sessions) ?? 0;
    const left = Math.round(sessionPhase ? (donor ? above(sessions, s.disconnected_session_goal) : sessions) : donor ? above(conns, s.connection_goal) : conns);
    return `${label}${String(s.state)}: connections left ${conns}, sessions left ${sessions}, ${this.pace(left, s.state, now)}`;
  }

  /** The rate `left` went down at since the last sample in the same state, and the ETA at that rate. */
  private pace(left: number, state: unknown, now: number): string {
    let rate = 0;
    const prev = this.last;
    if (prev !== undefined && prev.state === state && now > prev.at) rate = ((prev.left - left) * 1000) / (now - prev.at);
    this.last = { at: now, left, state };
    const eta = rate > 0 ? `${Math.ceil(left / rate)} s` : '-';
    return `rate ${rate.toFixed(1)}/s, ETA ${eta}`;
  }
}

async function watch(ctx: CtlContext, sample: (p: Map<string, Progress>, now: number) => Promise<boolean>): Promise<void> {
  const progress = new Map<string, Progress>();
  const deadline = Date.now() + WATCH_MAX_MS;
  while (Date.now() < deadline) {
    if (await sample(progress, Date.now())) return;
    await new Promise((r) => setTimeout(r, WATCH_EVERY_MS));
  }
}

function progressOf(progress: Map<string, Progress>, key: string): Progress {
  let p = progress.get(key);
  if (p === undefined) progress.set(key, (p = new Progress()));
  return p;
}

/** `rebalance start|plan` flags as validated options; errors printed as `<prefix>: <reason>`. */
function parsedFlags(ctx: CtlContext, argv: Record<string, unknown>, evacuation: boolean, prefix: string): ParsedStart {
  const flags = new Map<string, string>();
  for (const flag of START_FLAGS) {
    const v = argv[flag.slice(2)];
    if (v !== undefined) flags.set(flag, Array.isArray(v) ? String(v.at(-1)) : String(v));
  }
  const rest = ((argv.args as unknown[] | undefined) ?? []).map(String);
  try {
    return parseStartFlags(evacuation, flags, rest);
  } catch (err) {
    if (err instanceof RebalanceError) report(ctx, prefix, err.message);
    throw err;
  }
}

const startBuilder = (y: Argv): Argv => {
  let b = y
    .parserConfiguration({ 'unknown-options-as-args': true })
    .strict(false)
    .positional('args', { type: 'string', array: true, describe: 'anything else is an error' })
    .option('evacuation', { type: 'boolean', describe: 'evacuate this node (else: rebalance the cluster, coordinated by this node)' });
  for (const flag of START_FLAGS) b = b.option(flag.slice(2), { type: 'string', requiresArg: false });
  return b;
};

export const rebalanceCommands: CtlFamily = {
  name: 'rebalance',
  describe: 'node evacuation and cluster rebalance',
  commands: [
    {
      command: 'start [args..]',
      describe:
        'start evacuating this node: --evacuation [--redirect-to "host:port ..."] [--conn-evict-rate N] [--migrate-to "n@h ..."] ' +
        '[--wait-takeover S] [--sess-evict-rate N] [--wait-health-check S]; or a rebalance: [--nodes "n@h ..."] [--wait-health-check S] ' +
        '[--conn-evict-rate N] [--abs-conn-threshold N] [--rel-conn-threshold F] [--wait-takeover S] [--sess-evict-rate N] ' +
        '[--abs-sess-threshold N] [--rel-sess-threshold F]',
      read: false,
      builder: startBuilder,
      async run(ctx, argv) {
        const parsed = parsedFlags(ctx, argv, argv.evacuation === true, 'Rebalance start error');
        const node = encodeURIComponent(await localNode(ctx));
        if (parsed.kind === 'evacuation') {
          await orReport(ctx, 'Rebalance start error', () => ctx.request('POST', `/load_rebalance/${node}/evacuation/start`, parsed.body));
          ctx.print('Rebalance(evacuation) started');
        } else {
          await orReport(ctx, 'Rebalance start error', () => ctx.request('POST', `/load_rebalance/${node}/start`, parsed.body));
          ctx.print('Rebalance started');
        }
      },
    },
    {
      command: 'plan [args..]',
      describe:
        'what `rebalance start` with these flags would do now, starting nothing: donors, recipients, averages, connections and sessions ' +
        'to move, an ETA. [--nodes "n@h ..."] [--wait-health-check S] [--conn-evict-rate N] [--abs-conn-threshold N] ...',
      read: true,
      builder: startBuilder,
      async run(ctx, argv) {
        const { body } = parsedFlags(ctx, argv, false, 'Rebalance plan error');
        const query = new URLSearchParams(Object.entries(body).map(([k, v]): [string, string] => [k, Array.isArray(v) ? v.join(',') : String(v)]));
        const path = `/load_rebalance/plan${query.size > 0 ? `?${query.toString()}` : ''}`;
        const plan = (await orReport(ctx, 'Rebalance plan error', () => ctx.request('GET', path))) as PlanPreview;
        if (ctx.json) return ctx.printJson(plan);
        for (const line of formatPlan(plan)) ctx.print(line);
      },
    },
    {
      command: 'node-status [node]',
      describe: "this node's (or another node's) evacuation or rebalance status; --watch: progress until done",
      read: true,
      builder: (y) => y.positional('node', { type: 'string' }).option('watch', { type: 'boolean', describe: 'redraw progress every second until prohibiting' }),
      async run(ctx, argv) {
        const path = argv.node === undefined ? '/load_rebalance/status' : `/load_rebalance/status?node=${encodeURIComponent(String(argv.node))}`;
        const get = async (): Promise<Status> => (await orReport(ctx, 'Node status error', () => ctx.request('GET', path))) as Status;
        if (argv.watch !== true) {
          const s = await get();
          if (ctx.json) return ctx.printJson(s);
          for (const line of formatNodeStatus(s)) ctx.print(line);
          return;
        }
        await watch(ctx, async (progress, now) => {
          const s = await get();
          if (ctx.json) ctx.printJson(s);
          else if (s.status !== 'enabled') ctx.print('Rebalance disabled');
          else ctx.print(progressOf(progress, '').line('', s, now));
          return s.status !== 'enabled' || s.state === 'prohibiting';
        });
      },
    },
    {
      command: 'status',
      describe: 'every evacuation and rebalance of the cluster; --watch: progress until all are done',
      read: true,
      builder: (y) => y.option('watch', { type: 'boolean', describe: 'redraw progress every second until every evacuation is prohibiting' }),
      async run(ctx, argv) {
        const get = async (): Promise<Global> => (await ctx.request('GET', '/load_rebalance/global_status')) as Global;
        if (argv.watch !== true) {
          const g = await get();
          if (ctx.json) return ctx.printJson(g);
          for (const line of formatGlobalStatus(g)) ctx.print(line);
          return;
        }
        await watch(ctx, async (progress, now) => {
          const g = await get();
          if (ctx.json) ctx.printJson(g);
          else {
            for (const e of g.evacuations) ctx.print(progressOf(progress, String(e.node)).line(`${String(e.node)} `, e, now));
            for (const r of g.rebalances) ctx.print(progressOf(progress, `rebalance ${String(r.node)}`).line(`${String(r.node)} `, r, now));
          }
          return g.rebalances.length === 0 && g.evacuations.every((e) => e.state === 'prohibiting');
        });
      },
    },
    {
      command: 'stop',
      describe: "stop this node's evacuation, or the rebalance it coordinates",
      read: false,
      async run(ctx) {
        const node = await localNode(ctx);
        const path = `/load_rebalance/${encodeURIComponent(node)}`;
        const local = (await ctx.request('GET', '/load_rebalance/status')) as Status;
        if (local.status === 'enabled' && local.process === 'evacuation') {
          await orReport(ctx, 'Rebalance stop error', () => ctx.request('POST', `${path}/evacuation/stop`));
          return ctx.print('Rebalance(evacuation) stopped');
        }
        const global = (await ctx.request('GET', '/load_rebalance/global_status')) as Global;
        if (global.rebalances.some((r) => r.node === node || r.coordinator_node === node)) {
          await orReport(ctx, 'Rebalance stop error', () => ctx.request('POST', `${path}/stop`));
          return ctx.print('Rebalance stopped');
        }
        ctx.print('Rebalance is already disabled');
      },
    },
  ],
};
