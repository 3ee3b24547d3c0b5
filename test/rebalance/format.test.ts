// Option validation messages (API and CLI wording, SPEC 8/9) and the CLI's status lines.
import t from 'tap';
import { checkMigrateTo, cliMessage, evacuationFromJson, EVACUATION_DEFAULTS, parseStartFlags } from '../../src/rebalance/options.js';
import { formatGlobalStatus, formatNodeStatus, SEPARATOR } from '../../src/rebalance/status-format.js';

t.test('API body validation', async (t) => {
  t.same(evacuationFromJson(undefined), EVACUATION_DEFAULTS);
  t.same(evacuationFromJson({ conn_evict_rate: 5, migrate_to: 'a@h, b@h', redirect_to: 'x:1883 y:1883', wait_takeover: 0 }), {
    ...EVACUATION_DEFAULTS,
    connEvictRate: 5,
    migrateTo: ['a@h', 'b@h'],
    redirectTo: 'x:1883 y:1883',
    waitTakeover: 0,
  });
  for (const field of ['conn_evict_rate', 'sess_evict_rate', 'wait_takeover', 'wait_health_check']) {
    for (const bad of [-1, 1.5, 'x', null]) t.throws(() => evacuationFromJson({ [field]: bad }), { message: `invalid ${field} value` }, `${field}=${JSON.stringify(bad)}`);
  }
  t.throws(() => evacuationFromJson({ conn_evict_rate: 0 }), { message: 'invalid conn_evict_rate value' });
  t.throws(() => evacuationFromJson({ migrate_to: [1] }), { message: 'invalid migrate_to value' });
  t.throws(() => evacuationFromJson({ redirect_to: 5 }), { message: 'invalid string in server_reference' });
  t.throws(() => evacuationFromJson({ redirect_to: 'a\u0000b' }), { message: 'invalid string in server_reference' });
  t.throws(() => evacuationFromJson({ nodes: ['a@h'] }), { message: 'Unknown evacuation param: nodes' });
  t.throws(() => evacuationFromJson({ foo: 1 }), { message: 'Unknown evacuation param: foo' });
  t.throws(() => checkMigrateTo([], ['a@h']), { message: 'no available nodes list in migrate_to: []' });
  t.throws(() => checkMigrateTo(['a@h', 'z@h', 'y@h'], ['a@h']), { message: "unavailable nodes in migrate_to: ['z@h','y@h']" });
  t.doesNotThrow(() => checkMigrateTo(['a@h'], ['a@h', 'b@h']));
});

t.test('CLI flag validation and wording', async (t) => {
  const flags = (o: Record<string, string>): Map<string, string> => new Map(Object.entries(o));
  t.same(parseStartFlags(true, flags({ '--conn-evict-rate': '30', '--migrate-to': 'a@h b@h' }), []), {
    kind: 'evacuation',
    body: { conn_evict_rate: 30, migrate_to: ['a@h', 'b@h'] },
  });
  t.same(parseStartFlags(false, flags({ '--nodes': 'a@h,b@h', '--rel-conn-threshold': '1.5' }), []).body, { nodes: ['a@h', 'b@h'], rel_conn_threshold: 1.5 });
  t.throws(() => parseStartFlags(true, flags({}), ['--foo']), { message: 'unknown arguments: ["--foo"]' });
  t.throws(() => parseStartFlags(true, flags({ '--nodes': 'a@h' }), []), { message: 'unknown evacuation arguments: ["--nodes"]' });
  t.throws(() => parseStartFlags(false, flags({ '--redirect-to': 'x' }), []), { message: 'unknown rebalance arguments: ["--redirect-to"]' });
  for (const [flag, bad] of [['--conn-evict-rate', '0'], ['--sess-evict-rate', 'x'], ['--wait-takeover', '-1'], ['--rel-conn-threshold', '1.0'], ['--migrate-to', ' ,']] as const) {
    t.throws(() => parseStartFlags(flag !== '--rel-conn-threshold', flags({ [flag]: bad }), []), { message: `invalid ${flag} value` });
  }
  t.equal(cliMessage("unavailable nodes in migrate_to: ['z@h']"), "invalid --migrate-to, unavailable nodes: ['z@h']");
  t.equal(cliMessage('invalid conn_evict_rate value'), 'invalid --conn-evict-rate value');
  t.equal(cliMessage('already_started'), 'already_started');
});

t.test('node-status and status lines', async (t) => {
  t.same(formatNodeStatus({ status: 'disabled' }), ['Rebalance disabled']);
  const evac = {
    state: 'evicting_conns',
    connection_eviction_rate: 5,
    session_eviction_rate: 7,
    connection_goal: 0,
    session_goal: 0,
    session_recipients: ['b@h', 'c@h'],
    stats: { initial_sessions: 4, initial_connected: 3, current_sessions: 2, current_connected: 1 },
  };
  const body = [
    'Rebalance state: evicting_conns',
    'Connection eviction rate: 5 connections/second',
    'Session eviction rate: 7 sessions/second',
    'Connection goal: 0',
    'Session goal: 0',
    "Session recipient nodes: ['b@h','c@h']",
    'Channel statistics:',
    '  current_connected: 1',
    '  current_sessions: 2',
    '  initial_connected: 3',
    '  initial_sessions: 4',
  ];
  t.same(formatNodeStatus({ status: 'enabled', process: 'evacuation', ...evac }), ['Rebalance type: evacuation', ...body]);
  const donor = formatNodeStatus({ status: 'enabled', process: 'rebalance', state: 'evicting_conns', coordinator_node: 'b@h', connection_eviction_rate: 5, session_eviction_rate: 5, connection_goal: 504, recipients: ['b@h'], stats: {} });
  t.same(donor, ['Rebalance type: rebalance', 'Rebalance state: evicting_conns', "Coordinator node: 'b@h'", 'Connection eviction rate: 5 connections/second', 'Session eviction rate: 5 sessions/second', 'Connection goal: 504.0', "Recipient nodes: ['b@h']", 'Channel statistics:']);
  const g = formatGlobalStatus({
    evacuations: [{ node: 'a@h', ...evac }],
    rebalances: [{ node: 'a@h', state: 'evicting_conns', coordinator_node: 'a@h', donors: ['b@h', 'c@h'], recipients: ['a@h'], connection_eviction_rate: 5, session_eviction_rate: 5, connection_goal: 0, donor_conn_avg: 300 }],
  });
  t.same(g, [
    SEPARATOR,
    "Node 'a@h': evacuation",
    ...body,
    SEPARATOR,
    "Node 'a@h': rebalance coordinator",
    'Rebalance state: evicting_conns',
    "Coordinator node: 'a@h'",
    "Donor nodes: ['b@h','c@h']",
    "Recipient nodes: ['a@h']",
    'Connection eviction rate: 5 connections/second',
    'Session eviction rate: 5 sessions/second',
    'Connection goal: 0.0',
    'Current average donor node connection count: 300.0',
  ]);
  t.equal(SEPARATOR.length, 68);
});
