import t from 'tap';
import { TokenBucket } from '../../src/broker/token-bucket.js';

/** A consumer that takes a token whenever it can and otherwise sleeps waitMs on a fake clock. */
function simulate(rate: number, burst: number, durationMs: number): number[] {
  let now = 0;
  const bucket = new TokenBucket(rate, burst, () => now);
  const takes: number[] = [];
  while (now <= durationMs) {
    if (bucket.tryTake()) takes.push(now);
    else now += bucket.waitMs();
  }
  return takes;
}

/** The most tokens taken in any window of `windowMs` (windows starting at a take). */
function maxInWindow(takes: number[], windowMs: number): number {
  let max = 0;
  let end = 0;
  for (let start = 0; start < takes.length; start++) {
    while (end < takes.length && (takes[end] as number) < (takes[start] as number) + windowMs) end++;
    max = Math.max(max, end - start);
  }
  return max;
}

// Rate 5000/s needs burst 5: a millisecond clock wakes a consumer at most once per ms.
for (const [rate, burst] of [[10, 1], [100, 1], [5000, 5], [300, 2], [7, 3]] as const) {
  t.test(`rate ${rate}/s burst ${burst} over a simulated 10 s`, async (t) => {
    const takes = simulate(rate, burst, 10_000);
    const measured = (takes.length - burst) / 10; // the bucket starts full
    t.ok(Math.abs(measured - rate) <= rate * 0.01, `measured ${measured}/s within 1%`);
    t.ok(maxInWindow(takes, 1000) <= burst + rate, 'no second holds more than burst + rate');
    const gap = 1000 / rate;
    t.ok(maxInWindow(takes, gap) <= burst, `no ${gap} ms window holds more than burst`);
  });
}

t.test('burst 1 releases tokens evenly, one every 1000/rate ms', async (t) => {
  const takes = simulate(100, 1, 1000);
  const gaps = new Set(takes.slice(1).map((at, i) => at - (takes[i] as number)));
  t.same([...gaps], [10]);
});

t.test('after a long idle spell only `burst` tokens are available at once', async (t) => {
  let now = 0;
  const bucket = new TokenBucket(1000, 3, () => now);
  now = 60_000;
  let taken = 0;
  while (taken < 100 && bucket.tryTake()) taken++;
  t.equal(taken, 3);
  t.equal(bucket.waitMs(), 1);
});

t.test('tryTake(n) and waitMs(n)', async (t) => {
  let now = 0;
  const bucket = new TokenBucket(10, 4, () => now);
  t.equal(bucket.waitMs(4), 0, 'starts full');
  t.equal(bucket.tryTake(3), true);
  t.equal(bucket.tryTake(2), false, 'only 1 left: nothing is taken');
  t.equal(bucket.waitMs(2), 100);
  now = 99;
  t.equal(bucket.tryTake(2), false);
  t.equal(bucket.waitMs(2), 1);
  now = 100;
  t.equal(bucket.tryTake(2), true);
  t.equal(bucket.tryTake(5), false, 'more than burst never succeeds');
  t.equal(bucket.waitMs(5), Infinity);
});

t.test('setRate keeps accrued tokens up to the new capacity', async (t) => {
  let now = 0;
  const bucket = new TokenBucket(10, 5, () => now);
  bucket.setRate(10, 2);
  t.equal(bucket.tryTake(2), true);
  t.equal(bucket.tryTake(), false, 'capacity cut to 2');
  now = 50;
  bucket.setRate(100, 2); // half a token accrued at the old rate is kept
  t.equal(bucket.waitMs(), 5);
  bucket.setRate(0, 2);
  t.equal(bucket.waitMs(), Infinity, 'rate 0 never refills');
});

t.test('a clock stepping back adds nothing', async (t) => {
  let now = 10_000;
  const bucket = new TokenBucket(10, 1, () => now);
  t.equal(bucket.tryTake(), true);
  now = 5_000;
  t.equal(bucket.tryTake(), false);
  now = 5_099;
  t.equal(bucket.tryTake(), false);
  now = 5_100;
  t.equal(bucket.tryTake(), true, 'counting restarts from the new reading');
});

t.test('default clock is real time', async (t) => {
  const bucket = new TokenBucket(20, 1);
  t.equal(bucket.tryTake(), true);
  t.equal(bucket.tryTake(), false);
  const wait = bucket.waitMs();
  t.ok(wait > 0 && wait <= 50, `wait ${wait} ms`);
  await new Promise((r) => setTimeout(r, wait + 5));
  t.equal(bucket.tryTake(), true);
});
