// The even scheduler: the configured rate over time, and no bursts (at most SLACK_MS worth of the
// rate at once), on a fake clock; then on the real clock, the rate within 5%.
import t from 'tap';
import { realClock } from '../../src/rebalance/clock.js';
import { burstFor, EvenScheduler, SLACK_MS } from '../../src/rebalance/scheduler.js';
import { FakeClock } from './fake-clock.js';

t.test('rate and spread on a fake clock, 10/s to 5000/s', async (t) => {
  for (const rate of [10, 100, 500, 1000, 5000]) {
    const clock = new FakeClock();
    const releases: Array<[number, number]> = [];
    const s = new EvenScheduler(rate, (n) => (releases.push([clock.now(), n]), true), clock);
    s.start();
    clock.advance(10_000);
    s.stop();
    const total = releases.reduce((a, [, n]) => a + n, 0);
    t.ok(Math.abs(total - rate * 10) <= burstFor(rate), `${rate}/s: ${total} in 10 s`);
    // Every window of 100 ms gets its share, give or take one release: spread, not bursts.
    const perWindow = new Map<number, number>();
    for (const [at, n] of releases) {
      const w = Math.floor((at - 1001) / 100); // window w holds releases in (w*100, (w+1)*100] ms
      perWindow.set(w, (perWindow.get(w) ?? 0) + n);
    }
    const share = rate / 10;
    const worst = Math.max(...[...perWindow.values()].map((n) => Math.abs(n - share)));
    t.ok(worst <= Math.max(1, share * 0.02) + 1, `${rate}/s: each 100 ms window within one token of ${share} (worst off by ${worst})`);
    t.ok(releases.every(([, n]) => n <= burstFor(rate)), `${rate}/s: no release above ${burstFor(rate)}`);
  }
});

t.test('a late timer gets what accrued, up to the burst; the first release is not a burst', async (t) => {
  const clock = new FakeClock();
  const releases: number[] = [];
  const s = new EvenScheduler(1000, (n) => (releases.push(n), true), clock);
  s.start();
  clock.advance(1);
  t.same(releases, [1], 'one token after 1 ms at 1000/s, not a full bucket');
  // Simulate a blocked event loop: the clock jumps without timers firing in between.
  (clock as unknown as { t: number }).t += SLACK_MS + 50;
  clock.advance(0);
  t.equal(releases.at(-1), burstFor(1000), `after a ${SLACK_MS + 50} ms stall: ${SLACK_MS} ms worth at most (${burstFor(1000)})`);
});

t.test('release returning false ends it; stop() cancels the timer', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const s = new EvenScheduler(100, () => ++calls < 3, clock);
  s.start();
  clock.advance(1000);
  t.equal(calls, 3, 'no call after false');
  t.notOk(s.active);
  const s2 = new EvenScheduler(100, () => true, clock);
  s2.start();
  s2.stop();
  t.equal(clock.pending, 0, 'no timer left');
  t.throws(() => new EvenScheduler(0, () => true, clock), RangeError);
});

t.test('real clock: measured rate within 5% of 100/s and 2000/s', async (t) => {
  for (const rate of [100, 2000]) {
    let count = 0;
    const start = performance.now();
    const s = new EvenScheduler(rate, (n) => ((count += n), true), realClock);
    s.start();
    await new Promise((r) => setTimeout(r, 1500));
    s.stop();
    const measured = (count * 1000) / (performance.now() - start);
    t.ok(Math.abs(measured - rate) / rate < 0.05, `${rate}/s measured ${measured.toFixed(1)}/s`);
  }
});
