// The cluster port against a stranger who does not know the cookie (real node processes; the test
// speaks the link protocol itself): a forged refusal changes nothing while QoS 1 crosses the
// cluster, the acceptor proves nothing before the dialer has, frames before authentication are
// small and the handshake has a deadline and a cap, refusals are counted and logged once per
// period, and the built-in cookie is refused on a reachable node.

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { rssKb } from '../broker/support.js';
import { repoRoot } from '../helpers/build.js';
import { connectClient, run } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { countLines, linksUp, metric, probeLink, sleep, startCluster, waitFor } from './support.js';

const REFUSALS = 'tidemq_cluster_handshake_refusals_total';

t.test('a forged reject in the name of a member, repeated while QoS 1 crosses two nodes, loses nothing', async (t) => {
  const [n1, n2] = await startCluster(t, 2);
  if (n1 === undefined || n2 === undefined) throw new Error('no cluster');
  const sub = await connectClient(t, n2.mqttPort, { clientId: 'forged-sub' });
  const got = new Set<string>();
  sub.on('message', (_topic, payload) => got.add(payload.toString()));
  await sub.subscribeAsync('forged/#', { qos: 1 });
  const pub = await connectClient(t, n1.mqttPort, { clientId: 'forged-pub' });
  // The route reached n1 once a probe message arrives.
  await waitFor('the route on n1', async () => {
    await pub.publishAsync('forged/probe', 'probe', { qos: 1 });
    return got.has('probe');
  });

  // The attack of issue 13: each node is told, by a connection that never proved the cookie,
  // that the other one refuses it as removed from the cluster.
  let attacking = true;
  let forged = 0;
  const attack = (async () => {
    while (attacking) {
      for (const [target, victim] of [[n1, n2], [n2, n1]] as const) {
        const probe = await probeLink(t, target.clusterPort);
        probe.send([['hello', victim.name, randomBytes(16), 'forged', 'member', 2], ['reject', 'removed_from_cluster']]);
        forged++;
        await probe.closed;
      }
      await sleep(100);
    }
  })();
  const count = 300;
  const acked: string[] = [];
  const started = Date.now();
  for (let i = 0; i < count && Date.now() - started < 20_000; i++) {
    await pub.publishAsync(`forged/${i % 7}`, `m${i}`, { qos: 1 });
    acked.push(`m${i}`);
  }
  await sleep(500); // a few more forged rounds after the last publish
  attacking = false;
  await attack;
  await waitFor('every acknowledged message at the subscriber', () => acked.every((m) => got.has(m)), 10_000).catch(() => {});
  t.same(acked.filter((m) => !got.has(m)), [], `all ${acked.length} acknowledged messages arrived (${forged} forged rejects)`);
  t.ok(forged >= 10, `the attack ran (${forged} forged frames)`);
  for (const node of [n1, n2]) {
    t.equal(countLines(node, /"msg":"cluster member removed"/), 0, `${node.name} removed no member`);
    t.equal(countLines(node, /"msg":"cluster node down"/), 0, `${node.name} saw no link go down`);
    t.equal(linksUp(node), 1);
    t.equal(countLines(node, /"level":50/), 0, 'no error logged for a stranger');
    t.ok((await metric(node, REFUSALS, 'reason="bad_cookie"')) >= forged / 4, 'the forged handshakes were counted as refusals');
  }
});

t.test('the acceptor answers a hello without any proof, and a wrong proof with a bare bad_cookie', async (t) => {
  const node = await startNode(t);
  const probe = await probeLink(t, node.clusterPort);
  const nonce = randomBytes(16);
  probe.send([['hello', 'stranger@127.0.0.1', nonce, 'inc', 'member', 2]]);
  const [challenge] = (await probe.next()) as [unknown[]];
  t.equal(challenge[0], 'challenge');
  t.equal(challenge[1], node.name);
  t.ok(Buffer.isBuffer(challenge[2]) && (challenge[2] as Buffer).length === 16, 'its nonce');
  const digests = challenge.filter((v) => Buffer.isBuffer(v) && v.length === 32);
  t.same(digests, [], 'no HMAC of the cookie is offered to a peer that has proved nothing');
  probe.send([['proof', randomBytes(32)]]);
  t.same(await probe.next(), [['reject', 'bad_cookie']], 'a refusal that proves nothing either');
  await probe.closed;
  t.equal(await metric(node, REFUSALS, 'reason="bad_cookie"'), 1);
  // A node of the first handshake (no version, the acceptor proving first) is told why, plainly.
  const old = await probeLink(t, node.clusterPort);
  old.send([['hello', 'old@127.0.0.1', randomBytes(16), 'inc', 'member']]);
  t.same(await old.next(), [['reject', 'unsupported_handshake_version']]);
  await old.closed;
  t.equal(await metric(node, REFUSALS, 'reason="handshake_version"'), 1);
});

