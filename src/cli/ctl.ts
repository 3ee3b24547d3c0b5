// `tidemq ctl [--api URL] [--user U] [--password P] [--config FILE] <command>`: talks to a node's
// management API (/api/v5, real status codes) with fetch. Each command family is a module in
// FAMILIES; a command gets a CtlContext to call the API and print.
import yargs, { type Argv } from 'yargs';
import { ApiError, errorForms, fromV5 } from '../admin/errors.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { brokerCommands } from './ctl-broker.js';
import { clientCommands } from './ctl-clients.js';
import { clusterCommands } from './ctl-cluster.js';
import { nodeCommands } from './ctl-node.js';
import { rebalanceCommands } from './ctl-rebalance.js';
import { EXIT_USAGE, strictParser, UsageError } from './parser.js';

const DEFAULT_API = 'http://127.0.0.1:8081';
/** Exit code of a failed command. */
const EXIT_FAILED = 1;
/** A node that does not answer within this is reported unreachable. */
const REQUEST_TIMEOUT_MS = 30_000;

/** A command's failure: `tidemq ctl: <message>` on stderr, exit 1 (or the code given). */
export class CtlError extends Error {
  /** The API's error when the node answered with one. */
  readonly apiError: ApiError | undefined;
  readonly exitCode: number;
  constructor(message: string, apiError?: ApiError, exitCode = EXIT_FAILED) {
    super(message);
    this.name = 'CtlError';
    this.apiError = apiError;
    this.exitCode = exitCode;
  }
}

/** A failure the command has already printed in its own (EMQX-compatible) words: exit 1, nothing added. */
export class CtlReported extends CtlError {}

export interface CtlContext {
  /** The API base URL, e.g. http://127.0.0.1:8081. */
  readonly api: string;
  /** True when --json was given: print the API's JSON instead of text. */
  readonly json: boolean;
  /** GET/POST/PUT/DELETE on `/api/v5<path>`: the parsed JSON body (undefined for 204), or a CtlError. */
  request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown>;
  print(line: string): void;
  printJson(value: unknown): void;
}

export interface CtlCommand {
  /** yargs command spec, e.g. `show <clientid>`. */
  readonly command: string;
  readonly describe: string;
  /** Read commands take --json. */
  readonly read: boolean;
  readonly builder?: (y: Argv) => Argv;
  run(ctx: CtlContext, argv: Record<string, unknown>): Promise<void>;
}

export interface CtlFamily {
  readonly name: string;
  readonly describe: string;
  readonly commands: readonly CtlCommand[];
}

/** Every command family, each a module. */
const FAMILIES: readonly CtlFamily[] = [brokerCommands, clientCommands, clusterCommands, nodeCommands, rebalanceCommands];

export interface CtlIo {
  readonly env: NodeJS.ProcessEnv;
  out(text: string): void;
  err(text: string): void;
}

const processIo: CtlIo = { env: process.env, out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) };

/** The flags every command has. */
interface GlobalFlags {
  api?: string | undefined;
  user?: string | undefined;
  password?: string | undefined;
  config?: string | undefined;
}

interface Connection {
  api: string;
  user: string;
  password: string;
}

