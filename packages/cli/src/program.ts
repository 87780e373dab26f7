import { Command, CommanderError, InvalidArgumentError as CommanderInvalidArgument, Option } from 'commander';
import { bench } from './commands/bench.js';
import { calibrate } from './commands/calibrate.js';
import { IMAGE_CHUNK, demo } from './commands/demo.js';
import { VIDEO_CHUNK } from './commands/demo-video.js';
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
  const model = () => new Option('--model <dir>', 'model directory (weights + config.json): DiT, PixArt-Σ or Open-Sora STDiT2/STDiT3').default(bundledModelDir(), 'the bundled models/fashion-dit');
  // Open-Sora: the pixel video (default: the version's official 240p size) and the fps micro-condition
  const video = (cmd: Command): Command =>
    cmd
      .addOption(new Option('--frames <n>', 'Open-Sora: frames (default 16 for v1.1, 51 for v1.2)').argParser(positiveInt('--frames')))
      .addOption(new Option('--height <px>', 'Open-Sora: height in pixels (default 240)').argParser(positiveInt('--height')))
      .addOption(new Option('--width <px>', 'Open-Sora: width in pixels (default 426)').argParser(positiveInt('--width')))
      .addOption(new Option('--fps <n>', 'Open-Sora: fps micro-condition (default 24, 120 for one frame)').argParser(nonNegative('--fps')));
  /** Sampling options left at their defaults: an Open-Sora model then samples as its official inference does. */
  const defaulted = (cmd: Command): string[] => ['steps', 'guidance', 'sampler'].filter((k) => cmd.getOptionValueSource(k) === 'default');

  program
    .command('calibrate')
    .description("search a compression plan (the paper's greedy Algorithm 1) on calibration inputs")
    .addOption(model())
    .requiredOption('--threshold <D1..D6|number>', 'loss budget δ: D1..D6 (0.025 … 0.15) or a number')
    .addOption(new Option('--steps <n>', 'denoising steps').argParser(positiveInt('--steps')).default(50))
    .option('--sampler <name>', 'dpm++, ddim or iddpm (Open-Sora: rflow or iddpm, default the official one)', 'dpm++')
    .addOption(new Option('--guidance <scale>', 'classifier-free guidance scale (Open-Sora default 7)').argParser(nonNegative('--guidance')).default(4))
    .addOption(new Option('--calib <n>', 'calibration samples (random class labels)').argParser(positiveInt('--calib')).default(8))
    .option('--caption-embeddings <file>', 'Open-Sora: safetensors with "captions" [N, L, C] and optional "mask" [N, L] (the calibration batch)')
    .addOption(new Option('--seed <n>', 'calibration seed').argParser(nonNegativeInt('--seed')).default(3))
    .addOption(new Option('--window <tokens>', 'window size per side (default L/8)').argParser(nonNegativeInt('--window')))
    .addOption(new Option('--mode <mode>', 'search mode').choices(['prefix', 'naive']).default('prefix'))
    .option('--candidates <methods...>', 'candidate methods (default: ast wars+asc wars full+asc; tried most compressive first)')
    .addOption(new Option('--loss-on <space>', 'where the loss is measured: the whole model output (the paper) or the guided prediction the sampler uses').choices(['output', 'prediction']).default('output'))
    .option('--sites <names...>', 'attention sites the search may compress, e.g. spatial temporal cross (default: the self-attention sites, as in the paper; others stay full)')
    .addOption(threads())
    .requiredOption('--out <plan.json>', 'where to write the plan')
    .addHelpText(
      'after',
      '\nExamples:\n  $ ditfa calibrate --threshold D3 --out plan.json\n  $ ditfa calibrate --model models/fashion-dit --threshold 0.05 --steps 20 --out plan-d2.json' +
        '\n  $ ditfa calibrate --model OpenSora-STDiT-v3 --caption-embeddings t5.safetensors --frames 51 --height 240 --width 426 --threshold D3 --out plan.json',
    )
    .action(async (o, cmd: Command) => {
      await calibrate({ ...o, defaulted: defaulted(cmd) }, output(), progress());
    });
  video(program.commands.find((c) => c.name() === 'calibrate')!);

  program
    .command('generate')
    .description('generate samples, raw or under a plan, and write them as one PNG grid')
    .addOption(model())
    .option('--plan <plan.json>', 'a plan made by `ditfa calibrate` for this model and settings')
    .option('--class <ids...>', 'class ids (DiT); repeated to fill --batch', classIds)
    .option('--caption-embeddings <file>', 'PixArt-Σ, Open-Sora: safetensors with "captions" [N, Lt, C] and optional "mask" [N, Lt]')
    .option('--vae-decoder <file.onnx>', 'ONNX VAE decoder for latent-space models (DiT, PixArt-Σ: latent_sample → sample; Open-Sora: [B, C, T, H, W] → frames)')
    .option('--animation <file.png>', 'Open-Sora: also write the frames as an animated PNG')
    .option('--reference <file>', 'Open-Sora (rflow): given frames, kept as given while the rest is generated (image-to-video): safetensors with "latents" [N, C, T, H, W] and "frames" [N, T] (nonzero = given)')
    .option('--first-frame <file.png>', 'Open-Sora pixel-space bundle (such as models/fashion-stdit3): a PNG of the frame size as every clip\'s first frame; the rest is generated')
    .addOption(new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--steps <n>', 'denoising steps').argParser(positiveInt('--steps')).default(50))
    .addOption(new Option('--guidance <scale>', 'classifier-free guidance scale').argParser(nonNegative('--guidance')).default(4))
    .addOption(new Option('--batch <n>', 'samples').argParser(positiveInt('--batch')).default(1))
    .option('--sampler <name>', 'dpm++, ddim or iddpm (Open-Sora: rflow or iddpm, default the official one)', 'dpm++')
    .addOption(threads())
    .requiredOption('--out <file.png>', 'where to write the sample grid (Open-Sora: a row per video, a column per frame; or latents with .safetensors)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ ditfa generate --class 3 --out bag.png\n  $ ditfa generate --class 0 1 2 --batch 6 --plan plan.json --steps 50 --out grid.png' +
        '\n  $ ditfa generate --model OpenSora-STDiT-v3 --caption-embeddings t5.safetensors --vae-decoder vae_decoder.onnx --frames 51 --out frames.png --animation video.png' +
        '\n  $ ditfa generate --model models/fashion-stdit3 --class 0 --first-frame shirt.png --out clip.png --animation clip.apng',
    )
    .action(async (o, cmd: Command) => {
      await generate({ ...o, defaulted: defaulted(cmd) }, output(), progress());
    });
  video(program.commands.find((c) => c.name() === 'generate')!);

  program
    .command('bench')
    .description('the same seeds raw and under a plan: latency (attention / other), FLOPs, cache, quality')
    .addOption(model())
    .requiredOption('--plan <plan.json>', 'the plan to measure (its steps, sampler and guidance are used)')
    .option('--class <ids...>', 'class ids (default 0..9)', classIds)
    .addOption(new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--batch <n>', 'samples').argParser(positiveInt('--batch')).default(10))
    .option('--caption-embeddings <file>', 'Open-Sora: safetensors with "captions" [N, L, C] and optional "mask" [N, L]')
    .addOption(threads())
    .addHelpText(
      'after',
      '\nExamples:\n  $ ditfa bench --plan plan.json\n  $ ditfa --json bench --plan plan.json --batch 20 > bench.json' +
        '\n  $ ditfa bench --model OpenSora-STDiT-v3 --caption-embeddings t5.safetensors --frames 51 --plan plan.json',
    )
    .action(async (o) => {
      await bench(o, output(), progress());
    });
  video(program.commands.find((c) => c.name() === 'bench')!);

  program
    .command('demo')
    .description("the paper's Table 1 on the bundled model: plans D1..D6, the same seeds raw and under each, a report")
    .option('--model <dir>', 'another model directory (default: the bundled one)')
    .option('--out <dir>', 'report folder', 'ditfa-demo')
    .addOption(new Option('--steps <n>', 'denoising steps').argParser(positiveInt('--steps')).default(20))
    .addOption(new Option('--samples <n>', `samples per run (classes in turn; generated ${IMAGE_CHUNK} at a time)`).argParser(positiveInt('--samples')).default(20))
    .addOption(new Option('--seed <n>', 'noise seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--guidance <scale>', 'guidance scale').argParser(nonNegative('--guidance')).default(4))
    .addOption(new Option('--calib <n>', 'calibration samples when a plan must be calibrated').argParser(positiveInt('--calib')).default(8))
    .addOption(new Option('--levels <names...>', 'thresholds to run').choices(Object.keys(THRESHOLDS)).default(Object.keys(THRESHOLDS)))
    .option('--recalibrate', 'calibrate every plan again instead of using shipped or cached ones', false)
    .option('--no-video', 'skip the video half (the bundled STDiT3 video model)')
    .option('--video-model <dir>', 'another video model bundle for the video half (default: the bundled models/fashion-stdit3)')
    .addOption(new Option('--video-clips <n>', `clips per video run (classes in turn; generated ${VIDEO_CHUNK} at a time)`).argParser(positiveInt('--video-clips')).default(10))
    .addOption(threads())
    .addHelpText('after', '\nExamples:\n  $ ditfa demo\n  $ ditfa demo --levels D2 D6 --samples 10 --video-clips 10 --out /tmp/demo\n  $ ditfa demo --no-video --recalibrate')
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