t.test('before authentication: small frames, a deadline, a cap on handshakes, one log line per period', async (t) => {
  const flooded = await startNode(t);
  const before = rssKb(flooded.pid);
  // Eight connections announce 256 MiB frames and try to stream 16 MiB each: each is cut off at the
  // length prefix, nothing of it is buffered.
  const floods = Array.from({ length: 8 }, async () => {
    const socket = connect({ host: '127.0.0.1', port: flooded.clusterPort });
    t.teardown(() => socket.destroy());
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(256 * 1024 * 1024, 0);
    socket.write(head);
    const chunk = Buffer.alloc(64 * 1024, 0x91);
    const deadline = Date.now() + 5000;
    let sent = 0;
    while (!socket.destroyed && !socket.writableEnded && sent < 16 * 1024 * 1024 && Date.now() < deadline) {
      if (!socket.write(chunk)) await new Promise((r) => setTimeout(r, 5));
      sent += chunk.length;
    }
    await new Promise<void>((resolve) => (socket.closed ? resolve() : socket.once('close', () => resolve())));
  });
  await Promise.all(floods);
  const grown = (rssKb(flooded.pid) - before) / 1024;
  t.ok(grown < 32, `RSS grew ${grown.toFixed(1)} MB for 8 x 256 MiB announced frames`);
  t.equal(await metric(flooded, REFUSALS, 'reason="frame_too_large"'), 8);

  const node = await startNode(t, {
    env: { TIDEMQ_CLUSTER__HANDSHAKE_TIMEOUT: '1s', TIDEMQ_CLUSTER__MAX_PENDING_HANDSHAKES: '4' },
  });

  // Silent connections: four are waited on, the fifth is turned away at once; all four end at the deadline.
  const idle = await Promise.all(Array.from({ length: 4 }, () => probeLink(t, node.clusterPort)));
  await sleep(100);
  const fifth = await probeLink(t, node.clusterPort);
  const t0 = Date.now();
  await fifth.closed;
  t.ok(Date.now() - t0 < 500, 'the fifth pending handshake is refused at once');
  t.equal(await metric(node, REFUSALS, 'reason="too_many_pending"'), 1);
  await Promise.all(idle.map((p) => p.closed));
  t.ok(Date.now() - t0 < 3000, 'the silent ones are cut at the 1 s deadline');
  t.equal(await metric(node, REFUSALS, 'reason="timeout"'), 4);
  const again = await probeLink(t, node.clusterPort);
  again.send([['hello', 'x@127.0.0.1', randomBytes(16), 'i', 'member', 2]]);
  t.equal(((await again.next()) as unknown[][])[0]?.[0], 'challenge', 'a slot is free again after the deadline');

  for (const [n, refusals] of [[flooded, 8], [node, 5]] as const) {
    const lines = countLines(n, /connection refused before authentication/);
    t.ok(lines >= 1 && lines <= 2, `${refusals} refusals, ${lines} log line(s)`);
    t.equal(countLines(n, /"level":50/), 0, 'no error logged');
  }
});

t.test('the built-in cookie is refused (exit 2, naming node.cookie) when the node is reachable', async (t) => {
  const start = (args: string[], env: Record<string, string> = {}): ReturnType<typeof run> =>
    run(process.execPath, [join(repoRoot, 'bin', 'tidemq'), 'start', '--data-dir', join(tmpdir(), 'tidemq-never-created'), ...args], { env, timeoutMs: 15_000 });
  const cases: Array<[string, string[], Record<string, string>]> = [
    ['the MQTT listeners on every address', [], { TIDEMQ_LISTENERS__BIND: '0.0.0.0' }],
    ['the management API on every address', [], { TIDEMQ_MANAGEMENT__BIND: '0.0.0.0', TIDEMQ_MANAGEMENT__PASSWORD: 'not-public' }],
    ['the cluster port on another host', ['--node', 'n1@10.255.255.1'], {}],
  ];
  for (const [what, args, env] of cases) {
    const r = await start(args, env);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.stderr, /node\.cookie is the built-in default/, `${what}: the message names node.cookie`);
  }
});