/** --api, else the config file's management address, else the default; credentials likewise. */
function connection(argv: GlobalFlags, env: NodeJS.ProcessEnv): Connection {
  let api = DEFAULT_API;
  let user = 'admin';
  let password = 'public';
  if (argv.config !== undefined) {
    const m = loadConfig({ config: argv.config }, env).management;
    const host = m.bind === '0.0.0.0' ? '127.0.0.1' : m.bind === '::' ? '[::1]' : m.bind.includes(':') ? `[${m.bind}]` : m.bind;
    api = `http://${host}:${m.port}`;
    user = m.username;
    password = m.password;
  }
  return {
    api: (argv.api ?? api).replace(/\/+$/, ''),
    // An empty variable counts as unset.
    user: argv.user ?? (env.TIDEMQ_API_USER || undefined) ?? user,
    password: argv.password ?? (env.TIDEMQ_API_PASSWORD || undefined) ?? password,
  };
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

function context(conn: Connection, json: boolean, io: CtlIo): CtlContext {
  const authorization = `Basic ${Buffer.from(`${conn.user}:${conn.password}`).toString('base64')}`;
  return {
    api: conn.api,
    json,
    print: (line) => io.out(`${line}\n`),
    printJson: (value) => io.out(`${JSON.stringify(value, null, 2)}\n`),
    async request(method, path, body) {
      const url = `${conn.api}/api/v5${path}`;
      let res: Response;
      let text: string;
      try {
        res = await fetch(url, {
          method,
          headers: body === undefined ? { authorization } : { authorization, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        text = await res.text();
      } catch (err) {
        throw new CtlError(`cannot reach ${conn.api}: ${describeFetchError(err)}`);
      }
      let parsed: unknown;
      try {
        parsed = text === '' ? undefined : JSON.parse(text);
      } catch {
        throw new CtlError(`${conn.api} answered ${method} ${path} with HTTP ${res.status} and no JSON: ${text.slice(0, 200)}`);
      }
      if (res.ok) return parsed;
      const { code, message } = (parsed ?? {}) as { code?: unknown; message?: unknown };
      const apiError = fromV5(code, typeof message === 'string' ? message : `HTTP ${res.status}`);
      if (apiError === undefined) throw new CtlError(`${method} ${url}: HTTP ${res.status}: ${text.slice(0, 200)}`);
      const cli = errorForms(apiError).cli;
      if (apiError.kind === 'unauthorized') {
        throw new CtlError(`${cli} for ${conn.api}: set --user/--password, TIDEMQ_API_USER/TIDEMQ_API_PASSWORD or --config`, apiError);
      }
      throw new CtlError(cli, apiError);
    },
  };
}

/** Runs `tidemq ctl <args>`; returns the exit code. */
export async function runCtl(args: readonly string[], io: CtlIo = processIo): Promise<number> {
  let cli = strictParser(yargs([...args]))
    .scriptName('tidemq ctl')
    .usage('$0 [--api URL] [--user U] [--password P] <command>')
    .option('api', { type: 'string', describe: `management API URL (${DEFAULT_API})`, requiresArg: true })
    .option('user', { type: 'string', describe: 'API user (else TIDEMQ_API_USER, the config file, admin)', requiresArg: true })
    .option('password', { type: 'string', describe: 'API password (else TIDEMQ_API_PASSWORD, the config file, public)', requiresArg: true })
    .option('config', { type: 'string', describe: "config file whose management section gives the URL and credentials", requiresArg: true });
  let exitCode = 0;
  for (const family of FAMILIES) {
    cli = cli.command(family.name, family.describe, (y) => {
      for (const cmd of family.commands) {
        y.command(
          cmd.command,
          cmd.describe,
          (b) => {
            const withJson = cmd.read ? b.option('json', { type: 'boolean', describe: "print the API's JSON" }) : b;
            return cmd.builder === undefined ? withJson : cmd.builder(withJson);
          },
          async (argv) => {
            const ctx = context(connection(argv as GlobalFlags, io.env), argv.json === true, io);
            try {
              await cmd.run(ctx, argv);
            } catch (err) {
              if (!(err instanceof CtlError)) throw err;
              if (!(err instanceof CtlReported)) io.err(`tidemq ctl: ${err.message}\n`);
              exitCode = err.exitCode;
            }
          },
        );
      }
      return y.demandCommand(1, `a ${family.name} command is needed`);
    });
  }
  try {
    await cli
      .demandCommand(1, `a command is needed: ${FAMILIES.map((f) => f.name).join(', ')}`)
      .version(false)
      .parseAsync();
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`tidemq ctl: ${err.message}\nRun 'tidemq ctl --help' for usage.\n`);
      return EXIT_USAGE;
    }
    if (err instanceof ConfigError) {
      io.err(`tidemq ctl: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  return exitCode;
}
