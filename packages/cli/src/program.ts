import { Command, CommanderError, InvalidArgumentError as CommanderInvalidArgument, Option } from 'commander';
import { bench } from './commands/bench.js';
import { calibrate } from './commands/calibrate.js';
import { demo } from './commands/demo.js';
import { generate } from './commands/generate.js';
import { planShow } from './commands/plan-show.js';
import { THRESHOLDS, type ThresholdName } from '@ditfa/planner';
import { createProgress } from './progress.js';
import { bundledModelDir } from './session.js';
import { ExitCode, UsageError, classify } from './errors.js';
import { createOutput } from './output.js';

export interface RunIo {
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
}

/** Parses a non-negative number option value. */
export function nonNegative(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new CommanderInvalidArgument(`expected a non-negative number for ${name} but received ${JSON.stringify(value)}`);
    return n;
  };
}

/** Parses a non-negative integer option value. */
export function nonNegativeInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new CommanderInvalidArgument(`expected a non-negative integer for ${name} but received ${JSON.stringify(value)}`);
    return n;
  };
}

/** Collects repeated or space-separated class ids. */
export function classIds(value: string, previous: number[] | undefined): number[] {
  const ids = value.split(/[ ,]+/).filter(Boolean).map((v) => {
    if (!/^\d+$/.test(v)) throw new CommanderInvalidArgument(`expected class ids (non-negative integers) but received ${JSON.stringify(value)}`);
    return Number(v);
  });
  return [...(previous ?? []), ...ids];
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

  const json = (): boolean => Boolean(program.opts().json);
  const output = () => createOutput(json(), stdout, stderr);
  const progress = () => createProgress(!json() && Boolean((stderr as NodeJS.WriteStream).isTTY), stderr);
  const threads = () => new Option('--threads <n>', 'onnxruntime intra-op threads (default: all cores)').argParser(positiveInt('--threads'));
  const model = () => new Option('--model <dir>', 'model directory (weights.safetensors + config.json)').default(bundledModelDir(), 'the bundled models/fashion-dit');

  program
    .command('calibrate')
    .description("search a compression plan (the paper's greedy Algorithm 1) on calibration inputs")
    .addOption(model())
    .requiredOption('--threshold <D1..D6|number>', 'loss budget δ: D1..D6 (0.025 … 0.15) or a number')
    .addOption(new Option('--steps <n>', 'denoising steps').argParser(positiveInt('--steps')).default(50))
    .option('--sampler <name>', 'dpm++, ddim or iddpm', 'dpm++')
    .addOption(new Option('--guidance <scale>', 'classifier-free guidance scale').argParser(nonNegative('--guidance')).default(4))
    .addOption(new Option('--calib <n>', 'calibration samples (random class labels)').argParser(positiveInt('--calib')).default(8))
    .addOption(new Option('--seed <n>', 'calibration seed').argParser(nonNegativeInt('--seed')).default(3))
    .addOption(new Option('--window <tokens>', 'window size per side (default L/8)').argParser(nonNegativeInt('--window')))
    .addOption(new Option('--mode <mode>', 'search mode').choices(['prefix', 'naive']).default('prefix'))
    .addOption(threads())
    .requiredOption('--out <plan.json>', 'where to write the plan')
    .addHelpText('after', '\nExamples:\n  $ ditfa calibrate --threshold D3 --out plan.json\n  $ ditfa calibrate --model models/fashion-dit --threshold 0.05 --steps 20 --out plan-d2.json')
    .action(async (o) => {
      await calibrate(o, output(), progress());
    });

  program
    .command('generate')
    .description('generate samples, raw or under a plan, and write them as one PNG grid')
    .addOption(model())
    .option('--plan <plan.json>', 'a plan made by `ditfa calibrate` for this model and settings')
    .option('--class <ids...>', 'class ids (DiT); repeated to fill --batch', classIds)
    .option('--caption-embeddings <file>', 'PixArt-Σ: safetensors with "captions" [N, Lt, C] and optional "mask"')
    .option('--vae-decoder <file.onnx>', 'ONNX VAE decoder (latent_sample → sample) for latent-space models')
    .addOption(new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--steps <n>', 'denoising steps').argParser(positiveInt('--steps')).default(50))
    .addOption(new Option('--guidance <scale>', 'classifier-free guidance scale').argParser(nonNegative('--guidance')).default(4))
    .addOption(new Option('--batch <n>', 'samples').argParser(positiveInt('--batch')).default(1))
    .option('--sampler <name>', 'dpm++, ddim or iddpm', 'dpm++')
    .addOption(threads())
    .requiredOption('--out <file.png>', 'where to write the sample grid')
    .addHelpText('after', '\nExamples:\n  $ ditfa generate --class 3 --out bag.png\n  $ ditfa generate --class 0 1 2 --batch 6 --plan plan.json --steps 50 --out grid.png')
    .action(async (o) => {
      await generate(o, output(), progress());
    });

  program
    .command('bench')
    .description('the same seeds raw and under a plan: latency (attention / other), FLOPs, cache, quality')
    .addOption(model())
    .requiredOption('--plan <plan.json>', 'the plan to measure (its steps, sampler and guidance are used)')
    .option('--class <ids...>', 'class ids (default 0..9)', classIds)
    .addOption(new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--batch <n>', 'samples').argParser(positiveInt('--batch')).default(10))
    .addOption(threads())
    .addHelpText('after', '\nExamples:\n  $ ditfa bench --plan plan.json\n  $ ditfa --json bench --plan plan.json --batch 20 > bench.json')
    .action(async (o) => {
      await bench(o, output(), progress());
    });

  program
    .command('demo')
    .description("the paper's Table 1 on the bundled model: plans D1..D6, the same seeds raw and under each, a report")
    .option('--model <dir>', 'another model directory (default: the bundled one)')
    .option('--out <dir>', 'report folder', 'ditfa-demo')
    .addOption(new Option('--steps <n>', 'denoising steps').argParser(positiveInt('--steps')).default(20))
    .addOption(new Option('--samples <n>', 'samples per run (classes in turn)').argParser(positiveInt('--samples')).default(20))
    .addOption(new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--guidance <scale>', 'guidance scale').argParser(nonNegative('--guidance')).default(4))
    .addOption(new Option('--calib <n>', 'calibration samples when a plan must be calibrated').argParser(positiveInt('--calib')).default(8))
    .addOption(new Option('--levels <names...>', 'thresholds to run').choices(Object.keys(THRESHOLDS)).default(Object.keys(THRESHOLDS)))
    .option('--recalibrate', 'calibrate every plan again instead of using shipped or cached ones', false)
    .addOption(threads())
    .addHelpText('after', '\nExamples:\n  $ ditfa demo\n  $ ditfa demo --levels D2 D6 --samples 10 --out /tmp/demo\n  $ ditfa demo --recalibrate')
    .action(async (o) => {
      await demo({ ...o, levels: o.levels as ThresholdName[] }, output(), progress());
    });

  const plan = program.command('plan').description('inspect plans');
  plan
    .command('show')
    .description('summarise a plan and optionally draw its layer × step heatmap')
    .argument('<plan.json>', 'a plan made by `ditfa calibrate`')
    .option('--png <file>', 'write the Figure-5-style heatmap PNG here')
    .addOption(new Option('--cell <pixels>', 'heatmap cell size in pixels').argParser(positiveInt('--cell')).default(10))
    .option('--methods <names...>', 'plugin method names the plan may use beyond the built-ins')
    .addHelpText('after', '\nExamples:\n  $ ditfa plan show plan.json\n  $ ditfa plan show plan.json --png plan.png\n  $ ditfa plan show plan.json --json')
    .action(async (file: string, options: { png?: string; cell?: number; methods?: string[] }) => {
      await planShow(file, options, output());
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
