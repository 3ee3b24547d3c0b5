// Status objects (SPEC 8) as `tidemq ctl rebalance` lines (SPEC 9, as EMQX prints them): fields in
// a fixed order, node names quoted 'a@h', lists ['a@h','b@h'], averages and rebalance goals always
// with a decimal point, channel statistics indented in alphabetical order.
import { formatNodes } from './options.js';
import type { PlanPreview } from './plan.js';

type Status = Readonly<Record<string, unknown>>;

/** A line of 68 dashes before each entry of `rebalance status`. */
export const SEPARATOR = '-'.repeat(68);

/** 504 -> `504.0`, 300.5 -> `300.5` (an Erlang float as ~p prints it). */
export function formatFloat(v: unknown): string {
  const n = Number(v);
  return Number.isInteger(n) ? n.toFixed(1) : String(n);
}

/** Fields that are floats in a rebalance's status (an evacuation's goals are the integer 0). */
const REBALANCE_FLOATS = new Set(['connection_goal', 'disconnected_session_goal', 'donor_conn_avg', 'donor_sess_avg']);

const LINES: Record<string, (v: unknown) => string | string[]> = {
  state: (v) => `Rebalance state: ${String(v)}`,
  coordinator_node: (v) => `Coordinator node: '${String(v)}'`,
  donors: (v) => `Donor nodes: ${formatNodes(v as string[])}`,
  connection_eviction_rate: (v) => `Connection eviction rate: ${String(v)} connections/second`,
  session_eviction_rate: (v) => `Session eviction rate: ${String(v)} sessions/second`,
  connection_goal: (v) => `Connection goal: ${String(v)}`,
  session_goal: (v) => `Session goal: ${String(v)}`,
  disconnected_session_goal: (v) => `Disconnected session goal: ${String(v)}`,
  donor_conn_avg: (v) => `Current average donor node connection count: ${String(v)}`,
  donor_sess_avg: (v) => `Current average donor node disconnected session count: ${String(v)}`,
  session_recipients: (v) => `Session recipient nodes: ${formatNodes(v as string[])}`,
  recipients: (v) => `Recipient nodes: ${formatNodes(v as string[])}`,
  stats: (v) => [
    'Channel statistics:',
    ...Object.entries(v as Record<string, unknown>)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, n]) => `  ${k}: ${String(n)}`),
  ],
};

const LOCAL_ORDER = ['state', 'coordinator_node', 'connection_eviction_rate', 'session_eviction_rate', 'connection_goal', 'session_goal', 'disconnected_session_goal', 'session_recipients', 'recipients', 'stats'];
const COORDINATOR_ORDER = ['state', 'coordinator_node', 'donors', 'recipients', 'connection_eviction_rate', 'session_eviction_rate', 'connection_goal', 'disconnected_session_goal', 'donor_conn_avg', 'donor_sess_avg'];

function lines(s: Status, order: readonly string[], floats: boolean): string[] {
  const out: string[] = [];
  for (const key of order) {
    if (!(key in s)) continue;
    const value = floats && REBALANCE_FLOATS.has(key) ? formatFloat(s[key]) : s[key];
    const line = (LINES[key] as (v: unknown) => string | string[])(value);
    if (Array.isArray(line)) out.push(...line);
    else out.push(line);
  }
  return out;
}

/** `rebalance node-status`: `Rebalance disabled`, or the type line and the local fields. */
export function formatNodeStatus(s: Status): string[] {
  if (s.status !== 'enabled') return ['Rebalance disabled'];
  return [`Rebalance type: ${String(s.process)}`, ...lines(s, LOCAL_ORDER, s.process === 'rebalance')];
}

/** `rebalance status`: each evacuation, then each rebalance coordinator, after a separator line. */
export function formatGlobalStatus(g: { evacuations: readonly Status[]; rebalances: readonly Status[] }): string[] {
  const out: string[] = [];
  for (const e of g.evacuations) out.push(SEPARATOR, `Node '${String(e.node)}': evacuation`, ...lines(e, LOCAL_ORDER, false));
  for (const r of g.rebalances) out.push(SEPARATOR, `Node '${String(r.node)}': rebalance coordinator`, ...lines(r, COORDINATOR_ORDER, true));
  return out;
}

/** `rebalance plan`: the preview (`GET /load_rebalance/plan`) as lines, in the status lines' style. */
export function formatPlan(p: PlanPreview): string[] {
  const head = p.balanced ? 'Rebalance plan: nothing_to_balance (nothing would start)' : 'Rebalance plan (nothing started):';
  return [
    head,
    `Nodes: ${formatNodes(p.nodes)}`,
    `Donor nodes: ${formatNodes(p.donors)}`,
    `Recipient nodes: ${formatNodes(p.recipients)}`,
    `Average node connection count: ${formatFloat(p.connection_avg)}`,
    `Current average donor node connection count: ${formatFloat(p.donor_conn_avg)}`,
    `Current average recipient node connection count: ${formatFloat(p.recipient_conn_avg)}`,
    `Current average donor node session count: ${formatFloat(p.donor_sess_avg)}`,
    `Current average recipient node session count: ${formatFloat(p.recipient_sess_avg)}`,
    `Connections to move: ${p.connections_to_move}`,
    `Disconnected sessions to move: ${p.sessions_to_move}`,
    `Connection eviction rate: ${p.connection_eviction_rate} connections/second`,
    `Session eviction rate: ${p.session_eviction_rate} sessions/second`,
    `Estimated time: ${p.eta_seconds} seconds`,
  ];
}
