// Evacuation and rebalance options: names, defaults and validation, for the API's JSON body and
// for `tidemq ctl rebalance start` flags. The messages are a compatibility contract (SPEC 8, 9).
import { RebalanceError } from './errors.js';

type ValueKind = 'pos_int' | 'nonneg_int' | 'fraction' | 'string' | 'nodes';

interface Field {
  readonly name: string;
  readonly kind: ValueKind;
}

const f = (name: string, kind: ValueKind): Field => ({ name, kind });

/** Fields of both kinds of start, then those of each kind only. */
const COMMON: readonly Field[] = [f('conn_evict_rate', 'pos_int'), f('sess_evict_rate', 'pos_int'), f('wait_takeover', 'nonneg_int'), f('wait_health_check', 'nonneg_int')];
const EVACUATION_ONLY: readonly Field[] = [f('redirect_to', 'string'), f('migrate_to', 'nodes')];
const REBALANCE_ONLY: readonly Field[] = [
  f('nodes', 'nodes'),
  f('abs_conn_threshold', 'pos_int'),
  f('rel_conn_threshold', 'fraction'),
  f('abs_sess_threshold', 'pos_int'),
  f('rel_sess_threshold', 'fraction'),
];

export type StartKind = 'evacuation' | 'rebalance';

function fields(kind: StartKind): readonly Field[] {
  return [...COMMON, ...(kind === 'evacuation' ? EVACUATION_ONLY : REBALANCE_ONLY)];
}

/** `conn_evict_rate` -> `--conn-evict-rate`. */
function flagOf(name: string): string {
  return `--${name.replace(/_/g, '-')}`;
}

/** Every flag `rebalance start` knows, of either kind (`--evacuation` aside). */
export const START_FLAGS: readonly string[] = [...COMMON, ...EVACUATION_ONLY, ...REBALANCE_ONLY].map((x) => flagOf(x.name));

export interface EvacuationOptions {
  /** MQTT 5 Server Reference for evicted/refused 5.0 clients, e.g. `host1:1883 host2:1883`. */
  readonly redirectTo: string | undefined;
  readonly connEvictRate: number;
  readonly sessEvictRate: number;
  /** Seconds. */
  readonly waitTakeover: number;
  /** Seconds (0 for evacuation: start evicting at once). */
  readonly waitHealthCheck: number;
  /** Recipient nodes of the sessions; undefined: every other running node. */
  readonly migrateTo: readonly string[] | undefined;
}

export const EVACUATION_DEFAULTS: EvacuationOptions = {
  redirectTo: undefined,
  connEvictRate: 500,
  sessEvictRate: 500,
  waitTakeover: 60,
  waitHealthCheck: 0,
  migrateTo: undefined,
};

/** A node list as given: a JSON array of names, or one string split on spaces and commas. */
function splitNodes(value: string): string[] {
  return value.split(/[\s,]+/).filter((s) => s !== '');
}

/** `['a@h','b@h']`: node lists in messages and CLI lines, as EMQX prints Erlang atoms. */
export function formatNodes(nodes: readonly string[]): string {
  return `[${nodes.map((n) => `'${n}'`).join(',')}]`;
}

const invalid = (what: string): RebalanceError => new RebalanceError('invalid_param', `invalid ${what} value`);

/** A JSON value as the field's kind, or undefined when it is not one. */
function fromJson(kind: ValueKind, v: unknown): number | string | string[] | undefined {
  switch (kind) {
    case 'pos_int':
      return Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : undefined;
    case 'nonneg_int':
      return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined;
    case 'fraction':
      return typeof v === 'number' && Number.isFinite(v) && v > 1 ? v : undefined;
    case 'string':
      return typeof v === 'string' ? v : undefined;
    case 'nodes':
      if (typeof v === 'string') return splitNodes(v);
      return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
  }
}

