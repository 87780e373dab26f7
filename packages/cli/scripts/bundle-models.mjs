// prepack: copies the bundled models (the image DiT and the STDiT3 video model), their shipped plans and the
// two classifiers that judge them (J1, J2) from the repository's models/ into this package, so that an
// installed `ditfa` (and its demo's video half) finds them without the monorepo.
// postpack (`--clean`): removes that copy again.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

const pkg = fileURLToPath(new URL('../', import.meta.url));
const from = path.resolve(pkg, '../../models');
const to = path.join(pkg, 'models');
rmSync(to, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

const entries = [
  'fashion-dit/config.json',
  'fashion-dit/weights.safetensors',
  'fashion-dit/README.md',
  'fashion-dit/plans',
  'fashion-stdit3/config.json',
  'fashion-stdit3/model.safetensors',
  'fashion-stdit3/captions.safetensors',
  'fashion-stdit3/README.md',
  'fashion-stdit3/plans',
  'fashion-classifier.onnx',
  'fashion-classifier-stats.safetensors',
  'fashion-classifier.json',
  'fashion-judge2.onnx',
  'fashion-judge2-stats.safetensors',
  'fashion-judge2.json',
];
const missing = entries.filter((f) => !existsSync(path.join(from, f)));
if (missing.length > 0) {
  console.error(`bundle-models: missing ${missing.map((f) => path.join(from, f)).join(', ')}; pack from the ditfa repository`);
  process.exit(1);
}
for (const f of entries) cpSync(path.join(from, f), path.join(to, f), { recursive: true });
console.error(`bundle-models: copied ${entries.length} entries from ${from} to ${to}`);
