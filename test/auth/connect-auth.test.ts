// Authentication on real nodes: a user name without a password file is anonymous, pending password
// checks are bounded (Server busy), checks of closed connections are dropped, unknown users cost
// what known ones do, failed logins are throttled per source address.
import { join } from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/build.js';
import { connectClient, rawConnect, run, type RawClient } from '../helpers/clients.js';
import { startNode, type NodeProcess } from '../helpers/node-process.js';
import { parsePrometheus, value } from '../metrics/prom-text.js';
import { connectBytes, rawHandshake, readPacket, rssKb } from '../broker/support.js';

const dir = t.testdir();
const passwd = join(dir, 'passwd');

t.before(async () => {
  const r = await run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'passwd', passwd, 'alice', '--password', 's3cret']);
  if (r.code !== 0) throw new Error(`tidemq passwd failed: ${r.stderr}`);
});

async function metric(node: NodeProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`);
  return value(parsePrometheus(await res.text()), name, labels);
}

/** Polls a metric every 50 ms until `done` holds (5 s at most); returns its last value. */
async function pollMetric(node: NodeProcess, name: string, done: (v: number) => boolean): Promise<number> {
  const deadline = Date.now() + 5000;
  let v = await metric(node, name);
  while (!done(v) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    v = await metric(node, name);
  }
  return v;
}

const creds = (password: string) => ({ username: 'alice', password: Buffer.from(password) });

t.test('no password file, anonymous allowed: a CONNECT with a user name is accepted (Mosquitto, EMQX)', async (t) => {
  const node = await startNode(t);
  const c = await connectClient(t, node.mqttPort, { clientId: 'named', username: 'someone', password: 'anything' });
  t.ok(c.connected, 'MQTT.js with username and password');
  const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(node.mqttPort), '-u', 'someone', '-P', 'x', '-t', 'a', '-m', 'b']);
  t.equal(pub.code, 0, `mosquitto_pub -u: ${pub.stderr}`);
});

t.test('pending checks: bounded (Server busy past it), dropped when the connection closes, equal work for unknown users', async (t) => {
  const node = await startNode(t, {
    env: { TIDEMQ_AUTH__PASSWORD_FILE: passwd, TIDEMQ_AUTH__ALLOW_ANONYMOUS: 'false', TIDEMQ_AUTH__MAX_PENDING_CHECKS: '4', TIDEMQ_AUTH__MAX_FAILED_LOGINS: '0' },
  });
  const port = node.mqttPort;

  // Timing: a wrong password for alice and any password for a user who does not exist.
  const connackMs = async (id: string, user: string): Promise<number> => {
    const raw = await rawConnect(t, port);
    const start = performance.now();
    const ack = await rawHandshake(raw, id, 5, { username: user, password: Buffer.from('guess') });
    t.equal(ack.reasonCode, 0x86, `${user}: bad user name or password`);
    return performance.now() - start;
  };
  const known: number[] = [];
  const unknown: number[] = [];
  for (let i = 0; i < 3; i++) {
    known.push(await connackMs(`k${i}`, 'alice'));
    unknown.push(await connackMs(`u${i}`, `nobody${i}`));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1] as number;
  t.ok(median(unknown) > median(known) / 3, `an unknown user costs a scrypt too: ${median(unknown).toFixed(1)} ms vs ${median(known).toFixed(1)} ms (was ~0.3 vs ~40)`);

  // A burst of distinct wrong passwords: 4 may wait, the rest are told to come back later.
  for (const version of [5, 4] as const) {
    const burst: RawClient[] = await Promise.all(Array.from({ length: 12 }, () => rawConnect(t, port)));
    burst.forEach((raw, i) => raw.send(connectBytes(`b${version}-${i}`, version, creds(`wrong-${version}-${i}`))));
    const acks = await Promise.all(burst.map((raw) => readPacket(raw, version, 10_000)));
    const codes = acks.map((a) => (a?.cmd === 'connack' ? (version === 5 ? a.reasonCode : a.returnCode) : -1));
    const busy = version === 5 ? 0x89 : 3;
    const wrong = version === 5 ? 0x86 : 4;
    t.ok(codes.filter((c) => c === busy).length >= 12 - 4, `${version}: the checks past the bound get ${busy} at once: ${codes.join(',')}`);
    t.ok(codes.every((c) => c === busy || c === wrong), `${version}: the others are checked and refused`);
  }
  t.ok((await metric(node, 'tidemq_auth_refused_total', { reason: 'busy' })) >= 16, 'counted as busy');

  // Connections that close while their checks wait: the queued checks never run.
  const gone: RawClient[] = await Promise.all(Array.from({ length: 4 }, () => rawConnect(t, port)));
  gone.forEach((raw, i) => raw.send(connectBytes(`gone-${i}`, 5, creds(`gone-${i}`))));
  gone.forEach((raw) => raw.socket.destroy());
  const cancelled = await pollMetric(node, 'tidemq_auth_checks_cancelled_total', (v) => v > 0);
  t.ok(cancelled >= 1, `queued checks of closed connections dropped: ${cancelled}`);
  t.equal(await pollMetric(node, 'tidemq_auth_pending_checks', (v) => v === 0), 0, 'the pending gauge drains to 0');
  const good = await rawConnect(t, port);
  t.equal((await rawHandshake(good, 'good', 5, creds('s3cret'))).reasonCode, 0, 'a valid login gets in');
});

t.test('failed logins throttled per source address', async (t) => {
  const node = await startNode(t, {
    env: { TIDEMQ_AUTH__PASSWORD_FILE: passwd, TIDEMQ_AUTH__MAX_FAILED_LOGINS: '3', TIDEMQ_AUTH__FAILED_LOGIN_WINDOW: '60s' },
  });
  const port = node.mqttPort;
  for (let i = 0; i < 3; i++) {
    const raw = await rawConnect(t, port);
    t.equal((await rawHandshake(raw, `f${i}`, 5, creds(`nope${i}`))).reasonCode, 0x86, `failure ${i + 1}`);
  }
  const right5 = await rawConnect(t, port);
  t.equal((await rawHandshake(right5, 'r5', 5, creds('s3cret'))).reasonCode, 0x89, '5.0: over the limit, even the right password gets Server busy');
  const right4 = await rawConnect(t, port);
  t.equal((await rawHandshake(right4, 'r4', 4, creds('s3cret'))).returnCode, 3, '3.1.1: return code 3 (server unavailable)');
  const other = await rawConnect(t, port, '127.0.0.2');
  t.equal((await rawHandshake(other, 'o5', 5, creds('s3cret'))).reasonCode, 0, 'another source address is not affected');
  const anon = await rawConnect(t, port);
  t.equal((await rawHandshake(anon, 'anon', 4)).returnCode, 0, 'anonymous CONNECTs (no password check) are not throttled');
  t.equal(await metric(node, 'tidemq_auth_refused_total', { reason: 'throttled' }), 2, 'counted');
  t.equal(node.output().split('\n').filter((l) => l.includes('max_failed_logins')).length, 1, 'one log line');
});

t.test('a flood of wrong passwords from one address does not keep a valid client out', async (t) => {
  const node = await startNode(t, { env: { TIDEMQ_AUTH__PASSWORD_FILE: passwd, TIDEMQ_AUTH__MAX_PENDING_CHECKS: '8' } });
  const port = node.mqttPort;
  const rssBefore = rssKb(node.pid);
  let rssMax = rssBefore;
  const codes = new Map<number, number>();
  let sent = 0;
  let halfway: () => void = () => undefined;
  const queued = new Promise<void>((resolve) => (halfway = resolve));
  const flood = async (): Promise<void> => {
    // 600 CONNECTs with distinct wrong passwords sent as fast as they connect (open loop: nobody
    // waits for an answer), bounded at 20 s; then every answer is read.
    const deadline = Date.now() + 20_000;
    const open: RawClient[] = [];
    while (sent < 600 && Date.now() < deadline) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => rawConnect(t, port)));
      batch.forEach((raw) => raw.send(connectBytes(`flood-${sent++}`, 5, creds(`wrong-${sent}`))));
      open.push(...batch);
      rssMax = Math.max(rssMax, rssKb(node.pid));
      if (sent >= 300) halfway();
    }
    halfway();
    for (const a of await Promise.all(open.map((raw) => readPacket(raw, 5, 20_000).catch(() => null)))) {
      const code = a?.cmd === 'connack' ? (a.reasonCode ?? 0) : -1;
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    rssMax = Math.max(rssMax, rssKb(node.pid));
    open.forEach((raw) => raw.socket.destroy());
  };
  const flooding = flood();
  // The valid client, from another address, once 300 wrong passwords are in: told "busy" at
  // worst, never made to wait behind the flood.
  await queued;
  const start = Date.now();
  let attempts = 0;
  let reason = -1;
  while (reason !== 0 && Date.now() - start < 10_000) {
    attempts++;
    const raw = await rawConnect(t, port, '127.0.0.2');
    reason = (await rawHandshake(raw, `valid-${attempts}`, 5, creds('s3cret'))).reasonCode ?? 0;
    raw.socket.destroy();
    if (reason === 0x89) await new Promise((resolve) => setTimeout(resolve, 100));
    else t.equal(reason, 0, 'accepted, or busy');
  }
  const validMs = Date.now() - start;
  await flooding;
  t.equal(reason, 0, `the valid login got in after ${validMs} ms (${attempts} attempts) while the flood ran`);
  t.ok(validMs < 4000, 'within 4 s (behind the same flood it got no CONNACK within 5 s before)');
  t.ok((codes.get(0x89) ?? 0) > 500, `the flood was mostly refused at once (Server busy): ${JSON.stringify([...codes])}`);
  t.ok(rssMax - rssBefore < 128 * 1024, `node RSS grew by ${Math.round((rssMax - rssBefore) / 1024)} MB at most`);
});
