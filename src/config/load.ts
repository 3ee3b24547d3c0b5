// Loads the configuration: embedded defaults < config file < TIDEMQ_* environment < start flags.
// Every layer is reduced to raw `section.key` settings first, so one parser per key checks the
// value whatever its source and the error names the key and where the bad value came from.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { ConfigError, SCHEMA, defaultConfig, isLoopback } from './schema.js';
import type { Config, Section, StartFlags } from './schema.js';
import { parseToml } from './toml.js';
import type { RawSections } from './toml.js';
import type { RawValue, ValueSpec } from './values.js';

export { ConfigError } from './schema.js';

interface Setting {
  raw: RawValue;
  /** Where the value came from, for error messages: a file, a variable or a flag. */
  from: string;
}

type Settings = Map<string, Setting>;

const PORT_KEYS = ['listeners.tcp_port', 'listeners.tls_port', 'listeners.ws_port', 'listeners.wss_port', 'management.port', 'cluster.port'] as const;

const FLAG_KEYS: ReadonlyArray<readonly [keyof StartFlags, string, string]> = [
  ['node', 'node.name', '--node'],
  ['mqttPort', 'listeners.tcp_port', '--mqtt-port'],
  ['tlsPort', 'listeners.tls_port', '--tls-port'],
  ['wsPort', 'listeners.ws_port', '--ws-port'],
  ['wssPort', 'listeners.wss_port', '--wss-port'],
  ['mgmtPort', 'management.port', '--mgmt-port'],
  ['clusterPort', 'cluster.port', '--cluster-port'],
  ['dataDir', 'node.data_dir', '--data-dir'],
  ['cookie', 'node.cookie', '--cookie'],
  ['join', 'cluster.seeds', '--join'],
];


function keySpec(section: string, key: string): ValueSpec<unknown> | undefined {
  if (!Object.hasOwn(SCHEMA, section)) return undefined;
  const keys: Readonly<Record<string, ValueSpec<unknown>>> = SCHEMA[section as Section];
  return Object.hasOwn(keys, key) ? keys[key] : undefined;
}

function readFile(file: string): RawSections {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const ext = extname(file).toLowerCase();
  if (ext === '.toml') return parseToml(text, file);
  if (ext === '.json') return parseJson(text, file);
  throw new ConfigError(`config file ${file}: expected a .toml or .json file`);
}

function isRawValue(v: unknown): v is RawValue {
  if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) return true;
  return Array.isArray(v) && v.every(isRawValue);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(text: string, file: string): RawSections {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: invalid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new ConfigError(`${file}: expected a JSON object of sections`);
  const out: RawSections = {};
  for (const [name, section] of Object.entries(doc)) {
    if (!isObject(section)) throw new ConfigError(`${file}: section "${name}" must be an object`);
    const keys: Record<string, RawValue> = (out[name] = {});
    for (const [key, v] of Object.entries(section)) {
      if (!isRawValue(v)) throw new ConfigError(`${file}: ${name}.${key} must be a string, number, boolean or array of those`);
      keys[key] = v;
    }
  }
  return out;
}

function addFile(settings: Settings, file: string): void {
  for (const [section, keys] of Object.entries(readFile(file))) {
    if (!Object.hasOwn(SCHEMA, section)) throw new ConfigError(`unknown config section [${section}] in ${file}`);
    for (const [key, raw] of Object.entries(keys)) {
      if (!keySpec(section, key)) throw new ConfigError(`unknown config key ${section}.${key} in ${file}`);
      settings.set(`${section}.${key}`, { raw, from: file });
    }
  }
}

function addEnv(settings: Settings, env: NodeJS.ProcessEnv): void {
  for (const [name, raw] of Object.entries(env)) {
    // Variables without `__` (TIDEMQ_API_USER, TIDEMQ_API_PASSWORD of `tidemq ctl`) are not config keys.
    if (raw === undefined || !name.startsWith('TIDEMQ_') || !name.includes('__')) continue;
    const parts = name.slice('TIDEMQ_'.length).toLowerCase().split('__');
    const [section = '', key = ''] = parts;
    if (parts.length !== 2 || !keySpec(section, key)) {
      throw new ConfigError(`unknown config key in environment variable ${name} (expected TIDEMQ_SECTION__KEY)`);
    }
    settings.set(`${section}.${key}`, { raw, from: name });
  }
}

