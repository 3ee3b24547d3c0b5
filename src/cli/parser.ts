// What the two yargs parsers (`tidemq` and `tidemq ctl`) share: strict, -h/--help, no exit of
// their own, and usage problems thrown as one error type that exits 2.
import yargs, { type Argv } from 'yargs';

/** Exit code of a command line yargs rejects (unknown flag, missing argument). */
export const EXIT_USAGE = 2;

/** A command line yargs rejects. */
export class UsageError extends Error {}

/** The shared settings on a parser; parse it inside a try that catches UsageError. */
export function strictParser<T>(cli: Argv<T>): Argv<T> {
  return cli
    .strict()
    .help()
    .alias('help', 'h')
    .wrap(Math.min(100, yargs().terminalWidth()))
    .exitProcess(false)
    .fail((msg, err) => {
      // yargs reports usage problems as a message or its own YError; errors from handlers pass on.
      if (err && err.name !== 'YError') throw err;
      throw new UsageError(msg ?? err.message);
    });
}
