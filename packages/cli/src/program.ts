import { Command, CommanderError, InvalidArgumentError as CommanderInvalidArgument, Option } from 'commander';
import { planShow } from './commands/plan-show.js';
import { ExitCode, UsageError, classify } from './errors.js';
import { createOutput } from './output.js';

export interface RunIo {
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

/** Parses a positive integer option value. */
export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) {
      throw new CommanderInvalidArgument(`expected a positive integer for ${name} but received ${JSON.stringify(value)}`);
    }
    return n;
  };
}

export function buildProgram(io: RunIo = {}): Command {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const program = new Command('ditfa')
    .description('Faster diffusion transformers by attention compression (DiTFastAttn) from Node.js.')
    .option('--json', 'print results as JSON (for scripts)')
    .configureOutput({ writeOut: (s) => stdout.write(s), writeErr: (s) => stderr.write(s) })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  const plan = program.command('plan').description('inspect plans');
  plan
    .command('show')
    .description('summarise a plan and optionally draw its block × step heatmap')
    .argument('<plan.json>', 'a plan made by `ditfa calibrate`')
    .option('--png <file>', 'write the Figure-5-style heatmap PNG here')
    .addOption(new Option('--cell <pixels>', 'heatmap cell size in pixels').argParser(positiveInt('--cell')).default(10))
    .option('--methods <names...>', 'plugin method names the plan may use beyond the built-ins')
    .addHelpText('after', '\nExamples:\n  $ ditfa plan show plan.json\n  $ ditfa plan show plan.json --png plan.png\n  $ ditfa plan show plan.json --json')
    .action(async (file: string, options: { png?: string; cell?: number; methods?: string[] }) => {
      await planShow(file, options, createOutput(Boolean(program.opts().json), stdout, stderr));
    });

  return program;
}

/** Runs the CLI on `argv` (without node and script) and returns the exit code. Never throws. */
export async function runCli(argv: readonly string[], io: RunIo = {}): Promise<number> {
  const stderr = io.stderr ?? process.stderr;
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return ExitCode.Ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version are "errors" to commander; usage mistakes were already printed by it
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.help' || error.code === 'commander.version' ? ExitCode.Ok : ExitCode.Usage;
    }
    const { code, user } = classify(error);
    if (user) stderr.write(`ditfa: ${(error as Error).message}\n`);
    else stderr.write(`ditfa: unexpected error\n${(error as Error)?.stack ?? String(error)}\n`);
    return code;
  }
}

export { UsageError };
