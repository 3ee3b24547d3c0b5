// `tidemq start`: load the configuration (a bad one exits 2 before anything starts), start the
// node, and on SIGTERM/SIGINT close it gracefully; a second signal exits at once. A node with a
// launcher (a member of `--nodes`, or relaunched with V8 flags) leaves SIGINT and the second
// signal to it.
import { constants } from 'node:os';
import { ConfigError, loadConfig } from '../config/load.js';
import type { StartFlags } from '../config/schema.js';
import { createLogger } from '../log.js';
import { memberFlags, memberIndex, members, runLauncher } from './host-nodes.js';
import { relaunched } from './v8-flags.js';

/** Exit code of a bad configuration (SPEC 13). */
const EXIT_CONFIG = 2;

/** @param nodes `--nodes`: this process launches that many members, or is one of them (host-nodes.ts). */
export async function runStart(flags: StartFlags, env: NodeJS.ProcessEnv = process.env, nodes?: number): Promise<void> {
  const member = nodes === undefined ? undefined : memberIndex(env);
  let config;
  try {
    config = loadConfig(flags, env);
    if (member !== undefined && nodes !== undefined) {
      const all = members(config, nodes);
      config = loadConfig(memberFlags(flags, all, all[member - 1] as (typeof all)[number]), env);
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`tidemq: ${err.message}\n`);
    process.exitCode = EXIT_CONFIG;
    return;
  }
  const log = createLogger(config.log.level);
  if (nodes !== undefined && member === undefined) return runLauncher(config, nodes, log);
  // Loaded here, not at the top: other commands (passwd, --help) need none of the broker.
  const { startNode } = await import('../node.js');
  let node: Awaited<ReturnType<typeof startNode>> | undefined;
  let stopping = false;
  const close = (n: NonNullable<typeof node>): void => {
    n.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  const launched = member !== undefined || relaunched();
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A launched node hears its launcher and often its process group (timeout, systemd): one stop is enough.
      if (launched) return;
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(128 + constants.signals[signal]);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    if (node !== undefined) close(node); // else as soon as it has started
  };
  // Before the node starts: its listeners accept before startNode returns, and a SIGTERM then
  // must still be a graceful stop, not the default kill.
  process.on('SIGTERM', stop);
  // A launched node stops when its launcher says so: Ctrl-C reaches the whole process group, and
  // the launcher turns it into one SIGTERM per node.
  if (!launched) process.on('SIGINT', stop);
  else process.on('SIGINT', () => log.debug('SIGINT: the launcher stops this node'));
  try {
    // A stop asked over the management API takes the path of SIGTERM.
    node = await startNode(config, log, { requestStop: () => stop('SIGTERM') });
  } catch (err) {
    // A bad password or ACL file is found while the node is built: still a configuration error.
    log.fatal({ err }, 'tidemq failed to start');
    process.stderr.write(`tidemq: ${(err as Error).message}\n`);
    process.exit(err instanceof ConfigError ? EXIT_CONFIG : 1);
  }
  if (stopping) close(node);
}
