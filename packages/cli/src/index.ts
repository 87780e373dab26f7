/** @ditfa/cli — the `ditfa` command as a library (for tests and embedding): `runCli(argv)`. */
export { buildProgram, runCli, type RunIo } from './program.js';
export { ExitCode } from './errors.js';
