#!/usr/bin/env node
// Writes what bench/e2e.mjs's contenders read, in a short-lived process of its own (the random weights
// of DiT-XL/2 are 2.7 GB): `bundled-inputs` (noise, t = 500, labels cond | null of the bundled model)
// or the random weights (official key names) and inputs of a DiT / PixArt-Σ config.
import { closeSync, openSync, writeSync } from 'node:fs';
import { writeSafetensors } from '@ditfa/checkpoint';
import { configFromJson, randomCheckpoint } from '../dist/index.js';

const job = JSON.parse(process.argv[2]);
/** writeFileSync refuses more than 2 GiB in one call (DiT-XL/2's weights are 2.7 GB): write in slices. */
function writeFileSync(file, bytes) {
  const fd = openSync(file, 'w');
  try {
    for (let at = 0; at < bytes.length; at += 1 << 28) writeSync(fd, bytes, at, Math.min(1 << 28, bytes.length - at));
  } finally {
    closeSync(fd);
  }
}
const f32 = (data, shape) => ({ dtype: 'F32', shape, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
function noise(n, seed) {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

if (job.kind === 'bundled-inputs') {
  const B = job.B;
  const n = B / 2;
  const labels = Float32Array.from({ length: B }, (_, i) => (i < n ? i % 10 : 10));
  writeFileSync(job.inputs, writeSafetensors(new Map([
    ['x', f32(noise(B * 32 * 32, 1), [B, 1, 32, 32])],
    ['t', f32(new Float32Array(B).fill(500), [B])],
    ['y', f32(labels, [B])],
  ])));
} else {
  const config = configFromJson(job.config);
  const Lt = job.batchInputs.Lt;
  const ck = randomCheckpoint(config, { seed: 1, captionTokens: Lt });
  writeFileSync(job.weights, writeSafetensors(ck));
  ck.clear();
  const B = job.batchInputs.B;
  const side = config.family === 'dit' ? config.inputSize : config.sampleSize;
  const tensors = new Map([
    ['x', f32(noise(B * config.inChannels * side * side, 2), [B, config.inChannels, side, side])],
    ['t', f32(new Float32Array(B).fill(500), [B])],
  ]);
  if (config.family === 'dit') {
    tensors.set('y', f32(Float32Array.from({ length: B }, (_, i) => (i < B / 2 ? 207 : 1000)), [B]));
  } else {
    tensors.set('captions', f32(Float32Array.from({ length: B * Lt * config.captionChannels }, (_, i) => Math.sin(i * 0.01)), [B, Lt, config.captionChannels]));
    tensors.set('mask', f32(Float32Array.from({ length: B * Lt }, (_, i) => (i % Lt < Math.ceil((Lt * 2) / 5) ? 1 : 0)), [B, Lt]));
  }
  writeFileSync(job.inputs, writeSafetensors(tensors));
}
