// The arithmetic of a cluster rebalance (SPEC 7), pure: donors and recipients from live counts,
// the balance test with its thresholds (floats, `<=`), how far each donor evicts per tick, and the
// read-only preview (`GET /load_rebalance/plan`) with what would move and how long it would take.
import { RebalanceError } from './errors.js';
import type { RebalanceOptions } from './options.js';

/** What a participant reports: live connections, sessions, disconnected sessions. */
export interface NodeCounts {
  readonly node: string;
  readonly connections: number;
  readonly sessions: number;
  readonly disconnected: number;
}

export interface Thresholds {
  readonly abs: number;
  readonly rel: number;
}

export const connThresholds = (o: RebalanceOptions): Thresholds => ({ abs: o.absConnThreshold, rel: o.relConnThreshold });
export const sessThresholds = (o: RebalanceOptions): Thresholds => ({ abs: o.absSessThreshold, rel: o.relSessThreshold });

/** The mean as a float; 0 for no values. */
export function avg(values: readonly number[]): number {
  let sum = 0;
  for (const v of values) sum += v;
  return values.length === 0 ? 0 : sum / values.length;
}

/** Balanced: `donorAvg <= recipientAvg + abs` or `donorAvg <= recipientAvg * rel` (SPEC 7). */
export function withinThresholds(donorAvg: number, recipientAvg: number, t: Thresholds): boolean {
  return donorAvg <= recipientAvg + t.abs || donorAvg <= recipientAvg * t.rel;
}

export interface Plan {
  /** Nodes with connections >= the mean, in the order given. */
  readonly donors: string[];
  /** Nodes with connections < the mean. */
  readonly recipients: string[];
  /** Mean connections over all participants. */
  readonly connAvg: number;
  readonly donorConnAvg: number;
  readonly recipientConnAvg: number;
  readonly donorSessAvg: number;
  readonly recipientSessAvg: number;
  readonly connBalanced: boolean;
  readonly sessBalanced: boolean;
}

/** Splits the participants by the mean connection count; no donor or no recipient: both balanced. */
export function split(counts: readonly NodeCounts[], o: RebalanceOptions): Plan {
  const connAvg = avg(counts.map((c) => c.connections));
  const donors = counts.filter((c) => c.connections >= connAvg);
  const recipients = counts.filter((c) => c.connections < connAvg);
  const of = (cs: readonly NodeCounts[], k: 'connections' | 'sessions'): number => avg(cs.map((c) => c[k]));
  const empty = donors.length === 0 || recipients.length === 0;
  const plan = {
    donors: donors.map((c) => c.node),
    recipients: recipients.map((c) => c.node),
    connAvg,
    donorConnAvg: of(donors, 'connections'),
    recipientConnAvg: of(recipients, 'connections'),
    donorSessAvg: of(donors, 'sessions'),
    recipientSessAvg: of(recipients, 'sessions'),
  };
  return {
    ...plan,
    connBalanced: empty || withinThresholds(plan.donorConnAvg, plan.recipientConnAvg, connThresholds(o)),
    sessBalanced: empty || withinThresholds(plan.donorSessAvg, plan.recipientSessAvg, sessThresholds(o)),
  };
}

/** The plan a start runs; `nothing_to_balance` without donors, without recipients, or when both counts are balanced. */
export function planRebalance(counts: readonly NodeCounts[], o: RebalanceOptions): Plan {
  const plan = split(counts, o);
  if (plan.connBalanced && plan.sessBalanced) throw new RebalanceError('nothing_to_balance', 'nothing_to_balance');
  return plan;
}

/**
 * How many a donor may evict in the next tick: at most `rate` for `ms`, and never below `target`
 * (so a donor does not overshoot the mean and make recipients the new donors).
 */
export function evictionBudget(count: number, target: number, rate: number, ms: number): number {
  return Math.max(0, Math.min(Math.ceil((rate * ms) / 1000), Math.floor(count - target)));
}

/**
 * The count a donor evicts down to: the mean over all participants, counting `inFlight` (evicted,
 * not yet back on a recipient) as still there, since those clients are reconnecting.
 */
export function evictionTarget(counts: readonly number[], inFlight: number): number {
  let sum = inFlight;
  for (const c of counts) sum += c;
  return counts.length === 0 ? 0 : sum / counts.length;
}

/** `GET /load_rebalance/plan`: what `rebalance start` with these options would do now. */
export interface PlanPreview {
  nodes: string[];
  donors: string[];
  recipients: string[];
  /** Mean connections of all participants (the goal of every node). */
  connection_avg: number;
  donor_conn_avg: number;
  recipient_conn_avg: number;
  donor_sess_avg: number;
  recipient_sess_avg: number;
  /** Whether a start would run, or fail with nothing_to_balance. */
  balanced: boolean;
  /** Connections evicted to bring every donor down to the mean (0 when connections are balanced). */
  connections_to_move: number;
  /** Disconnected sessions moved to bring donors down to the mean (0 when balanced). */
  sessions_to_move: number;
  connection_eviction_rate: number;
  session_eviction_rate: number;
  /** wait_health_check + slowest donor's connections at its rate + wait_takeover + sessions, seconds. */
  eta_seconds: number;
}

/** Per donor, what it holds above the mean of all participants (donors evict in parallel, each at its rate). */
function excess(counts: readonly NodeCounts[], donors: readonly string[], k: 'connections' | 'disconnected'): number[] {
  const mean = avg(counts.map((c) => c[k]));
  return counts.filter((c) => donors.includes(c.node)).map((c) => Math.max(0, Math.floor(c[k] - mean)));
}

export function previewPlan(counts: readonly NodeCounts[], o: RebalanceOptions): PlanPreview {
  const plan = split(counts, o);
  const balanced = plan.connBalanced && plan.sessBalanced;
  const conns = balanced || plan.connBalanced ? [] : excess(counts, plan.donors, 'connections');
  const disconnectedAvg = (ns: readonly string[]): number => avg(counts.filter((c) => ns.includes(c.node)).map((c) => c.disconnected));
  const sessBalanced = withinThresholds(disconnectedAvg(plan.donors), disconnectedAvg(plan.recipients), sessThresholds(o));
  const sessions = balanced || sessBalanced ? [] : excess(counts, plan.donors, 'disconnected');
  const slowest = (xs: readonly number[], rate: number): number => Math.ceil(Math.max(0, ...xs) / rate);
  return {
    nodes: counts.map((c) => c.node),
    donors: plan.donors,
    recipients: plan.recipients,
    connection_avg: plan.connAvg,
    donor_conn_avg: plan.donorConnAvg,
    recipient_conn_avg: plan.recipientConnAvg,
    donor_sess_avg: plan.donorSessAvg,
    recipient_sess_avg: plan.recipientSessAvg,
    balanced,
    connections_to_move: conns.reduce((a, b) => a + b, 0),
    sessions_to_move: sessions.reduce((a, b) => a + b, 0),
    connection_eviction_rate: o.connEvictRate,
    session_eviction_rate: o.sessEvictRate,
    eta_seconds: balanced ? 0 : o.waitHealthCheck + slowest(conns, o.connEvictRate) + o.waitTakeover + slowest(sessions, o.sessEvictRate),
  };
}
