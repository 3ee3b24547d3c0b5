import t from 'tap';
import { TimerWheel, WheelTimer } from '../../src/broker/timer-wheel.js';
import { seededRandom } from '../helpers/random.js';

const TICK = 250;

function fakeWheel(start = 1_000_000): { wheel: TimerWheel; fired: string[]; timer(name: string): WheelTimer } {
  const wheel = new TimerWheel(TICK, () => start);
  const fired: string[] = [];
  return { wheel, fired, timer: (name) => new WheelTimer(null, (_, now) => fired.push(`${name}@${now}`)) };
}

t.test('fires at the first tick at or after the deadline, in order', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  const a = timer('a');
  const b = timer('b');
  const c = timer('c');
  wheel.schedule(c, 1_001_000); // exactly on a tick
  wheel.schedule(a, 1_000_100); // fires at tick 1_000_250
  wheel.schedule(b, 1_000_600); // fires at tick 1_000_750
  t.equal(wheel.size, 3);
  t.ok(a.scheduled);
  wheel.advance(1_000_249);
  t.same(fired, [], 'before the first tick');
  wheel.advance(1_000_250);
  t.same(fired, ['a@1000250']);
  t.notOk(a.scheduled, 'not scheduled after firing');
  wheel.advance(1_000_999);
  t.same(fired, ['a@1000250', 'b@1000999']);
  wheel.advance(1_001_000);
  t.same(fired, ['a@1000250', 'b@1000999', 'c@1001000']);
  t.equal(wheel.size, 0);
});

t.test('one advance over many ticks fires in tick order', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  for (const [name, at] of [['d', 1_002_000], ['b', 1_000_500], ['c', 1_001_200], ['a', 1_000_010]] as const) {
    wheel.schedule(timer(name), at);
  }
  wheel.advance(1_010_000);
  t.same(fired.map((f) => f[0]), ['a', 'b', 'c', 'd']);
});

t.test('a deadline in the past fires on the next tick', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  wheel.schedule(timer('late'), 5);
  wheel.advance(1_000_000);
  t.same(fired, [], 'the current tick was already processed');
  wheel.advance(1_000_250);
  t.same(fired, ['late@1000250']);
});

t.test('cancel', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  const a = timer('a');
  const b = timer('b');
  wheel.schedule(a, 1_000_500);
  wheel.schedule(b, 1_000_500);
  wheel.cancel(a);
  wheel.cancel(a); // idempotent
  t.notOk(a.scheduled);
  t.equal(wheel.size, 1);
  wheel.advance(1_001_000);
  t.same(fired, ['b@1001000']);
  wheel.cancel(b); // already fired: no-op
  t.equal(wheel.size, 0);
});

t.test('reschedule moves the timer, it stays in one slot', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  const a = timer('a');
  wheel.schedule(a, 1_000_500);
  wheel.schedule(a, 1_003_000); // later
  wheel.schedule(a, 1_002_000); // earlier again
  t.equal(wheel.size, 1, 'counted once');
  t.ok(a.scheduled);
  wheel.advance(1_001_999);
  t.same(fired, []);
  wheel.advance(1_004_000);
  t.same(fired, ['a@1004000'], 'fired once, not from the old slots');
});

t.test('a timer rescheduling itself fires once per advance', async (t) => {
  const { wheel } = fakeWheel();
  let fires = 0;
  const self: WheelTimer = new WheelTimer(null, (_, now) => {
    fires++;
    wheel.schedule(self, now); // due again at once: must wait for the next advance
  });
  wheel.schedule(self, 1_000_100);
  wheel.advance(1_002_000);
  t.equal(fires, 1);
  wheel.advance(1_002_000);
  t.equal(fires, 1, 'same time: no new tick, no fire');
  wheel.advance(1_002_250);
  t.equal(fires, 2);
  t.equal(wheel.size, 1);
});

t.test('within a tick timers fire in scheduling order; fire() may cancel or move later ones', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  const v1 = timer('v1');
  const v2 = timer('v2');
  const killer = new WheelTimer(null, () => {
    fired.push('killer');
    wheel.cancel(v1);
    wheel.schedule(v2, 1_005_000);
  });
  wheel.schedule(timer('first'), 1_000_200);
  wheel.schedule(killer, 1_000_250);
  wheel.schedule(v1, 1_000_100);
  wheel.schedule(v2, 1_000_250);
  wheel.advance(1_000_250);
  t.same(fired, ['first@1000250', 'killer']);
  wheel.advance(1_010_000);
  t.same(fired, ['first@1000250', 'killer', 'v2@1010000']);
  t.equal(wheel.size, 0);
});

