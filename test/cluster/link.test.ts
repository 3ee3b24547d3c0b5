// Cluster links in-process over loopback sockets: framing, the cookie handshake (both sides
// prove it; a wrong one, or a name in use, is refused), and one frame per event-loop turn.

import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { parseNodeAddress } from '../../src/cluster/address.js';
import { encodeFrame, FrameDecoder, Link, MAX_FRAME, type LinkHandler, type LinkMessage } from '../../src/cluster/link.js';
import { RouteTable } from '../../src/cluster/routes.js';
import { Rpc, RpcError } from '../../src/cluster/rpc.js';

// The methods this test's RPC pair serves (the table is typed; these exist only here).
declare module '../../src/cluster/rpc.js' {
  interface RpcTable {
    add: { args: number[]; result: number };
    fail: { args: null; result: never };
    never: { args: null; result: never };
    nope: { args: null; result: never };
  }
}

const log = pino({ level: 'silent' });

/** Every complete frame of the bytes pushed so far. */
function frames(d: FrameDecoder, chunk: Buffer): LinkMessage[][] {
  d.push(chunk);
  const out: LinkMessage[][] = [];
  for (let f = d.next(); f !== undefined; f = d.next()) out.push(f);
  return out;
}

t.test('frames decode the same however the stream is cut; binaries are views of the frame', async (t) => {
  const payload = Buffer.from('payload bytes');
  const both = Buffer.concat([encodeFrame([[4, 't/1', payload, 1]]), encodeFrame([[0], [1, 'a/#', '']])]);
  for (let cut = 1; cut < both.length; cut++) {
    const d = new FrameDecoder();
    const out = [...frames(d, both.subarray(0, cut)), ...frames(d, both.subarray(cut))];
    t.same(out, [[[4, 't/1', payload, 1]], [[0], [1, 'a/#', '']]], `cut at ${cut}`);
  }
  const whole = encodeFrame([[4, 't', payload]]);
  const [[msg]] = frames(new FrameDecoder(), whole) as [[LinkMessage]];
  const bin = msg[2] as Buffer;
  t.equal(bin.buffer, whole.buffer, 'the payload is not copied out of the frame');
  const huge = Buffer.alloc(4);
  huge.writeUInt32BE(MAX_FRAME + 1, 0);
  t.throws(() => frames(new FrameDecoder(), huge), /exceeds/, 'an oversized frame is refused before buffering it');
  const small = new FrameDecoder(4096);
  const big = encodeFrame([[0, Buffer.alloc(5000)]]);
  t.throws(() => frames(small, big.subarray(0, 4)), /exceeds 4096/, 'the handshake limit is checked on the length prefix alone');
  const raised = new FrameDecoder(4096);
  raised.push(Buffer.concat([encodeFrame([['welcome']]), big]));
  t.same(raised.next(), [['welcome']]);
  raised.limit = MAX_FRAME;
  t.equal((raised.next()?.[0]?.[1] as Buffer).length, 5000, 'a limit raised after a frame applies to the frames behind it');
});

interface Side {
  up: Link[];
  down: string[];
  refused: string[];
  messages: LinkMessage[];
  handler: LinkHandler;
}

function side(refuse?: string): Side {
  const s: Side = {
    up: [],
    down: [],
    refused: [],
    messages: [],
    handler: {
      admit: () => refuse,
      refused: (_l, reason) => s.refused.push(reason),
      linkUp: (l) => s.up.push(l),
      linkMessage: (_l, m) => s.messages.push(m),
      linkDown: (_l, why) => s.down.push(why),
    },
  };
  return s;
}

/** Links a dialer and an acceptor over loopback with the given cookies. */
async function pair(t: Test, cookies: [string, string], acceptorRefuses?: string): Promise<{ dialer: Side; acceptor: Side; link: Link }> {
  const dialer = side();
  const acceptor = side(acceptorRefuses);
  const server = createServer((socket: Socket) => {
    new Link(socket, 'b@127.0.0.1', cookies[1], 'inc-b', acceptor.handler, log, undefined, false);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const link = new Link(connect({ host: '127.0.0.1', port }), 'a@127.0.0.1', cookies[0], 'inc-a', dialer.handler, log, 'b@127.0.0.1', true);
  t.teardown(() => link.close('test over'));
  const deadline = Date.now() + 3000;
  while (dialer.up.length + dialer.down.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 20));
  return { dialer, acceptor, link };
}

t.test('the same cookie: both sides up, each knowing the other', async (t) => {
  const { dialer, acceptor } = await pair(t, ['secret', 'secret']);
  t.equal(dialer.up.length, 1);
  t.equal(acceptor.up.length, 1);
  t.equal(dialer.up[0]?.peer, 'b@127.0.0.1');
  t.equal(acceptor.up[0]?.peer, 'a@127.0.0.1');
  t.equal(acceptor.up[0]?.peerIncarnation, 'inc-a');
});

t.test('a wrong cookie: refused on both sides, nothing comes up', async (t) => {
  const { dialer, acceptor } = await pair(t, ['secret', 'other']);
  t.same([dialer.up.length, acceptor.up.length], [0, 0]);
  t.ok(dialer.down.length > 0 && acceptor.down.length > 0);
  t.same(acceptor.refused, ['bad_cookie'], 'the acceptor found the proof wrong');
  t.same(dialer.refused, ['refused_bad_cookie']);
});

t.test('a refusal by the acceptor (name in use) reaches the dialer', async (t) => {
  const { dialer, acceptor } = await pair(t, ['secret', 'secret'], 'name_in_use');
  t.same([dialer.up.length, acceptor.up.length], [0, 0]);
  t.same(dialer.down, ['refused: name_in_use']);
});

t.test('a refusal counts for the dialer only when the acceptor proves it', async (t) => {
  const proved = await pair(t, ['secret', 'secret'], 'removed_from_cluster');
  t.equal(proved.link.refusal, 'removed_from_cluster', 'an acceptor that knows the cookie is believed');
  // A stranger at the address: answers the hello with a challenge and a reject it cannot prove.
  const server = createServer((socket: Socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.write(encodeFrame([['challenge', 'b@127.0.0.1', randomBytes(16), 'inc', 2], ['reject', 'removed_from_cluster', randomBytes(32)]])));
  });
  const { dialer, link } = await dialFake(t, server);
  t.equal(link.refusal, undefined, 'an unproved refusal is not taken for one');
  t.same(dialer.refused, ['unproved_reject']);
  t.equal(link.peer, '', 'the stranger never became the peer');
});

