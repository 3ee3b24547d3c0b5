// Runs the C load generator and reads its RESULT line.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { own, stop } from './proc.js';

export type Result = Record<string, string>;

/** Parses `RESULT mode=conn key=value ...`; undefined for any other line. */
export function parseResult(line: string): Result | undefined {
  if (!line.startsWith('RESULT ')) return undefined;
  const out: Result = {};
  for (const field of line.slice(7).trim().split(' ')) {
    const eq = field.indexOf('=');
    if (eq > 0) out[field.slice(0, eq)] = field.slice(eq + 1);
  }
  return out;
}

/** A numeric field of a RESULT; NaN when absent. */
export function num(r: Result, key: string): number {
  const v = r[key];
  return v === undefined ? Number.NaN : Number(v);
}

export interface NbenchRun {
  result: Result;
  lines: string[];
  stderr: string;
}

export interface NbenchOptions {
  timeoutMs: number;
  /** Called for each stdout line; `terminate` asks nbench to finish (SIGTERM) and report. */
  onLine?: (line: string, terminate: () => void) => void;
}

export function runNbench(bin: string, args: string[], opts: NbenchOptions): Promise<NbenchRun> {
  return new Promise((resolve, reject) => {
    const child = own(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const lines: string[] = [];
    let stderr = '';
    let result: Result | undefined;
    const timer = setTimeout(() => {
      stderr += `\nnbench timed out after ${opts.timeoutMs} ms`;
      void stop(child, 3000);
    }, opts.timeoutMs);
    const terminate = (): void => {
      child.kill('SIGTERM');
    };
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      result = parseResult(line) ?? result;
      opts.onLine?.(line, terminate);
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 10000) stderr += d.toString();
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (result) resolve({ result, lines, stderr });
      else reject(new Error(`nbench ${args[0] ?? ''} exited ${String(code)} without a RESULT line: ${stderr.trim()}`));
    });
  });
}