function addFlags(settings: Settings, flags: StartFlags): void {
  for (const [flag, key, name] of FLAG_KEYS) {
    const raw = flags[flag];
    if (raw !== undefined) settings.set(key, { raw, from: name });
  }
  // --join names seed nodes to join, which is the static discovery strategy.
  if (flags.join !== undefined) settings.set('cluster.discovery', { raw: 'static', from: '--join' });
}

function parse<T>(spec: ValueSpec<T>, key: string, setting: Setting): T {
  const v = spec.parse(setting.raw);
  if (v === undefined) {
    throw new ConfigError(`invalid value for ${key}: expected ${spec.expected}, got ${typeof setting.raw === 'number' ? String(setting.raw) : JSON.stringify(setting.raw)} (from ${setting.from})`);
  }
  return v;
}

/** The node configuration; throws ConfigError naming the bad key and the expected form. */
export function loadConfig(flags: StartFlags, env: NodeJS.ProcessEnv): Config {
  const settings: Settings = new Map();
  if (flags.config !== undefined) addFile(settings, flags.config);
  addEnv(settings, env);
  addFlags(settings, flags);

  // The node name comes first: the defaults of data_dir and cluster.port derive from it.
  const nameSetting = settings.get('node.name');
  const config = defaultConfig(nameSetting ? parse(SCHEMA.node.name, 'node.name', nameSetting) : undefined);
  // Keys were checked against SCHEMA, so writing by name keeps the Config shape.
  const sections = config as unknown as Record<string, Record<string, unknown>>;
  for (const [path, setting] of settings) {
    const [section = '', key = ''] = path.split('.');
    const spec = keySpec(section, key);
    const target = sections[section];
    if (spec && target) target[key] = parse(spec, path, setting);
  }

  if (flags.portOffset !== undefined) {
    const offset = flags.portOffset;
    if (!Number.isInteger(offset)) throw new ConfigError(`invalid value for --port-offset: expected an integer, got ${String(offset)}`);
    for (const path of PORT_KEYS) {
      if (settings.has(path)) continue; // only ports left at their default move
      const [section = '', key = ''] = path.split('.');
      const target = sections[section];
      if (!target) continue;
      const moved = (target[key] as number) + offset;
      if (moved < 1 || moved > 65535) throw new ConfigError(`invalid value for --port-offset: ${path} would become ${moved}, outside 1-65535`);
      target[key] = moved;
    }
  }

  validate(config);
  return config;
}

function validate(config: Config): void {
  const { management, listeners, cluster } = config;
  // SPEC 13: the EMQX-compatible default password is only acceptable on loopback.
  if (!isLoopback(management.bind) && management.password === 'public') {
    throw new ConfigError(
      `management.bind is ${management.bind} but management.password is the default "public": set management.password or bind 127.0.0.1`,
    );
  }
  if ((listeners.tls_cert_file === '') !== (listeners.tls_key_file === '')) {
    throw new ConfigError('listeners.tls_cert_file and listeners.tls_key_file: expected both set or both empty');
  }
  if (listeners.tls_verify_peer && listeners.tls_ca_file === '') {
    throw new ConfigError('listeners.tls_ca_file: expected a CA file when listeners.tls_verify_peer is true');
  }
  if (listeners.tls_cn_as_username && !listeners.tls_verify_peer) {
    throw new ConfigError('listeners.tls_cn_as_username: needs listeners.tls_verify_peer = true (an unverified CN is no identity)');
  }
  if (cluster.handshake_timeout <= 0) throw new ConfigError('cluster.handshake_timeout: expected a duration above 0 (no peer could finish its handshake)');
  if ((cluster.tls_cert_file === '') !== (cluster.tls_key_file === '')) {
    throw new ConfigError('cluster.tls_cert_file and cluster.tls_key_file: expected both set or both empty');
  }
  if (cluster.tls_verify_peer && (cluster.tls_ca_file === '' || cluster.tls_cert_file === '')) {
    throw new ConfigError('cluster.tls_verify_peer: needs cluster.tls_cert_file, cluster.tls_key_file and cluster.tls_ca_file (the cluster CA)');
  }
  if (cluster.discovery === 'static' && cluster.seeds.length === 0) {
    throw new ConfigError('cluster.seeds: expected at least one node name when cluster.discovery is static');
  }
  if (cluster.discovery === 'dns' && cluster.dns_name === '') {
    throw new ConfigError('cluster.dns_name: expected a DNS name when cluster.discovery is dns');
  }
  // The two sides of a healed partition always merge; leaving them apart is not implemented, and
  // a setting that would be silently ignored is refused instead.
  if (!cluster.autoheal) throw new ConfigError('cluster.autoheal: only true is supported (healed partitions always merge)');
}
