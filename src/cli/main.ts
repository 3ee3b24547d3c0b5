// The `tidemq` command line (SPEC 13): `start`, `passwd`, and `ctl` (its own parser, ctl.ts). entry.ts calls main().
import yargs from 'yargs';
import { VERSION_LINE } from '../admin/version.js';
import type { StartFlags } from '../config/schema.js';
import { runCtl } from './ctl.js';
import { k8sCommands } from './k8s-manifests.js';
import { MAX_NODES, parseNodeCount } from './host-nodes.js';
import { EXIT_USAGE, strictParser, UsageError } from './parser.js';
import { CliError, obtainPassword, setPassword } from './passwd.js';
import { runStart } from './start.js';

/** Runs one command line (without `node` and the script path); sets process.exitCode. */
export async function main(args: string[]): Promise<void> {
  if (args[0] === 'ctl') return void (process.exitCode = await runCtl(args.slice(1))); // its own parser: ctl.ts
  const cli = strictParser(yargs(args))
    .scriptName('tidemq')
    .usage('$0 <command> [options]')
    .command(
      'start',
      'run a tidemq node',
      (y) =>
        y
          .option('config', { type: 'string', describe: 'config file (.toml or .json)', requiresArg: true })
          .option('node', { type: 'string', describe: 'node name, NAME@HOST', requiresArg: true })
          .option('port-offset', { type: 'number', describe: 'added to every port left at its default', requiresArg: true })
          .option('mqtt-port', { type: 'number', describe: 'MQTT/TCP port (1883)', requiresArg: true })
          .option('tls-port', { type: 'number', describe: 'MQTT/TLS port (8883)', requiresArg: true })
          .option('ws-port', { type: 'number', describe: 'MQTT/WebSocket port (8083)', requiresArg: true })
          .option('wss-port', { type: 'number', describe: 'MQTT/WSS port (8084)', requiresArg: true })
          .option('mgmt-port', { type: 'number', describe: 'management HTTP port (8081)', requiresArg: true })
          .option('cluster-port', { type: 'number', describe: 'cluster port (4370 + node number)', requiresArg: true })
          .option('data-dir', { type: 'string', describe: 'data directory (./data/<node name>)', requiresArg: true })
          .option('join', { type: 'string', array: true, describe: 'seed nodes to join, NAME@HOST ...', requiresArg: true })
          .option('cookie', { type: 'string', describe: 'shared cluster secret', requiresArg: true })
          .option('nodes', { type: 'string', describe: 'run N joined nodes sharing the MQTT ports (auto: one per core)', requiresArg: true })
          .epilog('Configuration: defaults < config file < TIDEMQ_SECTION__KEY environment < flags.'),
      async (argv) => {
        const flags: StartFlags = {};
        if (argv.config !== undefined) flags.config = argv.config;
        if (argv.node !== undefined) flags.node = argv.node;
        if (argv.portOffset !== undefined) flags.portOffset = argv.portOffset;
        if (argv.mqttPort !== undefined) flags.mqttPort = argv.mqttPort;
        if (argv.tlsPort !== undefined) flags.tlsPort = argv.tlsPort;
        if (argv.wsPort !== undefined) flags.wsPort = argv.wsPort;
        if (argv.wssPort !== undefined) flags.wssPort = argv.wssPort;
        if (argv.mgmtPort !== undefined) flags.mgmtPort = argv.mgmtPort;
        if (argv.clusterPort !== undefined) flags.clusterPort = argv.clusterPort;
        if (argv.dataDir !== undefined) flags.dataDir = argv.dataDir;
        if (argv.join !== undefined) flags.join = argv.join;
        if (argv.cookie !== undefined) flags.cookie = argv.cookie;
        let nodes: number | undefined;
        if (argv.nodes !== undefined) {
          nodes = parseNodeCount(argv.nodes);
          if (nodes === undefined) throw new UsageError(`invalid --nodes value: ${argv.nodes} (expected 1-${MAX_NODES} or auto)`);
        }
        await runStart(flags, process.env, nodes);
      },
    )
    .command(
      'passwd <file> <user>',
      "add or change a user's password in a password file",
      (y) =>
        y
          .positional('file', { type: 'string', demandOption: true, describe: 'password file (created with mode 0600)' })
          .positional('user', { type: 'string', demandOption: true, describe: 'user name' })
          .option('password', { type: 'string', describe: 'the password (else one line of stdin, else a prompt)', requiresArg: true })
          .epilog('Hashes are salted scrypt; the file is auth.password_file of the config.'),
      async (argv) => {
        const password = await obtainPassword(argv.password);
        const added = await setPassword(argv.file, argv.user, password);
        process.stdout.write(`${added ? 'Added' : 'Changed'} the password of ${argv.user} in ${argv.file}\n`);
      },
    )
    .command('k8s', 'Kubernetes: the objects of a tidemq cluster (k8s manifests)', k8sCommands)
    .demandCommand(1, 'a command is needed: start, passwd or k8s')
    .version(VERSION_LINE);
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tidemq: ${err.message}\nRun 'tidemq --help' for usage.\n`);
      process.exitCode = EXIT_USAGE;
    } else if (err instanceof CliError) {
      process.stderr.write(`tidemq: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      throw err;
    }
  }
}
