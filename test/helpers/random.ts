// Seeded randomness for property tests, so a failure reproduces from the seed in its message.

/** mulberry32: a small, fast 32-bit PRNG. Returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)] as T;
}

/** Levels chosen to collide often, with empty levels and '$' levels at any depth. */
const LEVELS = ['a', 'b', 'c', '', '$SYS', '$x', 'a$'];

/** A random valid topic name of 1-4 levels. */
export function randomTopic(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) levels.push(pick(rnd, LEVELS));
  return levels.join('/');
}

/** A random valid non-shared topic filter of 1-4 levels with '+' anywhere and '#' last. */
export function randomFilter(rnd: () => number): string {
  const n = 1 + Math.floor(rnd() * 4);
  const levels: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = rnd();
    if (i === n - 1 && r < 0.25) levels.push('#');
    else if (r < 0.5) levels.push('+');
    else levels.push(pick(rnd, LEVELS));
  }
  return levels.join('/');
}
