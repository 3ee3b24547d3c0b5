// `tidemq start`: load the configuration (a bad one exits 2 before anything starts), start the
// node, and on SIGTERM/SIGINT close it gracefully; a second signal exits at once.
import { constants } from 'node:os';
import { ConfigError, loadConfig } from '../config/load.js';
import type { StartFlags } from '../config/schema.js';
import { createLogger } from '../log.js';

/** Exit code of a bad configuration (SPEC 13). */
const EXIT_CONFIG = 2;

export async function runStart(flags: StartFlags, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let config;
  try {
    config = loadConfig(flags, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`tidemq: ${err.message}\n`);
    process.exitCode = EXIT_CONFIG;
    return;
  }
  const log = createLogger(config.log.level);
  // Loaded here, not at the top: other commands (passwd, --help) need none of the broker.
  const { startNode } = await import('../node.js');
  let node: Awaited<ReturnType<typeof startNode>> | undefined;
  try {
    // A stop asked over the management API takes the path of SIGTERM.
    node = await startNode(config, log, { requestStop: () => stop('SIGTERM') });
  } catch (err) {
    // A bad password or ACL file is found while the node is built: still a configuration error.
    log.fatal({ err }, 'tidemq failed to start');
    process.stderr.write(`tidemq: ${(err as Error).message}\n`);
    process.exit(err instanceof ConfigError ? EXIT_CONFIG : 1);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(128 + constants.signals[signal]);
    }
    stopping = true;
    log.info({ signal }, 'stopping');
    if (node === undefined) process.exit(128 + constants.signals[signal]);
    node.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
