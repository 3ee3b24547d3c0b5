// What `ctl node drain` and `ctl cluster upgrade` share (SPEC 12): the evacuation flags, validated
// as `rebalance start --evacuation` validates them; starting a node's evacuation or continuing the
// one it holds; and waiting until it is done (`prohibiting`, no connection, no session left).
import type { Argv } from 'yargs';
import { RebalanceError } from '../rebalance/errors.js';
import { parseStartFlags, type StartBody } from '../rebalance/options.js';
import { CtlError, type CtlContext } from './ctl.js';
import { EXIT_USAGE } from './parser.js';

/** The evacuation flags drain and upgrade take (`--migrate-to` is theirs to decide). */
const FLAGS = ['redirect-to', 'conn-evict-rate', 'sess-evict-rate', 'wait-takeover', 'wait-health-check'] as const;
const DESCRIBE: Record<(typeof FLAGS)[number], string> = {
  'redirect-to': 'MQTT 5 Server Reference for evicted clients, e.g. "host1:1883 host2:1883"',
  'conn-evict-rate': 'connections evicted per second (500)',
  'sess-evict-rate': 'sessions moved per second (500)',
  'wait-takeover': 'seconds to wait for evicted clients to take their sessions over elsewhere (60)',
  'wait-health-check': 'seconds the availability check is 503 before evicting starts (0)',
};

/** How often a node's evacuation status is read while waiting. */
const POLL_MS = 1000;

export type Status = Record<string, unknown>;

export interface Counts {
  readonly connections: number;
  readonly sessions: number;
}

export function evacuationOptions(y: Argv): Argv {
  let b = y;
  for (const flag of FLAGS) b = b.option(flag, { type: 'string', requiresArg: true, describe: DESCRIBE[flag] });
  return b;
}

/** The evacuation start body of the flags given; a bad value is a usage error (exit 2, nothing started). */
export function evacuationBody(argv: Record<string, unknown>): StartBody {
  const flags = new Map<string, string>();
  for (const flag of FLAGS) {
    const v = argv[flag];
    if (v !== undefined) flags.set(`--${flag}`, Array.isArray(v) ? String(v.at(-1)) : String(v));
  }
  try {
    return parseStartFlags(true, flags, []).body;
  } catch (err) {
    if (err instanceof RebalanceError) throw new CtlError(err.message, undefined, EXIT_USAGE);
    throw err;
  }
}

/** `node`'s rebalance status (GET /load_rebalance/status?node=), read through the node the CLI talks to. */
export async function statusOf(ctx: CtlContext, node: string): Promise<Status> {
  return (await ctx.request('GET', `/load_rebalance/status?node=${encodeURIComponent(node)}`)) as Status;
}

export function countsOf(s: Status): Counts {
  const stats = (s.stats ?? {}) as Record<string, unknown>;
  return { connections: Number(stats.current_connected ?? 0), sessions: Number(stats.current_sessions ?? 0) };
}

/** The completion signal operators use (SPEC 8): `prohibiting` with 0 connections and 0 sessions. */
export function evacuated(s: Status): boolean {
  const c = countsOf(s);
  return s.status === 'enabled' && s.process === 'evacuation' && s.state === 'prohibiting' && c.connections === 0 && c.sessions === 0;
}

/**
 * Starts evacuating `node` unless it already is (a drain or upgrade run again continues the
 * evacuation the node holds, whatever its options); a rebalance donor cannot be evacuated.
 */
export async function startOrContinue(ctx: CtlContext, node: string, body: StartBody, s: Status): Promise<'started' | 'continued'> {
  if (s.status === 'enabled' && s.process === 'evacuation') return 'continued';
  if (s.status === 'enabled') throw new CtlError(`${node} is a donor of a cluster rebalance: stop it first (tidemq ctl rebalance stop on its coordinator)`);
  await ctx.request('POST', `/load_rebalance/${encodeURIComponent(node)}/evacuation/start`, body);
  return 'started';
}

/**
 * Reads `node`'s status every POLL_MS until its evacuation is done (returns it) or `deadline`
 * (ms since the epoch) passes (returns undefined). `sample` sees every status read; a throw from
 * it (a failed check) ends the wait.
 */
export async function waitEvacuated(ctx: CtlContext, node: string, deadline: number, sample: (s: Status, now: number) => Promise<void> | void): Promise<Status | undefined> {
  for (;;) {
    const s = await statusOf(ctx, node);
    const now = Date.now();
    await sample(s, now);
    if (evacuated(s)) return s;
    if (s.status !== 'enabled' || s.process !== 'evacuation') throw new CtlError(`the evacuation of ${node} was stopped (status ${String(s.status)})`);
    if (now >= deadline) return undefined;
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(0, deadline - now))));
  }
}
