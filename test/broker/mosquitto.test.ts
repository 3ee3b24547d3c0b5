// The Debian mosquitto clients against a real node: 3.1.1 and 5.0 pub/sub round trips with
// QoS 0/1/2, retained messages, and a will.

import t, { type Test } from 'tap';
import { connectClient, messageCollector, run } from '../helpers/clients.js';
import { spawnProcess, type ManagedProcess } from '../helpers/process.js';
import { sleep, waitFor } from './support.js';
import { startNode } from '../helpers/node-process.js';

const node = await startNode(t);
const common = ['-h', '127.0.0.1', '-p', String(node.mqttPort)];
const VERSIONS = ['mqttv311', 'mqttv5'] as const;

/** mosquitto_sub in the background, stopped by PID on teardown. */
function mosquittoSub(t: Test, args: string[]): ManagedProcess {
  const sub = spawnProcess({ name: 'mosquitto_sub', command: 'mosquitto_sub', args: [...common, ...args], killAfterMs: 2000 });
  t.teardown(() => sub.stop());
  return sub;
}

/** Lines mosquitto_sub printed, without the probes. */
const lines = (sub: ManagedProcess): string[] => sub.stdout().split('\n').filter((l) => l !== '' && !l.endsWith('probe'));

for (const v of VERSIONS) {
  t.test(`${v}: QoS 0/1/2 round trip`, async (t) => {
    const topic = `mq/${v}/qos`;
    const sub = mosquittoSub(t, ['-V', v, '-q', '2', '-t', topic, '-F', '%q %p']);
    // Probe until the subscription is in place (mosquitto_sub prints nothing before).
    for (let i = 0; i < 50 && !sub.stdout().includes('probe'); i++) {
      await run('mosquitto_pub', [...common, '-V', v, '-t', topic, '-m', 'probe', '-q', '0']);
      await sleep(100);
    }
    for (const q of ['0', '1', '2']) {
      const r = await run('mosquitto_pub', [...common, '-V', v, '-t', topic, '-m', `q${q}`, '-q', q]);
      t.equal(r.code, 0, `mosquitto_pub -q ${q}: ${r.stderr}`);
    }
    await waitFor(() => lines(sub).length >= 3, 'three messages at mosquitto_sub');
    t.same(lines(sub), ['0 q0', '1 q1', '2 q2'], 'each at its QoS');
  });

  t.test(`${v}: retained`, async (t) => {
    const topic = `mq/${v}/retained`;
    const set = await run('mosquitto_pub', [...common, '-V', v, '-t', topic, '-m', 'kept', '-q', '1', '-r']);
    t.equal(set.code, 0, set.stderr);
    const get = await run('mosquitto_sub', [...common, '-V', v, '-t', topic, '-C', '1', '-W', '5', '-F', '%r %t %p']);
    t.equal(get.code, 0, get.stderr);
    t.equal(get.stdout.trim(), `1 ${topic} kept`, 'delivered with the retain flag');
    const del = await run('mosquitto_pub', [...common, '-V', v, '-t', topic, '-n', '-q', '1', '-r']);
    t.equal(del.code, 0);
    const none = await run('mosquitto_sub', [...common, '-V', v, '-t', topic, '-C', '1', '-W', '1']);
    t.equal(none.stdout, '', 'deleted by an empty retained message');
  });

  t.test(`${v}: will on an abnormal end`, async (t) => {
    const watcher = await connectClient(t, node.mqttPort, { protocolVersion: 5 });
    const got = messageCollector(watcher);
    const willTopic = `mq/${v}/will`;
    await watcher.subscribeAsync(willTopic, { qos: 1 });
    const holder = mosquittoSub(t, ['-V', v, '-t', `mq/${v}/idle`, '--will-topic', willTopic, '--will-payload', 'gone', '--will-qos', '1']);
    await sleep(500); // connected
    t.equal(got.all().length, 0, 'no will while connected');
    await holder.stop('SIGKILL');
    const [m] = await got.next(1);
    t.equal(m?.payload.toString(), 'gone');
  });
}
