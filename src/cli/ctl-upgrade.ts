// `tidemq ctl cluster upgrade --from "<old nodes>" --to "<new nodes>" [...]` (SPEC 12, seed
// blue-green-upgrade): checks first (exit 2, nothing started), then evacuates each old node in turn
// into the new ones, waits until it is empty, makes it leave (and stop), then the next. Every
// node of the upgrade holds its lease while it runs, so a second upgrade is refused. Run again after
// an interruption or a failure, it continues from what the nodes hold.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Argv } from 'yargs';
import { EVACUATION_DEFAULTS, formatNodes, type StartBody } from '../rebalance/options.js';
import { Progress } from './ctl-rebalance.js';
import { CtlError, type CtlCommand, type CtlContext } from './ctl.js';
import { countsOf, evacuated, evacuationBody, evacuationOptions, startOrContinue, statusOf, waitEvacuated, type Counts, type Status } from './evacuation-wait.js';
import { EXIT_USAGE } from './parser.js';

/** The lease outlives a CLI that died by this much; it is renewed every LEASE_RENEW_MS. */
const LEASE_TTL_S = 30;
const LEASE_RENEW_MS = 10_000;
/** How long a node has to disappear from the cluster after it was asked to leave. */
const LEAVE_WAIT_MS = 30_000;
/** Progress lines this often when stdout is not a terminal. */
const QUIET_EVERY_MS = 10_000;
/** The evacuation flags repeated in the resume hint. */
const RESUME_FLAGS = ['redirect-to', 'conn-evict-rate', 'sess-evict-rate', 'wait-takeover', 'wait-health-check', 'timeout'] as const;

interface ClusterView {
  name: string;
  running_nodes: string[];
  stopped_nodes: string[];
}

const splitNodes = (v: unknown): string[] => [...new Set(String(v ?? '').split(/[\s,]+/).filter((s) => s !== ''))];
const refuse = (message: string): never => {
  throw new CtlError(message, undefined, EXIT_USAGE);
};

/** Seconds an evacuation of these counts takes at these options: the plan's estimate. */
function expectedSeconds(c: Counts, body: StartBody): number {
  const num = (key: string, fallback: number): number => (typeof body[key] === 'number' ? (body[key] as number) : fallback);
  const d = EVACUATION_DEFAULTS;
  return (
    num('wait_health_check', d.waitHealthCheck) +
    Math.ceil(c.connections / num('conn_evict_rate', d.connEvictRate)) +
    num('wait_takeover', d.waitTakeover) +
    Math.ceil(c.sessions / num('sess_evict_rate', d.sessEvictRate))
  );
}

/** What the checks found: every --from node's status, in order. */
interface Checked {
  readonly api: string;
  readonly statuses: Map<string, Status>;
  /** Live connections and sessions, from the evacuation's stats or the node's counts. */
  readonly counts: Map<string, Counts>;
}

/** Every check before anything starts (exit 2 on each refusal). */
async function preflight(ctx: CtlContext, from: string[], to: string[]): Promise<Checked> {
  if (from.length === 0) refuse('--from is empty: name the old nodes, e.g. --from "old1@host old2@host"');
  if (to.length === 0) refuse('--to is empty: name the new nodes, e.g. --to "new1@host new2@host"');
  const both = from.filter((n) => to.includes(n));
  if (both.length > 0) refuse(`nodes in both --from and --to: ${formatNodes(both)}`);
  const view = (await ctx.request('GET', '/cluster')) as ClusterView;
  const members = [...view.running_nodes, ...view.stopped_nodes];
  const unknown = [...from, ...to].filter((n) => !members.includes(n));
  if (unknown.length > 0) refuse(`unknown nodes, not members of the cluster of ${view.name}: ${formatNodes(unknown)} (a node an earlier upgrade moved has left: leave it out of --from)`);
  const downTo = to.filter((n) => !view.running_nodes.includes(n));
  if (downTo.length > 0) refuse(`--to nodes not running: ${formatNodes(downTo)}`);
  if (from.includes(view.name)) refuse(`${view.name}, the node this command talks to, is in --from: run the upgrade through a node that stays (--api of a --to node)`);
  const downFrom = from.filter((n) => !view.running_nodes.includes(n));
  if (downFrom.length > 0) refuse(`--from nodes not reachable: ${formatNodes(downFrom)}`);
  const statuses = new Map<string, Status>();
  const counts = new Map<string, Counts>();
  for (const node of from) {
    let s: Status;
    try {
      s = await statusOf(ctx, node);
    } catch (err) {
      return refuse(`--from node ${node} not reachable: ${(err as Error).message}`);
    }
    if (s.status === 'enabled' && s.process !== 'evacuation') refuse(`--from node ${node} is a donor of a cluster rebalance: stop it first`);
    statuses.set(node, s);
    counts.set(node, s.status === 'enabled' ? countsOf(s) : ((await ctx.request('GET', `/nodes/${encodeURIComponent(node)}/counts`)) as Counts));
  }
  return { api: view.name, statuses, counts };
}