t.test('a dialer refuses an acceptor of the first handshake version (it proves first, carries no version)', async (t) => {
  const server = createServer((socket: Socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.write(encodeFrame([['challenge', 'b@127.0.0.1', randomBytes(16), randomBytes(32), 'inc']])));
  });
  const { dialer, link } = await dialFake(t, server);
  t.same(dialer.refused, ['handshake_version']);
  t.equal(link.up, false);
});

/** A dialer ('a', expecting 'b') linked to a test server that plays the acceptor; resolves once the link is down. */
async function dialFake(t: Test, server: Server): Promise<{ dialer: Side; link: Link }> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const dialer = side();
  const link = new Link(connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port }), 'a@127.0.0.1', 'secret', 'inc-a', dialer.handler, log, 'b@127.0.0.1', true);
  t.teardown(() => link.close('test over'));
  const deadline = Date.now() + 3000;
  while (dialer.down.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  return { dialer, link };
}

t.test('messages sent in one turn leave as one frame, in order', async (t) => {
  const { dialer, acceptor } = await pair(t, ['secret', 'secret']);
  const link = dialer.up[0] as Link;
  let writes = 0;
  const write = link.socket.write.bind(link.socket);
  link.socket.write = ((chunk: Buffer) => {
    writes++;
    return write(chunk);
  }) as typeof link.socket.write;
  for (let i = 0; i < 100; i++) link.send([0, i]);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(writes, 1, 'one write for 100 messages');
  t.same(acceptor.messages.map((m) => m[1]), Array.from({ length: 100 }, (_, i) => i));
});

t.test('rpc: results, handler errors, unknown methods, timeouts and a peer going down', async (t) => {
  const { dialer, acceptor } = await pair(t, ['secret', 'secret']);
  const caller = new Rpc(200);
  const callee = new Rpc(200);
  callee.handle('add', (args) => args.reduce((a, b) => a + b, 0));
  callee.handle('fail', () => {
    throw new Error('no such session');
  });
  callee.handle('never', () => new Promise(() => {}));
  const route = (s: Side, rpc: Rpc): void => {
    s.handler.linkMessage = (l, m) => (m[0] === 11 ? rpc.onCall(l, m[1], m[2], m[3]) : rpc.onReply(m[1], m[2], m[3]));
  };
  route(dialer, caller);
  route(acceptor, callee);
  const link = dialer.up[0] as Link;
  t.equal(await caller.call(link, 'add', [1, 2, 3]), 6);
  await t.rejects(caller.call(link, 'fail', null), { name: 'RpcError', message: /no such session/ });
  await t.rejects(caller.call(link, 'nope', null), /unknown method nope/);
  const started = Date.now();
  await t.rejects(caller.call(link, 'never', null), /timed out after 200 ms/);
  t.ok(Date.now() - started < 1000);
  const pending = caller.call(link, 'never', null, 60_000);
  caller.nodeDown(link.peer);
  await t.rejects(pending, RpcError, 'a peer going down fails its calls at once');
});

t.test('the route table: filter routes per node, shared groups, purge and full replace', async (t) => {
  const r = new RouteTable();
  r.add('n2', 'a/+', '');
  r.add('n3', 'a/+', '');
  r.add('n2', 'a/+', ''); // again: no double entry
  r.add('n3', 'jobs/#', 'g');
  const hits: string[] = [];
  r.filters.match('a/b', hits, (h, node) => h.push(node));
  t.same(hits.sort(), ['n2', 'n3']);
  t.same(r.groups.get('jobs/#', 'g')?.nodes, ['n3']);
  t.equal(r.purge('n3'), 2);
  t.equal(r.groups.get('jobs/#', 'g'), undefined, 'a group with no node left is gone');
  r.replace('n2', [['x/y', ''], ['z', 'h']]);
  t.same(r.routesOf('n2').sort(), [['x/y', ''], ['z', 'h']]);
  t.same(r.nodes(), ['n2']);
  r.remove('n2', 'x/y', '');
  r.remove('n2', 'z', 'h');
  t.same(r.nodes(), []);
});

t.test('node addresses: the conventional port, an explicit one, IPv6', async (t) => {
  t.same(parseNodeAddress('tidemq2@10.0.0.5'), { name: 'tidemq2@10.0.0.5', host: '10.0.0.5', port: 4372 });
  t.same(parseNodeAddress('emqx@s1.example.com'), { name: 'emqx@s1.example.com', host: 's1.example.com', port: 4370 });
  t.same(parseNodeAddress('n1@127.0.0.1:45000'), { name: 'n1@127.0.0.1', host: '127.0.0.1', port: 45000 });
  t.same(parseNodeAddress('n3@[::1]:45000'), { name: 'n3@[::1]', host: '::1', port: 45000 });
  t.throws(() => parseNodeAddress('nohost'), /invalid node/);
});
