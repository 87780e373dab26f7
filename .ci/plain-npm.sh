#!/usr/bin/env bash
# What an outside user does: pack the packages a DiT generation needs (core, kernels-cpu, strategy-wars,
# models-dit and what they depend on) with `pnpm pack`, install the tarballs into an empty npm project
# with plain `npm install` (ONNXRUNTIME_NODE_INSTALL=skip: see the README), and run a 4-step generation
# of the bundled model there. Run from the repository root after a build (.ci/run does both).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PNPM="npx -y pnpm@10.34.9"
work=$(mktemp -d "${TMPDIR:-/tmp}/ditfa-plain-npm.XXXXXX")
stage="start"
fail() {
  echo "plain-npm check FAILED while: ${stage}" >&2
  echo "  (its files are kept in ${work})" >&2
}
trap fail ERR

# The packages of a DiT generation, and every @ditfa package they depend on.
packages=(core kernels-cpu strategy-wars models-dit pipeline samplers checkpoint image ort-graph)

stage="building the packages"
$PNPM exec turbo run build $(printf -- '--filter=@ditfa/%s ' "${packages[@]}") --output-logs=errors-only

stage="packing them with pnpm pack"
mkdir -p "$work/tarballs"
for p in "${packages[@]}"; do
  (cd "packages/$p" && $PNPM pack --pack-destination "$work/tarballs" >/dev/null)
done

stage="checking the packed package.json files (no workspace: ranges left, LICENSE shipped, public)"
node - "$work/tarballs" <<'JS'
const { execFileSync } = require('node:child_process');
const { readdirSync } = require('node:fs');
const path = require('node:path');
const dir = process.argv[2];
const problems = [];
for (const file of readdirSync(dir).filter((f) => f.endsWith('.tgz'))) {
  const tgz = path.join(dir, file);
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', tgz, 'package/package.json'], { encoding: 'utf8' }));
  const listing = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n');
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
    for (const [name, range] of Object.entries(manifest[field] ?? {})) {
      if (String(range).startsWith('workspace:')) problems.push(`${manifest.name}: ${field}.${name} is still "${range}"`);
      if (name.startsWith('@ditfa/') && /^\d+\.\d+\.\d+$/.test(String(range))) problems.push(`${manifest.name}: ${field}.${name} pins exactly "${range}"`);
    }
  }
  if (!listing.includes('package/LICENSE')) problems.push(`${manifest.name}: no LICENSE in the tarball`);
  console.log(`  ${manifest.name}@${manifest.version}: ${Object.entries({ ...manifest.dependencies, ...manifest.peerDependencies }).filter(([n]) => n.startsWith('@ditfa/')).map(([n, r]) => `${n} ${r}`).join(', ') || 'no @ditfa dependencies'}`);
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
JS

stage="installing the tarballs into an empty npm project (npm install, ONNXRUNTIME_NODE_INSTALL=skip)"
mkdir -p "$work/app"
cd "$work/app"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error "$work"/tarballs/*.tgz

stage="running a 4-step generation from the installed packages"
cp "$repo/.ci/plain-npm/generate.mjs" .
node generate.mjs "$repo/models/fashion-dit"

trap - ERR
rm -rf "$work"