/** The upgrade lease on every node of the upgrade: all are taken, or none (a second upgrade is refused). */
class Leases {
  private readonly owner = `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
  private held: string[] = [];
  private renewedAt = 0;

  constructor(private readonly ctx: CtlContext) {}

  async take(nodes: readonly string[]): Promise<void> {
    for (const node of nodes) {
      try {
        await this.put(node, LEASE_TTL_S);
      } catch (err) {
        await this.release(this.held);
        return refuse((err as Error).message);
      }
      this.held.push(node);
    }
    this.renewedAt = Date.now();
  }

  async renewIfDue(now: number): Promise<void> {
    if (now - this.renewedAt < LEASE_RENEW_MS) return;
    this.renewedAt = now;
    for (const node of this.held) await this.put(node, LEASE_TTL_S);
  }

  /** Best effort: a lease that cannot be released expires by itself. */
  async release(nodes: readonly string[]): Promise<void> {
    for (const node of nodes) await this.put(node, 0).catch(() => undefined);
    this.held = this.held.filter((n) => !nodes.includes(n));
  }

  async releaseAll(): Promise<void> {
    await this.release([...this.held]);
  }

  private put(node: string, ttl: number): Promise<unknown> {
    return this.ctx.request('PUT', `/nodes/${encodeURIComponent(node)}/upgrade_lease`, { owner: this.owner, ttl });
  }
}

/** One step as a JSON line (--json) or a text line. */
type Emit = (step: Record<string, unknown>, text: string) => void;

function resumeHint(ctx: CtlContext, argv: Record<string, unknown>, remaining: readonly string[], to: readonly string[]): string {
  const flags = RESUME_FLAGS.flatMap((f) => (argv[f] === undefined ? [] : [`--${f} ${JSON.stringify(String(argv[f]))}`]));
  if (argv['stop-old'] === false) flags.push('--no-stop-old');
  return `tidemq ctl --api ${ctx.api} cluster upgrade --from "${remaining.join(' ')}" --to "${to.join(' ')}"${flags.length > 0 ? ` ${flags.join(' ')}` : ''}`;
}

/** Waits until `node` is no member of the cluster any more (it left, or was removed). */
async function waitGone(ctx: CtlContext, node: string): Promise<void> {
  const deadline = Date.now() + LEAVE_WAIT_MS;
  for (;;) {
    const view = (await ctx.request('GET', '/cluster')) as ClusterView;
    if (![...view.running_nodes, ...view.stopped_nodes].includes(node)) return;
    if (Date.now() >= deadline) throw new CtlError(`${node} is still a member ${LEAVE_WAIT_MS / 1000} s after it was asked to leave`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const upgradeCommand: CtlCommand = {
  command: 'upgrade',
  describe: 'blue-green upgrade: evacuate each --from node in turn into the --to nodes, then make it leave and stop',
  read: false,
  builder: (y: Argv) =>
    evacuationOptions(
      y
        .option('from', { type: 'string', demandOption: true, requiresArg: true, describe: 'the old nodes, in the order to empty them ("a@h b@h")' })
        .option('to', { type: 'string', demandOption: true, requiresArg: true, describe: 'the new nodes: running members that take the sessions' }),
    )
      .option('stop-old', { type: 'boolean', default: true, describe: 'stop each emptied old node (--no-stop-old: it only leaves the cluster)' })
      .option('timeout', { type: 'number', requiresArg: true, describe: 'seconds one node may take (twice its expected time + 60)' })
      .option('dry-run', { type: 'boolean', describe: 'print the plan: order and expected time from the current counts and rates' })
      .option('json', { type: 'boolean', describe: 'one JSON line per step' }),
  async run(ctx, argv) {
    const from = splitNodes(argv.from);
    const to = splitNodes(argv.to);
    const timeoutFlag = argv.timeout === undefined ? undefined : Number(argv.timeout);
    if (timeoutFlag !== undefined && !(Number.isFinite(timeoutFlag) && timeoutFlag > 0)) refuse('invalid --timeout value');
    const body: StartBody = { ...evacuationBody(argv), migrate_to: to };
    const checked = await preflight(ctx, from, to);
    const emit: Emit = ctx.json ? (step) => ctx.print(JSON.stringify({ at: new Date().toISOString(), ...step })) : (_step, text) => ctx.print(text);

    const plan = from.map((node) => {
      const counts = checked.counts.get(node) as Counts;
      const s = checked.statuses.get(node) as Status;
      return { node, ...counts, state: s.status === 'enabled' ? String(s.state) : 'serving', expected_s: evacuated(s) ? 0 : expectedSeconds(counts, body) };
    });
    const total = plan.reduce((a, p) => a + p.expected_s, 0);
    emit(
      { step: 'plan', from, to, stop_old: argv['stop-old'] !== false, options: body, nodes: plan, expected_s: total, dry_run: argv['dry-run'] === true },
      [
        `Upgrade plan: ${from.length} old nodes into ${formatNodes(to)}, one at a time, expected about ${total} s:`,
        ...plan.map((p, i) => `  ${i + 1}. ${p.node}: ${p.state}, ${p.connections} connections, ${p.sessions} sessions, about ${p.expected_s} s`),
      ].join('\n'),
    );
    if (argv['dry-run'] === true) return;

    const leases = new Leases(ctx);
    await leases.take([...to, ...from]);
    let interrupted = false;
    const onSigint = (): void => {
      interrupted = true;
    };
    process.on('SIGINT', onSigint);
    const startedAt = Date.now();
    let index = 0;
    try {
      for (; index < from.length; index++) {
        const node = from[index] as string;
        const label = `[${index + 1}/${from.length}] ${node}`;
        const how = await startOrContinue(ctx, node, body, await statusOf(ctx, node));
        emit({ step: 'evacuation', node, how }, `${label}: evacuation ${how}`);
        const progress = new Progress();
        const every = process.stdout.isTTY === true ? 0 : QUIET_EVERY_MS;
        let printed = 0;
        let state: unknown;
        const nodeStart = Date.now();
        const limit = timeoutFlag ?? 2 * (plan[index]?.expected_s ?? 0) + 60;
        const done = await waitEvacuated(ctx, node, nodeStart + limit * 1000, async (s, now) => {
          if (interrupted) throw new CtlError('interrupted');
          const view = (await ctx.request('GET', '/cluster')) as ClusterView;
          const down = to.filter((n) => !view.running_nodes.includes(n));
          if (down.length > 0) throw new CtlError(`new nodes went down: ${formatNodes(down)}`);
          await leases.renewIfDue(now);
          const line = `${progress.line(`${label} `, s, now)} (${index} of ${from.length} nodes done)`;
          if (s.state !== state) {
            state = s.state;
            emit({ step: 'state', node, state: s.state, ...countsOf(s) }, line);
            printed = now;
          } else if (!ctx.json && now - printed >= every) {
            printed = now;
            ctx.print(line);
          }
        });
        if (done === undefined) {
          const c = countsOf(await statusOf(ctx, node));
          throw new CtlError(`timed out after ${limit} s with ${c.connections} connections and ${c.sessions} sessions left`);
        }
        const seconds = Math.round((Date.now() - nodeStart) / 1000);
        emit({ step: 'evacuated', node, seconds }, `${label}: empty after ${seconds} s`);
        await leases.release([node]);
        if (argv['stop-old'] === false) await ctx.request('DELETE', `/cluster/${encodeURIComponent(node)}/force_leave`);
        else await ctx.request('POST', `/nodes/${encodeURIComponent(node)}/stop`, { leave: true });
        await waitGone(ctx, node);
        const stopped = argv['stop-old'] !== false;
        emit({ step: 'left', node, stopped }, `${label}: left the cluster${stopped ? ' and is stopping' : ''}`);
      }
    } catch (err) {
      process.off('SIGINT', onSigint);
      await leases.releaseAll();
      if (!(err instanceof CtlError)) throw err;
      const node = from[index] as string;
      const resume = resumeHint(ctx, argv, from.slice(index), to);
      const rollback = `tidemq ctl --api ${ctx.api} rebalance node-status ${node}; to accept connections on it again: curl -u USER:PASSWORD -X POST ${ctx.api}/api/v5/load_rebalance/${encodeURIComponent(node)}/evacuation/stop (or tidemq ctl rebalance stop on ${node})`;
      emit(
        { step: 'failed', node, reason: err.message, done: from.slice(0, index), resume, rollback },
        `Upgrade stopped at ${node} (${index} of ${from.length} nodes done): ${err.message}\n` +
          `The evacuation of ${node} stays as it is.\nResume: ${resume}\nRoll back: ${rollback}`,
      );
      throw new CtlError(`upgrade stopped at ${node}: ${err.message}`, err.apiError);
    }
    process.off('SIGINT', onSigint);
    await leases.releaseAll();
    const seconds = Math.round((Date.now() - startedAt) / 1000);
    emit({ step: 'done', nodes: from, seconds }, `Upgrade done: ${from.length} old nodes emptied into ${formatNodes(to)} in ${seconds} s`);
  },
};
