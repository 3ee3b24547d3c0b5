// The command line's entry for bin/tidemq and the standalone binary. A single node's `start` runs
// again with the V8 flags when the process lacks them (v8-flags.ts), before the broker's modules
// are loaded, so the process left waiting holds little; everything else loads main.ts and runs.
import { needsV8Flags, relaunched, relaunchWithV8Flags } from './v8-flags.js';

/** Runs one command line (without `node` and the script path); sets process.exitCode. */
export async function main(args: string[]): Promise<void> {
  if (!relaunched() && needsV8Flags(args) && (await relaunchWithV8Flags())) return;
  const cli = await import('./main.js');
  await cli.main(args);
}
