import t from 'tap';
import { Writable } from 'node:stream';
import { createLogger, formatLogLine } from '../../src/log.js';

class Capture extends Writable {
  chunks: string[] = [];
  isTTY: boolean;
  constructor(isTTY: boolean) {
    super();
    this.isTTY = isTTY;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk.toString());
    cb();
  }
}

t.test('JSON lines when the output is not a terminal', async (t) => {
  const out = new Capture(false);
  const log = createLogger('info', out);
  log.debug('hidden');
  log.info({ clientId: 'c1' }, 'client connected');
  await new Promise((r) => setImmediate(r));
  t.equal(out.chunks.length, 1, 'below the level: not written');
  const rec = JSON.parse(out.chunks[0] ?? '') as Record<string, unknown>;
  t.equal(rec.msg, 'client connected');
  t.equal(rec.clientId, 'c1');
  t.equal(rec.level, 30);
});

t.test('compact human lines on a terminal', async (t) => {
  const out = new Capture(true);
  const log = createLogger('debug', out);
  log.debug({ port: 1883, bind: '127.0.0.1', note: 'two words' }, 'listening');
  log.error({ err: new Error('boom') }, 'failed');
  await new Promise((r) => setImmediate(r));
  t.match(out.chunks[0], /^\d\d:\d\d:\d\d\.\d{3} DEBUG listening port=1883 bind=127\.0\.0\.1 note="two words"\n$/);
  t.match(out.chunks[1], /ERROR.* failed\n {4}Error: boom\n +at /);
  t.notMatch(out.chunks.join(''), /pid=|hostname=/, 'process fields left out');
});

t.test('formatLogLine', async (t) => {
  t.equal(formatLogLine('not json\n', false), 'not json\n', 'passes foreign lines through');
  t.equal(formatLogLine('{"level":40,"time":0,"msg":"careful","n":null}', false), '00:00:00.000 WARN  careful n=null\n');
  t.equal(formatLogLine('{"level":40,"time":0,"msg":"careful"}', true), '00:00:00.000 \x1b[33mWARN \x1b[0m careful\n', 'warnings colored on a terminal');
});

t.test('silent logs nothing', async (t) => {
  const out = new Capture(false);
  createLogger('silent', out).fatal('nothing');
  await new Promise((r) => setImmediate(r));
  t.same(out.chunks, []);
});
