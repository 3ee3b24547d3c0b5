// `npm run build:binary`: one executable for this platform (dist/tidemq-linux-x64) from Node's
// single executable applications: this Node binary, with the payload (payload.ts) as SEA assets
// and sea-entry.cjs as its main script. Nothing is downloaded. Prints the size and the startup
// times (startup-time.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stagePayload } from './payload.js';
import type { SeaManifest } from './sea-entry.cjs';
import { measureStartup } from './startup-time.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
/** The fuse Node checks to know it carries a SEA blob (Node's documented value). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const MANIFEST_PLACEHOLDER = "'__TIDEMQ_SEA_MANIFEST__'";

class BuildError extends Error {}

/** The commit the build is made from, `-dirty` when tracked files differ from it. */
function gitCommit(): string {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty', '--abbrev=12', '--exclude', '*'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown'; // not a git checkout (an unpacked npm tarball)
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function run(command: string, args: string[]): void {
  const r = spawnSync(command, args, { cwd: root, encoding: 'utf8' });
  if (r.error !== undefined) throw new BuildError(`${command}: ${r.error.message}`);
  if (r.status !== 0) throw new BuildError(`${command} ${args.join(' ')} failed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
}

interface BuildOptions {
  out: string;
  measure: boolean;
}

function parseArgs(argv: string[]): BuildOptions {
  const opts: BuildOptions = { out: join(root, 'dist', `tidemq-${process.platform}-${process.arch}`), measure: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out' && argv[i + 1] !== undefined) opts.out = argv[++i] as string;
    else if (arg === '--no-measure') opts.measure = false;
    else throw new BuildError(`usage: npm run build:binary -- [--out FILE] [--no-measure] (unexpected ${arg})`);
  }
  return opts;
}

async function build(argv: string[]): Promise<void> {
  const opts = parseArgs(argv);
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new BuildError(`the standalone binary is built for linux-x64 only, not ${process.platform}-${process.arch}`);
  // Its own scratch directory, so that builds running at once (a test and a developer) never mix.
  const work = mkdtempSync(join(tmpdir(), 'tidemq-build-'));
  try {
    await assemble(opts, work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function assemble(opts: BuildOptions, work: string): Promise<void> {
  const stage = join(work, 'payload');
  const started = Date.now();
  const commit = gitCommit();
  const payload = stagePayload(root, stage, commit);

  const manifest: SeaManifest = { main: 'dist/cli/entry.js', files: [] };
  const assets: Record<string, string> = {};
  let payloadBytes = 0;
  for (const rel of payload.files) {
    const bytes = readFileSync(join(stage, rel));
    manifest.files.push({ path: rel, size: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') });
    assets[rel] = join(stage, rel);
    payloadBytes += bytes.byteLength;
  }
  const entry = readFileSync(join(root, 'dist', 'build', 'sea-entry.cjs'), 'utf8');
  if (!entry.includes(MANIFEST_PLACEHOLDER)) throw new BuildError('dist/build/sea-entry.cjs has no manifest placeholder (rebuild with npm run build)');
  const main = join(work, 'main.cjs');
  writeFileSync(main, entry.replace(MANIFEST_PLACEHOLDER, () => JSON.stringify(JSON.stringify(manifest))));
  const blob = join(work, 'sea.blob');
  const config = join(work, 'sea-config.json');
  writeFileSync(config, JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, assets }));
  run(process.execPath, ['--experimental-sea-config', config]);

  // Debian's Node carries debug info and a static symbol table (13 MB) that nothing loads; strip
  // keeps the dynamic symbols that addons link against. Without binutils the binary is only larger.
  // Written beside the output and renamed when complete: a failed build leaves no half binary.
  mkdirSync(dirname(opts.out), { recursive: true });
  const partial = `${opts.out}.partial`;
  rmSync(partial, { force: true });
  const stripped = spawnSync('strip', ['-o', partial, process.execPath]).status === 0;
  if (!stripped) copyFileSync(process.execPath, partial);
  chmodSync(partial, 0o755);
  const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
  try {
    run(process.execPath, [postject, partial, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);
    renameSync(partial, opts.out);
  } finally {
    rmSync(partial, { force: true });
  }

  const size = statSync(opts.out).size;
  process.stdout.write(
    `built ${opts.out} in ${((Date.now() - started) / 1000).toFixed(1)} s: commit ${commit}, Node.js ${process.version}\n` +
      `size: ${mb(size)} (Node.js ${mb(size - payloadBytes)}${stripped ? ' stripped' : ''}, payload ${mb(payloadBytes)}: ` +
      `${payload.files.length} files from dist/ and ${payload.packages} packages)\n`,
  );
  if (!opts.measure) return;
  const times = await measureStartup(opts.out, join(root, 'bin', 'tidemq'));
  process.stdout.write(
    `startup (median of ${times.runs}): --version ${times.binary.version} ms (bin/tidemq ${times.launcher.version} ms); ` +
      `start until the MQTT port accepts ${times.binary.accept} ms (bin/tidemq ${times.launcher.accept} ms)\n`,
  );
}

build(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`build:binary: ${err instanceof BuildError ? err.message : (err as Error).stack}\n`);
  process.exitCode = 1;
});
