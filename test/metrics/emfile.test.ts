// Out of file descriptors at accept: counted as the accept outcome `emfile`, logged once per
// interval, and the node keeps serving.
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import t from 'tap';
import { ListenerGate, listenTcp } from '../../src/broker/tcp-listener.js';
import { defaultConfig } from '../../src/config/schema.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { connectClient, run } from '../helpers/clients.js';
import { startNode } from '../helpers/node-process.js';
import { parsePrometheus, value } from './prom-text.js';
import { testBroker } from '../helpers/broker.js';

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`accept ${code}`), { code, syscall: 'accept' });
}

t.test('accept errors of the listening socket: EMFILE/ENFILE counted, one log line per interval', async (t) => {
  const config = defaultConfig();
  const lines: Array<{ msg: string; failed?: number; code?: string }> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) });
  const broker = testBroker({ config, log });
  const gate = new ListenerGate('tcp', broker, 0);
  const server = await listenTcp(broker, gate, '127.0.0.1', 0);
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  for (let i = 0; i < 5; i++) server.emit('error', errno('EMFILE'));
  server.emit('error', errno('ENFILE'));
  t.equal(gate.stats.emfile, 6, 'every failed accept counted');
  const emfileLines = lines.filter((l) => l.msg.startsWith('out of file descriptors'));
  t.equal(emfileLines.length, 1, 'logged once within the interval');
  t.match(emfileLines[0], { code: 'EMFILE', failed: 1 });
  server.emit('error', errno('ECONNABORTED'));
  t.equal(gate.stats.emfile, 6, 'other errors are not counted as emfile');
  t.equal(lines.filter((l) => l.msg === 'MQTT listener error').length, 1, 'and logged as listener errors');

  const metrics = new Metrics({ nodeName: config.node.name, version: 'test', broker, listeners: [{ name: 'tcp', stats: gate.stats }] });
  t.equal(value(parsePrometheus(await metrics.text()), 'tidemq_accepts_total', { listener: 'tcp', outcome: 'emfile' }), 6);

  const port = (server.address() as { port: number }).port;
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.destroy();
  t.ok(server.listening, 'still listening');
});

t.test('a real node out of descriptors does not crash and serves again once they are free', async (t) => {
  const node = await startNode(t);
  const open = readdirSync(`/proc/${node.pid}/fd`).length;
  // A few descriptors above what the node holds: the next connections find none at accept.
  const limit = await run('prlimit', [`--pid=${node.pid}`, `--nofile=${open + 4}:20000`]);
  t.equal(limit.code, 0, `prlimit lowers the node's open-file limit ${limit.stderr}`);
  const sockets: Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  let dropped = 0;
  for (let i = 0; i < 30; i++) {
    const s = connect({ host: '127.0.0.1', port: node.mqttPort });
    sockets.push(s);
    s.on('error', () => {});
    // Closed by the node (libuv's reserve-descriptor trick), or left waiting in the backlog.
    s.once('close', () => dropped++);
  }
  // Proof that the node ran out: every descriptor it may hold is in use (or libuv already shed
  // connections). Polled, since how soon the node gets to its accepts depends on the machine.
  const deadline = Date.now() + 10_000;
  const saturated = (): boolean => dropped > 0 || readdirSync(`/proc/${node.pid}/fd`).length >= open + 4;
  while (!saturated() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.ok(saturated(), `the node ran out of descriptors (${dropped} of 30 connections shed so far)`);
  sockets.forEach((s) => s.destroy());
  t.equal((await run('prlimit', [`--pid=${node.pid}`, '--nofile=20000:20000'])).code, 0);
  const client = await connectClient(t, node.mqttPort, { clientId: 'after-emfile', protocolVersion: 5 });
  t.ok(client.connected, 'MQTT accepted again');
  await client.endAsync();
  const res = await fetch(`http://127.0.0.1:${node.mgmtPort}/metrics`);
  const families = parsePrometheus(await res.text());
  t.ok(value(families, 'tidemq_process_max_fds') >= 20000, 'the limit as /metrics shows it');
  t.notMatch(node.output(), /uncaught|FATAL/i, 'nothing crashed');
});
