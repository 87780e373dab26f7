import { DTYPE_SIZE, type CheckpointTensor } from './dtype.js';
import { corrupt, unsupported } from './errors.js';
import { unpickle, type PyValue, type StorageRef, type TensorRef } from './pickle.js';
import { openSource, type ByteSource } from './source.js';
import type { ReadOptions } from './safetensors.js';
import { readZipDirectory, readZipEntry, type ZipEntry } from './zip.js';

export interface PytorchFile {
  /** Tensors by name; nested dicts are flattened with `.` (`{"ema": {"w": t}}` → `ema.w`). */
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
  /** Names of non-tensor leaves (numbers, strings, None) that were skipped. */
  readonly ignored: readonly string[];
}

function isTensorRef(v: PyValue): v is TensorRef {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && v.kind === 'tensor';
}

/** Copies (or views, when contiguous) the elements of a strided tensor out of its storage bytes. */
export function gatherStrided(storage: Uint8Array, storageNumel: number, ref: Pick<TensorRef, 'offset' | 'size' | 'stride'>, elementSize: number, name: string): Uint8Array {
  const { offset, size, stride } = ref;
  let numel = 1;
  for (const s of size) {
    if (!Number.isSafeInteger(s) || s < 0) throw corrupt(`Expected non-negative dimensions for tensor "${name}" but received [${size.join(', ')}]`);
    numel *= s;
  }
  if (stride.some((s) => !Number.isSafeInteger(s) || s < 0)) throw corrupt(`Expected non-negative strides for tensor "${name}" but received [${stride.join(', ')}]`);
  if (numel === 0) return new Uint8Array(0);
  let last = offset;
  for (let d = 0; d < size.length; d++) last += (size[d]! - 1) * stride[d]!;
  if (last >= storageNumel) {
    throw corrupt(`Expected tensor "${name}" (offset ${offset}, size [${size.join(', ')}], stride [${stride.join(', ')}]) to stay inside its ${storageNumel}-element storage but it reaches element ${last}`);
  }
  let contiguous = true;
  for (let d = size.length - 1, expect = 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expect) contiguous = false;
    expect *= size[d]!;
  }
  if (contiguous) return storage.subarray(offset * elementSize, (offset + numel) * elementSize);
  const out = new Uint8Array(numel * elementSize);
  const index = new Array<number>(size.length).fill(0);
  let src = offset;
  for (let i = 0; i < numel; i++) {
    out.set(storage.subarray(src * elementSize, (src + 1) * elementSize), i * elementSize);
    for (let d = size.length - 1; d >= 0; d--) {
      index[d]!++;
      src += stride[d]!;
      if (index[d]! < size[d]!) break;
      src -= size[d]! * stride[d]!;
      index[d] = 0;
    }
  }
  return out;
}

const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/** Reads a PyTorch zip checkpoint (`torch.save` since 1.6) from an open source. */
export function readPytorchFrom(src: ByteSource, options: ReadOptions = {}): PytorchFile {
  const head = src.read(0, Math.min(src.size, LEGACY_MAGIC.length), 'the file magic');
  if (head.length === LEGACY_MAGIC.length && LEGACY_MAGIC.every((b, i) => head[i] === b)) {
    throw unsupported('Expected a zip-format PyTorch checkpoint (torch.save since 1.6) but received the legacy pre-1.6 format; re-save it with a current torch or convert it to safetensors');
  }
  const entries = readZipDirectory(src);
  const pkls = entries.filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pkls.length !== 1) {
    throw corrupt(`Expected exactly one <archive>/data.pkl in the PyTorch zip but found ${pkls.length} (${entries.slice(0, 5).map((e) => e.name).join(', ')}${entries.length > 5 ? ', ...' : ''})`);
  }
  const prefix = pkls[0]!.name.slice(0, -'data.pkl'.length);
  const byName = new Map<string, ZipEntry>(entries.map((e) => [e.name, e]));
  const byteorder = byName.get(`${prefix}byteorder`);
  if (byteorder) {
    const order = new TextDecoder().decode(readZipEntry(src, byteorder)).trim();
    if (order !== 'little') throw unsupported(`Expected little-endian storages but the checkpoint's byteorder is ${JSON.stringify(order)}`);
  }
  const root = unpickle(readZipEntry(src, pkls[0]!));
  if (!(root instanceof Map)) throw unsupported('Expected the checkpoint to pickle a dict of tensors (a state_dict) but its root is another value');

  const refs = new Map<string, TensorRef>();
  const ignored: string[] = [];
  const open = new Set<Map<PyValue, PyValue>>();
  const walk = (dict: Map<PyValue, PyValue>, prefixName: string): void => {
    if (open.has(dict)) throw corrupt(`Expected a tree of dicts but the dict at "${prefixName}" contains itself`);
    open.add(dict);
    for (const [k, v] of dict) {
      if (typeof k !== 'string' && typeof k !== 'number') throw unsupported(`Expected string keys in the state dict but received a ${typeof k} key under "${prefixName}"`);
      const name = `${prefixName}${String(k)}`;
      if (isTensorRef(v)) {
        if (refs.has(name)) throw corrupt(`Expected unique tensor names but "${name}" occurs twice after flattening`);
        refs.set(name, v);
      } else if (v instanceof Map) {
        walk(v, `${name}.`);
      } else {
        ignored.push(name);
      }
    }
    open.delete(dict);
  };
  walk(root, '');

  const storages = new Map<string, Uint8Array>();
  const loadStorage = (s: StorageRef): Uint8Array => {
    const cached = storages.get(s.key);
    if (cached) return cached;
    const entry = byName.get(`${prefix}data/${s.key}`);
    if (!entry) throw corrupt(`Expected storage entry ${prefix}data/${s.key} in the zip but it is missing`);
    const bytes = readZipEntry(src, entry);
    if (bytes.length !== s.numel * DTYPE_SIZE[s.dtype]) {
      throw corrupt(`Expected storage ${s.key} (${s.numel} × ${s.dtype}) to hold ${s.numel * DTYPE_SIZE[s.dtype]} bytes but its zip entry holds ${bytes.length}`);
    }
    storages.set(s.key, bytes);
    return bytes;
  };

  const tensors = new Map<string, CheckpointTensor>();
  for (const [name, ref] of refs) {
    if (options.filter && !options.filter(name)) continue;
    const bytes = gatherStrided(loadStorage(ref.storage), ref.storage.numel, ref, DTYPE_SIZE[ref.storage.dtype], name);
    tensors.set(name, { dtype: ref.storage.dtype, shape: Object.freeze([...ref.size]), bytes });
  }
  return { tensors, ignored };
}

/** Reads a PyTorch zip checkpoint from a path or bytes. */
export function readPytorch(source: string | Uint8Array, options: ReadOptions = {}): PytorchFile {
  const src = openSource(source);
  try {
    return readPytorchFrom(src, options);
  } finally {
    src.close();
  }
}