/** A flag's text as the field's kind, or undefined when it is not one. */
function fromFlag(kind: ValueKind, v: string): number | string | string[] | undefined {
  switch (kind) {
    case 'pos_int':
    case 'nonneg_int': {
      if (!/^[0-9]{1,15}$/.test(v)) return undefined;
      const n = Number(v);
      return kind === 'pos_int' && n === 0 ? undefined : n;
    }
    case 'fraction': {
      if (!/^[0-9]+(\.[0-9]+)?$/.test(v)) return undefined;
      const n = Number(v);
      return n > 1 ? n : undefined;
    }
    case 'string':
      return v;
    case 'nodes':
      return splitNodes(v);
  }
}

/**
 * A Server Reference must be a valid MQTT UTF-8 string [MQTT-1.5.4-2]: no NUL, no surrogates
 * (JSON can carry lone ones), no C0/C1 controls (SHOULD NOT; they would garble the CLI too).
 */
function validServerReference(s: string): boolean {
  return s.length <= 65535 && !/[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/.test(s);
}

type Values = Map<string, number | string | string[]>;

function toEvacuation(values: Values): EvacuationOptions {
  const num = (k: string, d: number): number => (values.get(k) as number | undefined) ?? d;
  const d = EVACUATION_DEFAULTS;
  return {
    redirectTo: values.get('redirect_to') as string | undefined,
    connEvictRate: num('conn_evict_rate', d.connEvictRate),
    sessEvictRate: num('sess_evict_rate', d.sessEvictRate),
    waitTakeover: num('wait_takeover', d.waitTakeover),
    waitHealthCheck: num('wait_health_check', d.waitHealthCheck),
    migrateTo: values.get('migrate_to') as string[] | undefined,
  };
}

/**
 * A start's named values, each converted by `convert` (from JSON, or from text). Errors (SPEC 8):
 * `Unknown <kind> param: <name>`, `invalid <field> value`, `invalid string in server_reference`.
 */
function collect<V>(kind: StartKind, entries: Iterable<[string, V]>, convert: (kind: ValueKind, v: V) => number | string | string[] | undefined): Values {
  const known = new Map(fields(kind).map((x) => [x.name, x]));
  const values: Values = new Map();
  for (const [name, v] of entries) {
    const field = known.get(name);
    if (field === undefined) throw new RebalanceError('invalid_param', `Unknown ${kind} param: ${name}`);
    const value = convert(field.kind, v);
    if (name === 'redirect_to' && (value === undefined || !validServerReference(value as string))) {
      throw new RebalanceError('invalid_param', 'invalid string in server_reference');
    }
    if (value === undefined) throw invalid(name);
    values.set(name, value);
  }
  return values;
}

function jsonEntries(body: unknown): Array<[string, unknown]> {
  if (body === undefined || body === null) return [];
  if (typeof body !== 'object' || Array.isArray(body)) throw new RebalanceError('invalid_param', 'request body must be a JSON object');
  return Object.entries(body);
}

/** The body of `POST /load_rebalance/:node/evacuation/start`. */
export function evacuationFromJson(body: unknown): EvacuationOptions {
  return toEvacuation(collect('evacuation', jsonEntries(body), fromJson));
}

export interface RebalanceOptions {
  /** Participants; undefined: every running node. */
  readonly nodes: readonly string[] | undefined;
  readonly connEvictRate: number;
  readonly sessEvictRate: number;
  /** Seconds. */
  readonly waitTakeover: number;
  /** Seconds donors report 503 while still accepting, for load balancers to notice. */
  readonly waitHealthCheck: number;
  readonly absConnThreshold: number;
  /** > 1.0 */
  readonly relConnThreshold: number;
  readonly absSessThreshold: number;
  readonly relSessThreshold: number;
}

export const REBALANCE_DEFAULTS: RebalanceOptions = {
  nodes: undefined,
  connEvictRate: 500,
  sessEvictRate: 500,
  waitTakeover: 60,
  waitHealthCheck: 60,
  absConnThreshold: 1000,
  relConnThreshold: 1.1,
  absSessThreshold: 1000,
  relSessThreshold: 1.1,
};

function toRebalance(values: Values): RebalanceOptions {
  const num = (k: string, d: number): number => (values.get(k) as number | undefined) ?? d;
  const d = REBALANCE_DEFAULTS;
  return {
    nodes: values.get('nodes') as string[] | undefined,
    connEvictRate: num('conn_evict_rate', d.connEvictRate),
    sessEvictRate: num('sess_evict_rate', d.sessEvictRate),
    waitTakeover: num('wait_takeover', d.waitTakeover),
    waitHealthCheck: num('wait_health_check', d.waitHealthCheck),
    absConnThreshold: num('abs_conn_threshold', d.absConnThreshold),
    relConnThreshold: num('rel_conn_threshold', d.relConnThreshold),
    absSessThreshold: num('abs_sess_threshold', d.absSessThreshold),
    relSessThreshold: num('rel_sess_threshold', d.relSessThreshold),
  };
}

/** The body of `POST /load_rebalance/:node/start`. Errors as evacuationFromJson, `Unknown rebalance param: <name>`. */
export function rebalanceFromJson(body: unknown): RebalanceOptions {
  return toRebalance(collect('rebalance', jsonEntries(body), fromJson));
}

/** The query of `GET /load_rebalance/plan` (the start body's names, values as text). */
export function rebalanceFromQuery(query: Iterable<[string, string]>): RebalanceOptions {
  return toRebalance(collect('rebalance', query, fromFlag));
}

/** The JSON body the CLI sends for validated flags (only those given; the node applies defaults). */
export type StartBody = Record<string, number | string | string[]>;

export interface ParsedStart {
  readonly kind: StartKind;
  readonly body: StartBody;
}

/**
 * `rebalance start` flags as the CLI got them (`--evacuation` and known flags with their text;
 * `rest`: arguments it did not know). Errors as SPEC 9 prints them after `Rebalance start error: `.
 */
export function parseStartFlags(evacuation: boolean, flags: ReadonlyMap<string, string>, rest: readonly string[]): ParsedStart {
  if (rest.length > 0) throw new RebalanceError('invalid_param', `unknown arguments: ${JSON.stringify(rest)}`);
  const kind: StartKind = evacuation ? 'evacuation' : 'rebalance';
  const own = new Map(fields(kind).map((x) => [flagOf(x.name), x]));
  const foreign = [...flags.keys()].filter((flag) => !own.has(flag));
  if (foreign.length > 0) throw new RebalanceError('invalid_param', `unknown ${kind} arguments: ${JSON.stringify(foreign)}`);
  const body: StartBody = {};
  for (const [flag, text] of flags) {
    const field = own.get(flag) as Field;
    const value = fromFlag(field.kind, text);
    if (value === undefined || (field.kind === 'nodes' && (value as string[]).length === 0)) throw invalid(flag);
    body[field.name] = value;
  }
  return { kind, body };
}

/**
 * Checks a node list option (`migrate_to`, `nodes`) against the nodes available now. Errors (SPEC 8):
 * `no available nodes list in <key>: [...]` (empty), `unavailable nodes in <key>: [...]`.
 */
export function checkMigrateTo(nodes: readonly string[], available: readonly string[], key = 'migrate_to'): void {
  if (nodes.length === 0) throw new RebalanceError('invalid_param', `no available nodes list in ${key}: ${formatNodes(nodes)}`);
  const unavailable = nodes.filter((n) => !available.includes(n));
  if (unavailable.length > 0) throw new RebalanceError('invalid_param', `unavailable nodes in ${key}: ${formatNodes(unavailable)}`);
}

/** The CLI's wording of an API validation message about a node list or a value (SPEC 9). */
export function cliMessage(apiMessage: string): string {
  const m = /^unavailable nodes in ([a-z_]+): (.*)$/.exec(apiMessage);
  if (m !== null) return `invalid ${flagOf(m[1] as string)}, unavailable nodes: ${m[2] as string}`;
  const field = /^invalid ([a-z_]+) value$/.exec(apiMessage);
  if (field !== null) return `invalid ${flagOf(field[1] as string)} value`;
  const none = /^no available nodes list in ([a-z_]+)/.exec(apiMessage);
  if (none !== null) return `invalid ${flagOf(none[1] as string)}, no nodes`;
  return apiMessage;
}
