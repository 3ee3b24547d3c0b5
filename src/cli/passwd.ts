// `tidemq passwd FILE USER`: adds or changes one user's password in a password file.
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hashPassword, parsePasswordFile, setUserLine, userNameError } from '../broker/passwords.js';
import { ConfigError } from '../config/schema.js';

/** A failure of a CLI command, printed as `tidemq: <message>`; the command exits 1. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** A password longer than this is surely a mistake (a file piped in instead of a line). */
const MAX_PASSWORD_BYTES = 4096;

/** Sets `user`'s password in `file` (created with mode 0600); returns whether the user was new. */
export async function setPassword(file: string, user: string, password: string): Promise<boolean> {
  const nameError = userNameError(user);
  if (nameError !== undefined) throw new CliError(`bad user name ${JSON.stringify(user)}: ${nameError}`);
  if (password === '') throw new CliError('empty password');
  if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) throw new CliError(`password longer than ${MAX_PASSWORD_BYTES} bytes`);
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new CliError(`cannot read ${file}: ${code ?? String(err)}`);
  }
  let existing: ReadonlyMap<string, unknown>;
  try {
    existing = parsePasswordFile(text, file);
  } catch (err) {
    // Rewriting a file the broker cannot read would hide the problem; report it instead.
    if (err instanceof ConfigError) throw new CliError(err.message);
    throw err;
  }
  const line = await hashPassword(Buffer.from(password));
  // Write a new file and rename it over the old one: a crash never leaves a half-written file.
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, setUserLine(text, user, line), { mode: 0o600, flag: 'wx' });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new CliError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return !existing.has(user);
}

/** The first line of a piped stdin (without its line end). */
async function readLine(input: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of input) {
    text += chunk.toString();
    const nl = text.indexOf('\n');
    if (nl >= 0) return text.slice(0, nl).replace(/\r$/, '');
    if (text.length > MAX_PASSWORD_BYTES) break;
  }
  return text.replace(/\r$/, '');
}

/** Reads a line from a terminal without echoing it. */
function promptHidden(prompt: string, input: NodeJS.ReadStream, output: NodeJS.WritableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let typed = '';
    const done = (err?: Error): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: Buffer | string): void => {
      for (const ch of chunk.toString()) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done();
        if (ch === '\u0003') return done(new CliError('interrupted'));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    output.write(prompt);
    input.setRawMode(true);
    input.on('data', onData);
    input.resume();
  });
}

/** The password from --password, else a line of a piped stdin, else typed twice at a prompt. */
export async function obtainPassword(
  flag: string | undefined,
  input: NodeJS.ReadStream = process.stdin,
  output: NodeJS.WritableStream = process.stderr,
): Promise<string> {
  if (flag !== undefined) return flag;
  if (!input.isTTY) return readLine(input);
  const first = await promptHidden('Password: ', input, output);
  const again = await promptHidden('Password (again): ', input, output);
  if (first !== again) throw new CliError('the passwords do not match');
  return first;
}
