// Logging: pino JSON lines on stdout for machines; on a terminal, a compact human form written by
// a small destination stream (no pino-pretty: one less dependency and no worker thread).
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { Config } from './config/schema.js';

export type { Logger } from 'pino';

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const LEVEL_COLORS: Readonly<Record<number, string>> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31m' };
const RESET = '\x1b[0m';
/** Bytes of log lines buffered for a slow stdout before new lines are dropped (bounded, like all else). */
const LOG_BUFFER_MAX = 16 * 1024 * 1024;

function fieldValue(v: unknown): string {
  return typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
}

/** One pino JSON line as `HH:MM:SS.mmm LEVEL msg key=value ...`, an error's stack indented below. */
export function formatLogLine(line: string, color: boolean): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line; // not ours: pass it through unchanged
  }
  const { time, level, msg, pid: _pid, hostname: _hostname, err, ...fields } = rec;
  const stamp = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  const num = typeof level === 'number' ? level : 30;
  const name = (LEVEL_NAMES[num] ?? String(level)).padEnd(5);
  const paint = color ? LEVEL_COLORS[num] : undefined;
  let out = `${stamp} ${paint ? paint + name + RESET : name} ${typeof msg === 'string' ? msg : ''}`;
  for (const [k, v] of Object.entries(fields)) out += ` ${k}=${fieldValue(v)}`;
  if (typeof err === 'object' && err !== null) {
    const e = err as { message?: unknown; stack?: unknown };
    out += `\n    ${String(e.stack ?? e.message).replaceAll('\n', '\n    ')}`;
  }
  return `${out}\n`;
}

/** Logs at `level`: JSON lines to `out`, or the compact form when `out` is a terminal. */
export function createLogger(level: Config['log']['level'], out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): Logger {
  if (!out.isTTY) return pino({ level }, out === process.stdout ? pino.destination({ dest: 1, sync: false, maxLength: LOG_BUFFER_MAX }) : out);
  const human: DestinationStream = {
    write(line: string) {
      out.write(formatLogLine(line, true));
    },
  };
  return pino({ level }, human);
}
