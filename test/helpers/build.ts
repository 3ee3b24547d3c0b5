// Compiles src/ to dist/ when dist/ is missing or older than the sources, for tests that run the
// real `bin/tidemq`. A lock directory keeps parallel test processes from building at once.

import { mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './process.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const tscBin = createRequire(import.meta.url).resolve('typescript/bin/tsc');

const STAMP = '.build-stamp';
const LOCK = '.build-lock';
const LOCK_STALE_MS = 120_000;
const BUILD_TIMEOUT_MS = 120_000;

/** Newest mtime (ms) of any file under `dir`, 0 if there is none. */
function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

function stampMtime(outDir: string): number {
  try {
    return statSync(join(outDir, STAMP)).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Runs `tsc -p <tsconfig>` in `root` unless `<root>/<outDir>/.build-stamp` is newer than every file
 * in `<root>/<srcDir>`. Throws with the compiler output when tsc fails. Returns whether it built.
 */
export async function buildIfStale(root: string, opts: { srcDir?: string; outDir?: string; tsconfig?: string } = {}): Promise<boolean> {
  const srcDir = join(root, opts.srcDir ?? 'src');
  const outDir = join(root, opts.outDir ?? 'dist');
  const lock = join(outDir, LOCK);
  mkdirSync(outDir, { recursive: true });
  const deadline = Date.now() + BUILD_TIMEOUT_MS + LOCK_STALE_MS;
  for (;;) {
    if (stampMtime(outDir) >= newestMtime(srcDir)) return false;
    try {
      mkdirSync(lock);
      break;
    } catch {
      // Another test process is building; a lock left by a killed one goes stale.
      const lockedAt = statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
      if (Date.now() - lockedAt > LOCK_STALE_MS) rmSync(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for the build lock ${lock}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (stampMtime(outDir) >= newestMtime(srcDir)) return false; // built while we waited
    const started = Date.now();
    const result = await run(process.execPath, [tscBin, '-p', opts.tsconfig ?? 'tsconfig.build.json'], {
      cwd: root,
      timeoutMs: BUILD_TIMEOUT_MS,
    });
    if (result.code !== 0) {
      throw new Error(`tsc failed in ${root} (code ${result.code}${result.timedOut ? ', timed out' : ''}):\n${result.stdout}${result.stderr}`);
    }
    // Stamped with the start time, so a source saved during the build triggers another one.
    const stamp = join(outDir, STAMP);
    writeFileSync(stamp, '');
    utimesSync(stamp, started / 1000, started / 1000);
    return true;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

let built: Promise<boolean> | undefined;

/** Builds dist/ once per test process if it is missing or older than any file in src/. */
export async function ensureBuilt(): Promise<void> {
  built ??= buildIfStale(repoRoot);
  await built;
}
