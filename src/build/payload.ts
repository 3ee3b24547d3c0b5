// What the standalone binary carries: the compiled dist/ (less the build itself), a package.json
// with the build's commit, and the runtime dependencies' files, pruned of everything Node does not
// load on this platform (sources, type files, source maps, docs, tests, other platforms' addons).
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

interface PackageJson {
  name: string;
  version: string;
  type?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

/**
 * Dependencies never loaded by tidemq: type packages, C headers for compiling addons, and the
 * optional speed-ups of `ws`, which only uWS's fallback uses (uWS's native build loads instead).
 */
const SKIPPED_PACKAGES = [/^@types\//, /^node-addon-api$/, /^bufferutil$/, /^utf-8-validate$/];
/** Tests, docs, examples, and vendored C sources of addons (lmdb's dependencies/). */
const SKIPPED_DIRS = new Set(['deps', 'dependencies', 'test', 'tests', '__tests__', 'doc', 'docs', 'example', 'examples', 'benchmark', 'benchmarks', 'bench', 'coverage']);
/** Sources, type files, source maps, docs, tests and build files; licence texts stay. */
const SKIPPED_FILES = /(^test\.js|\.test\.js|\.map|\.ts|\.cts|\.mts|\.md|\.markdown|\.c|\.cc|\.cpp|\.h|\.hpp|\.gyp|\.gypi|\.tsbuildinfo|\.vcxproj|\.sln|^Makefile|^\.npmignore|^\.eslintrc.*|^\.editorconfig|^tsconfig.*\.json)$/;

/** Whether a prebuilt addon is the one Node loads here (linux-x64, this Node's ABI, glibc). */
function addonLoadedHere(dir: string, name: string, siblings: string[]): boolean {
  const abi = process.versions.modules;
  // uWebSockets.js loads binaries/uws_<platform>_<arch>_<abi>.node (its dist/ has unused copies)
  const uws = /^uws_([a-z0-9]+)_([a-z0-9]+)_(\d+)\.node$/.exec(name);
  if (uws) return dir === 'binaries' && uws[1] === process.platform && uws[2] === process.arch && uws[3] === abi;
  // node-gyp-build-optional-packages (lmdb, msgpackr-extract): node.abi<abi>.<libc>.node, else node.napi.<libc>.node
  const tagged = /^node\.(?:abi(\d+)|napi)\.(glibc|musl)\.node$/.exec(name);
  if (tagged) {
    if (tagged[2] !== 'glibc') return false; // the binary is this glibc build of Node
    if (tagged[1] !== undefined) return tagged[1] === abi;
    return !siblings.includes(`node.abi${abi}.glibc.node`);
  }
  return true;
}

/** Files of one package directory worth carrying, as paths relative to it. */
function packageFiles(dir: string, sub = ''): string[] {
  const out: string[] = [];
  const entries = readdirSync(join(dir, sub), { withFileTypes: true });
  const names = entries.map((e) => e.name);
  for (const entry of entries) {
    const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
    if (entry.isDirectory()) {
      // nested packages are walked as packages; dot directories are tool state (.github, .claude)
      if (entry.name === 'node_modules' || entry.name.startsWith('.') || SKIPPED_DIRS.has(entry.name)) continue;
      // node-gyp-build prebuilds/<platform>-<arch>/: only ours
      if (sub.endsWith('prebuilds') && entry.name !== `${process.platform}-${process.arch}`) continue;
      out.push(...packageFiles(dir, rel));
    } else if (entry.isFile()) {
      if (/^LICEN[CS]E|^NOTICE/i.test(entry.name)) out.push(rel);
      else if (SKIPPED_FILES.test(entry.name)) continue;
      else if (entry.name.endsWith('.node') && !addonLoadedHere(sub, entry.name, names)) continue;
      else out.push(rel);
    }
  }
  return out;
}

function readPackage(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as PackageJson;
}

/** Where Node resolves package `name` from `fromDir` (its own node_modules, then each parent's). */
function resolvePackage(name: string, fromDir: string, root: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    try {
      readPackage(candidate);
      return candidate;
    } catch {
      // not here: look in the parent's node_modules
    }
    if (dir === root || dirname(dir) === dir) return undefined;
  }
}

/** The package directories tidemq loads at run time: its dependencies, transitively. */
function runtimePackages(root: string): string[] {
  const found = new Set<string>();
  const visit = (fromDir: string, pkg: PackageJson, optionalOnly: Set<string>): void => {
    const names = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})];
    for (const name of names) {
      if (SKIPPED_PACKAGES.some((re) => re.test(name))) continue;
      const dir = resolvePackage(name, fromDir, root);
      if (dir === undefined) {
        if (optionalOnly.has(name)) continue; // another platform's optional addon package
        throw new Error(`dependency ${name} of ${pkg.name} is not installed (run npm ci)`);
      }
      if (found.has(dir)) continue;
      found.add(dir);
      const child = readPackage(dir);
      visit(dir, child, new Set(Object.keys(child.optionalDependencies ?? {})));
    }
  };
  const top = readPackage(root);
  visit(root, { ...top, optionalDependencies: {} }, new Set());
  return [...found].sort();
}

/** JavaScript files under dist/, without the build (src/build/) itself. */
function distFiles(root: string): string[] {
  return readdirSync(join(root, 'dist'), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => relative(root, join(e.parentPath, e.name)).split(sep).join('/'))
    .filter((rel) => !rel.startsWith('dist/build/'));
}

export interface StagedPayload {
  /** Paths relative to the stage directory, '/'-separated. */
  files: string[];
  packages: number;
}

/** Copies the payload into `stage` (which must be empty or missing). */
export function stagePayload(root: string, stage: string, commit: string): StagedPayload {
  const files: string[] = [];
  const put = (rel: string, from: string): void => {
    mkdirSync(dirname(join(stage, rel)), { recursive: true });
    copyFileSync(from, join(stage, rel));
    files.push(rel);
  };
  for (const rel of distFiles(root)) put(rel, join(root, rel));
  const packages = runtimePackages(root);
  for (const dir of packages) {
    const base = relative(root, dir).split(sep).join('/');
    for (const rel of packageFiles(dir)) put(`${base}/${rel}`, join(dir, rel));
  }
  // dist/*.js are ES modules by this "type"; src/admin/version.ts reads version and build.
  const top = readPackage(root);
  const pkg = { name: top.name, version: top.version, type: top.type, build: { commit } };
  mkdirSync(stage, { recursive: true });
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
  files.push('package.json');
  return { files, packages: packages.length };
}