t.test('timers beyond one revolution wait for their round', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  const revolution = 4096 * TICK;
  wheel.schedule(timer('far'), 1_000_500 + revolution);
  wheel.schedule(timer('near'), 1_000_500);
  wheel.advance(1_000_500);
  t.same(fired, ['near@1000500'], 'same slot, next revolution: not yet');
  wheel.advance(1_000_500 + revolution - TICK);
  t.equal(fired.length, 1);
  wheel.advance(1_000_500 + revolution);
  t.same(fired[1], `far@${1_000_500 + revolution}`);
});

t.test('after a stall longer than a revolution every overdue timer fires once', async (t) => {
  const { wheel, fired, timer } = fakeWheel();
  for (let i = 0; i < 100; i++) wheel.schedule(timer(`t${i}`), 1_000_000 + i * 100_000);
  wheel.advance(1_000_000 + 1e9);
  t.equal(fired.length, 100);
  t.equal(new Set(fired.map((f) => f.split('@')[0])).size, 100);
  t.equal(wheel.size, 0);
});

t.test('many timers, random schedule/reschedule/cancel, against a model', async (t) => {
  const seed = 42;
  const rnd = seededRandom(seed);
  let now = 1_000_000;
  const wheel = new TimerWheel(TICK, () => now);
  const firedAt = new Map<number, number[]>();
  const deadlines = new Map<number, number>(); // model: id -> deadline
  const timers: WheelTimer[] = [];
  for (let id = 0; id < 5000; id++) {
    timers.push(new WheelTimer(null, (_, at) => {
      const list = firedAt.get(id) ?? [];
      list.push(at);
      firedAt.set(id, list);
    }));
  }
  let bad = 0;
  for (let step = 0; step < 400; step++) {
    for (let i = 0; i < 50; i++) {
      const id = Math.floor(rnd() * timers.length);
      const timer = timers[id] as WheelTimer;
      if (rnd() < 0.2) {
        wheel.cancel(timer);
        deadlines.delete(id);
      } else {
        const at = now + Math.floor(rnd() * 120_000);
        wheel.schedule(timer, at);
        deadlines.set(id, at);
      }
    }
    now += Math.floor(rnd() * 1000);
    firedAt.clear();
    wheel.advance(now);
    for (const [id, ats] of firedAt) {
      const deadline = deadlines.get(id);
      // The model's deadline must have been reached, and it must not be more than a tick late.
      if (ats.length !== 1 || deadline === undefined || deadline > now || Math.ceil(deadline / TICK) * TICK < now - 1000) bad++;
      deadlines.delete(id);
    }
    for (const [id, deadline] of deadlines) {
      if (Math.ceil(deadline / TICK) * TICK <= Math.floor(now / TICK) * TICK && !firedAt.has(id)) bad++;
      if (!(timers[id] as WheelTimer).scheduled) bad++;
    }
    if (wheel.size !== deadlines.size) bad++;
  }
  t.equal(bad, 0, `every timer fired once, on time, seed ${seed}`);
});

t.test('ticks count from the wheel\'s start: small integers, not doubles, on every timer', async (t) => {
  const now = Date.now(); // today's absolute tick (now / 250) is past 2^31: a boxed double per timer
  const wheel = new TimerWheel(TICK, () => now);
  const timer = new WheelTimer(null, () => undefined);
  wheel.schedule(timer, now + 86_400_000); // a day ahead
  t.ok(Number.isInteger(timer.tick) && timer.tick > 0 && timer.tick < 2 ** 30, `tick ${timer.tick}`);
  wheel.advance(now + 86_400_000 - TICK);
  t.ok(timer.scheduled, 'not before its deadline');
  wheel.advance(now + 86_400_000 + TICK);
  t.notOk(timer.scheduled, 'and fired at the first tick at or after it');
});

t.test("start() drives advance from an unref'd interval, stop() clears it", async (t) => {
  const wheel = new TimerWheel(20);
  // The interval is unref'd: a ref'd timer keeps this test process alive meanwhile.
  const keepAlive = setTimeout(() => t.fail('the wheel never fired'), 5000);
  const firedAt = await new Promise<number>((resolve) => {
    wheel.schedule(new WheelTimer(null, (_, now) => resolve(now)), Date.now() + 50);
    wheel.start();
  });
  wheel.stop();
  t.ok(firedAt > 0, 'fired by the interval');
  const late = new WheelTimer(null, () => t.fail('fired after stop()'));
  wheel.schedule(late, Date.now() + 20);
  await new Promise((r) => setTimeout(r, 100));
  clearTimeout(keepAlive);
  t.ok(late.scheduled, 'still scheduled: nothing advanced the wheel');
});
