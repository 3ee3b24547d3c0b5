// The standalone binary's entry: the SEA main script, so CommonJS with Node built-ins only. It
// writes the JavaScript and native addons carried as SEA assets into a private directory (mode
// 0700), each checked against the manifest that the build baked into this script, and runs the
// tidemq command line from there; the directory is removed when the process exits.
import crypto = require('node:crypto');
import fs = require('node:fs');
import os = require('node:os');
import path = require('node:path');
import sea = require('node:sea');
import url = require('node:url');

/** One file of the payload: its asset key is its path relative to the extraction directory. */
export interface SeaFile {
  path: string;
  size: number;
  sha256: string;
}

export interface SeaManifest {
  /** The module whose main(args) runs a command line. */
  main: string;
  files: SeaFile[];
}

/** Set by the build to the manifest's JSON text. */
const MANIFEST_JSON: string = '__TIDEMQ_SEA_MANIFEST__';
/**
 * A child process of the binary (the store's integrity check, a relaunch with V8 flags) runs the
 * same binary again; this variable names the parent's extraction, which the child checks and reuses.
 */
const DIR_ENV = 'TIDEMQ_SEA_DIR';
/** Extraction directories are `tidemq-<pid>-XXXXXX` under the temp dir: the pid tells a stale one. */
const DIR_PATTERN = /^tidemq-(\d+)-[A-Za-z0-9]{6}$/;
/** Exit code of a damaged binary or extraction. */
const EXIT_DAMAGED = 1;

class DamagedError extends Error {}

/** Why `bytes` are not the file `entry` describes, or undefined when they are. */
function problem(entry: SeaFile, bytes: Uint8Array): string | undefined {
  if (bytes.byteLength !== entry.size) {
    return bytes.byteLength < entry.size ? `is truncated (${bytes.byteLength} of ${entry.size} bytes)` : `has ${bytes.byteLength} bytes, ${entry.size} expected`;
  }
  const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  return sha256 === entry.sha256 ? undefined : `is corrupt (sha256 ${sha256}, ${entry.sha256} expected)`;
}

function assetBytes(key: string): Uint8Array {
  try {
    // The raw asset is a view of the executable's mapped bytes: read, never written, never copied.
    return new Uint8Array(sea.getRawAsset(key) as ArrayBuffer);
  } catch {
    throw new DamagedError(`asset ${key} is missing from this binary; build or download it again`);
  }
}

/** Removes extraction directories left by processes that are gone (kill -9, a crash). */
function sweepStale(parent: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(DIR_PATTERN.exec(name)?.[1] ?? NaN);
    if (Number.isNaN(pid)) continue;
    const dir = path.join(parent, name);
    const st = fs.lstatSync(dir, { throwIfNoEntry: false });
    if (st === undefined || !st.isDirectory() || st.uid !== process.getuid?.()) continue;
    // Our own pid on someone else's directory: an earlier process of a restarted container.
    if (pid !== process.pid && alive(pid)) continue;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // A zombie (killed, not yet reaped by its parent) still answers kill(pid, 0).
    return !/^\d+ \(.*\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Writes every asset into a new private directory, checking each first. */
function extract(manifest: SeaManifest): string {
  const parent = os.tmpdir();
  sweepStale(parent);
  // Real path: the ES module loader names modules by theirs (a TMPDIR behind a symlink).
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(parent, `tidemq-${process.pid}-`)));
  removeOnExit(dir);
  const made = new Set<string>();
  for (const entry of manifest.files) {
    const bytes = assetBytes(entry.path);
    const why = problem(entry, bytes);
    if (why !== undefined) throw new DamagedError(`asset ${entry.path} of this binary ${why}; build or download it again`);
    const file = path.join(dir, entry.path);
    const sub = path.dirname(file);
    if (!made.has(sub)) {
      fs.mkdirSync(sub, { recursive: true, mode: 0o700 });
      made.add(sub);
    }
    fs.writeFileSync(file, bytes, { mode: 0o600, flag: 'wx' });
  }
  return dir;
}

function removeOnExit(dir: string): void {
  const remove = (): void => fs.rmSync(dir, { recursive: true, force: true });
  process.on('exit', remove);
  // A signal nobody else handles ends the process without 'exit': clean up, then die of it.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(signal) > 1) return; // the command handles it (tidemq start)
      remove();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Checks a parent process's extraction before reusing it: private, ours, and every file intact. */
function reuse(given: string, manifest: SeaManifest): string {
  let dir: string;
  try {
    dir = fs.realpathSync(given); // as extract() names it
  } catch {
    throw new DamagedError(`${DIR_ENV}=${given} does not exist`);
  }
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new DamagedError(`${DIR_ENV}=${given} is not a directory`);
  if (st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) throw new DamagedError(`${DIR_ENV}=${given} is not private to this user (mode 0700)`);
  for (const entry of manifest.files) {
    let bytes: Uint8Array;
    try {
      bytes = fs.readFileSync(path.join(dir, entry.path));
    } catch {
      throw new DamagedError(`extracted file ${entry.path} in ${dir} is missing`);
    }
    const why = problem(entry, bytes);
    if (why !== undefined) throw new DamagedError(`extracted file ${entry.path} in ${dir} ${why}`);
  }
  return dir;
}

/** Extracts (or reuses) the payload, then runs the script or the command line it was asked for. */
async function run(): Promise<void> {
  let cli: { main(args: string[]): Promise<void> };
  // process.argv is [binary, the path it was invoked as, ...args]; node's is [node, script, ...args].
  const args = process.argv.slice(2);
  try {
    if (!sea.isSea()) throw new DamagedError('sea-entry.cjs runs only inside the standalone binary');
    const manifest = JSON.parse(MANIFEST_JSON) as SeaManifest;
    const inherited = process.env[DIR_ENV];
    const dir = inherited === undefined ? extract(manifest) : reuse(inherited, manifest);
    process.env[DIR_ENV] = dir;
    const script = args[0];
    if (inherited !== undefined && script !== undefined && manifest.files.some((f) => path.join(dir, f.path) === script)) {
      // A script of the payload, run as `node script ...` would run it (lmdb-store.ts spawns check.js).
      process.argv.splice(1, 2, script);
      await import(url.pathToFileURL(script).href);
      return;
    }
    process.argv[1] = path.join(dir, manifest.main);
    cli = (await import(url.pathToFileURL(process.argv[1]).href)) as typeof cli;
  } catch (err) {
    process.stderr.write(`tidemq: ${err instanceof DamagedError ? err.message : `cannot load the payload: ${(err as Error).message}`}\n`);
    process.exitCode = EXIT_DAMAGED;
    return;
  }
  // Past this point the binary behaves as bin/tidemq: what main() throws is not caught here either.
  await cli.main(args);
}

void run();
