import type { DType } from './dtype.js';
import { CheckpointError, CheckpointErrorCode, corrupt, unsupported } from './errors.js';

/**
 * A restricted unpickler for PyTorch `state_dict` pickles. It understands the opcodes a state dict
 * uses and resolves only an allow-list of globals, each to a plain data value built here; any other
 * opcode or global throws `ERR_DITFA_CHECKPOINT_UNSAFE_PICKLE`. Nothing from the file is executed.
 */

/** A storage reference from a persistent id `('storage', torch.XStorage, key, location, numel)`. */
export interface StorageRef {
  readonly kind: 'storage';
  readonly dtype: DType;
  readonly key: string;
  readonly location: string;
  readonly numel: number;
}

/** A tensor built by `torch._utils._rebuild_tensor_v2`: a strided view of a storage. */
export interface TensorRef {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly size: readonly number[];
  readonly stride: readonly number[];
}

/** An allow-listed global (a callable or a storage type). */
export interface GlobalRef {
  readonly kind: 'global';
  readonly module: string;
  readonly name: string;
}

/** A pickled tuple (kept apart from lists so that REDUCE arguments are recognised). */
export interface PyTuple {
  readonly kind: 'tuple';
  readonly items: readonly PyValue[];
}

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyValue[]
  | PyTuple
  | Map<PyValue, PyValue>
  | StorageRef
  | TensorRef
  | GlobalRef;

/** `torch.<X>Storage` → dtype. */
export const TORCH_STORAGE_DTYPES: Readonly<Record<string, DType>> = Object.freeze({
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
});

const CALLABLES = new Set(['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', 'torch._utils._rebuild_parameter']);

/** Every global the unpickler resolves. */
export const ALLOWED_GLOBALS: readonly string[] = Object.freeze([...CALLABLES, ...Object.keys(TORCH_STORAGE_DTYPES).map((s) => `torch.${s}`)]);

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT',
  0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE',
  0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND',
  0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET',
  0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT',
  0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

function unsafe(message: string): CheckpointError {
  return new CheckpointError(CheckpointErrorCode.UnsafePickle, message);
}

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

function isTuple(v: unknown): v is PyTuple {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && (v as { kind?: string }).kind === 'tuple';
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

function intTuple(v: PyValue, what: string): number[] {
  if (!isTuple(v) || !v.items.every(isInt)) throw corrupt(`Expected ${what} to be a tuple of integers but it is not`);
  return v.items as number[];
}

function resolveGlobal(module: string, name: string): GlobalRef {
  const full = `${module}.${name}`;
  if (CALLABLES.has(full) || (module === 'torch' && Object.prototype.hasOwnProperty.call(TORCH_STORAGE_DTYPES, name))) {
    return { kind: 'global', module, name };
  }
  throw unsafe(`Expected a pickle global among ${ALLOWED_GLOBALS.join(', ')} but received ${full}; it was not loaded or called`);
}

function persistentLoad(pid: PyValue): StorageRef {
  if (!isTuple(pid) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
    throw corrupt("Expected a persistent id ('storage', type, key, location, numel) but received something else");
  }
  const [, type, key, location, numel] = pid.items;
  if (typeof type !== 'object' || type === null || (type as GlobalRef).kind !== 'global' || (type as GlobalRef).module !== 'torch') {
    throw corrupt('Expected a torch storage type in the persistent id but received something else');
  }
  const dtype = TORCH_STORAGE_DTYPES[(type as GlobalRef).name];
  if (!dtype) throw corrupt(`Expected a torch storage type in the persistent id but received torch.${(type as GlobalRef).name}`);
  if (typeof key !== 'string' || typeof location !== 'string' || !isInt(numel) || numel < 0) {
    throw corrupt('Expected a string key, a string location and a non-negative element count in the storage persistent id');
  }
  return { kind: 'storage', dtype, key, location, numel };
}

function reduce(fn: PyValue, args: PyValue): PyValue {
  if (typeof fn !== 'object' || fn === null || (fn as GlobalRef).kind !== 'global') {
    throw unsafe('Expected REDUCE to apply an allow-listed global but the callable is a plain value');
  }
  const g = fn as GlobalRef;
  if (!isTuple(args)) throw corrupt(`Expected a tuple of arguments for ${g.module}.${g.name} but received something else`);
  const a = args.items;
  switch (`${g.module}.${g.name}`) {
    case 'collections.OrderedDict':
      if (a.length !== 0) throw unsafe(`Expected collections.OrderedDict() without arguments but received ${a.length}`);
      return new Map();
    case 'torch._utils._rebuild_tensor_v2': {
      if (a.length < 6 || a.length > 7) throw corrupt(`Expected 6 or 7 arguments to _rebuild_tensor_v2 but received ${a.length}`);
      const storage = a[0] as StorageRef;
      if (typeof storage !== 'object' || storage === null || storage.kind !== 'storage') {
        throw corrupt('Expected a storage as the first argument of _rebuild_tensor_v2 but received something else');
      }
      const offset = a[1];
      if (!isInt(offset) || offset < 0) throw corrupt('Expected a non-negative integer storage offset in _rebuild_tensor_v2');
      const size = intTuple(a[2]!, 'the size of a tensor');
      const stride = intTuple(a[3]!, 'the stride of a tensor');
      if (size.length !== stride.length) throw corrupt(`Expected as many strides as dimensions but received size [${size}] and stride [${stride}]`);
      return { kind: 'tensor', storage, offset, size, stride };
    }
    case 'torch._utils._rebuild_parameter': {
      const data = a[0];
      if (a.length !== 3 || typeof data !== 'object' || data === null || (data as TensorRef).kind !== 'tensor') {
        throw corrupt('Expected _rebuild_parameter(tensor, requires_grad, hooks) but received other arguments');
      }
      return data;
    }
    default:
      throw unsafe(`Expected REDUCE to call one of ${[...CALLABLES].join(', ')} but received ${g.module}.${g.name}`);
  }
}

/** Unpickles `bytes` (a PyTorch `data.pkl`) into plain values. */
export function unpickle(bytes: Uint8Array): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: StackItem[] = [];
  const memo = new Map<number, PyValue>();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let p = 0;

  const need = (n: number, op: string): number => {
    if (p + n > bytes.length) throw corrupt(`Expected ${n} more bytes for pickle opcode ${op} at byte ${p} but the pickle ends at ${bytes.length}: it is truncated`);
    const at = p;
    p += n;
    return at;
  };
  const pop = (op: string): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw corrupt(`Expected a value on the pickle stack for ${op} but found ${v === MARK ? 'a mark' : 'nothing'}`);
    return v;
  };
  const top = (op: string): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw corrupt(`Expected a value on the pickle stack for ${op} but found ${v === MARK ? 'a mark' : 'nothing'}`);
    return v;
  };
  const popMark = (op: string): PyValue[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) throw corrupt(`Expected a MARK on the pickle stack for ${op} but found none`);
    const items = stack.splice(at) as PyValue[];
    items.shift();
    return items;
  };
  const text = (n: number, op: string): string => {
    const at = need(n, op);
    try {
      return utf8.decode(bytes.subarray(at, at + n));
    } catch (cause) {
      throw corrupt(`Expected UTF-8 text for pickle opcode ${op} at byte ${at} but it is not valid UTF-8`, { cause });
    }
  };
  const line = (op: string): string => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) throw corrupt(`Expected a newline-terminated argument for pickle opcode ${op} but the pickle ends first`);
    const s = new TextDecoder('latin1').decode(bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const put = (index: number): void => {
    memo.set(index, top('a memo put'));
  };
  const get = (index: number): void => {
    if (!memo.has(index)) throw corrupt(`Expected memo entry ${index} to exist for a memo get but it does not`);
    stack.push(memo.get(index)!);
  };
  const setItems = (target: PyValue, items: PyValue[], op: string): void => {
    if (!(target instanceof Map)) throw corrupt(`Expected a dict below the items of ${op} but found another value`);
    if (items.length % 2 !== 0) throw corrupt(`Expected key/value pairs for ${op} but received ${items.length} values`);
    for (let i = 0; i < items.length; i += 2) target.set(items[i]!, items[i + 1]!);
  };
  const append = (target: PyValue, items: PyValue[], op: string): void => {
    if (!Array.isArray(target)) throw corrupt(`Expected a list below the items of ${op} but found another value`);
    target.push(...items);
  };

  for (;;) {
    if (p >= bytes.length) throw corrupt(`Expected a STOP opcode before the end of the ${bytes.length}-byte pickle but the pickle is truncated`);
    const at = p;
    const op = bytes[p++]!;
    switch (op) {
      case 0x80: { // PROTO
        const v = bytes[need(1, 'PROTO')]!;
        if (v < 2 || v > 5) throw unsupported(`Expected pickle protocol 2 to 5 but received ${v}`);
        break;
      }
      case 0x95: // FRAME (length is informational)
        need(8, 'FRAME');
        break;
      case 0x2e: { // STOP
        const result = pop('STOP');
        return result;
      }
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push({ kind: 'tuple', items: [] }); break; // EMPTY_TUPLE
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x58: { // BINUNICODE
        const n = view.getUint32(need(4, 'BINUNICODE'), true);
        stack.push(text(n, 'BINUNICODE'));
        break;
      }
      case 0x8c: stack.push(text(bytes[need(1, 'SHORT_BINUNICODE')]!, 'SHORT_BINUNICODE')); break;
      case 0x8d: { // BINUNICODE8
        const n = Number(view.getBigUint64(need(8, 'BINUNICODE8'), true));
        stack.push(text(n, 'BINUNICODE8'));
        break;
      }
      case 0x4a: stack.push(view.getInt32(need(4, 'BININT'), true)); break;
      case 0x4b: stack.push(bytes[need(1, 'BININT1')]!); break;
      case 0x4d: stack.push(view.getUint16(need(2, 'BININT2'), true)); break;
      case 0x8a: { // LONG1: little-endian two's complement
        const n = bytes[need(1, 'LONG1')]!;
        const s = need(n, 'LONG1');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[s + i]!);
        if (n > 0 && bytes[s + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: stack.push(view.getFloat64(need(8, 'BINFLOAT'), false)); break; // BINFLOAT (big-endian)
      case 0x71: put(bytes[need(1, 'BINPUT')]!); break;
      case 0x72: put(view.getUint32(need(4, 'LONG_BINPUT'), true)); break;
      case 0x94: put(memo.size); break; // MEMOIZE
      case 0x68: get(bytes[need(1, 'BINGET')]!); break;
      case 0x6a: get(view.getUint32(need(4, 'LONG_BINGET'), true)); break;
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line('GLOBAL');
        const name = line('GLOBAL');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop('STACK_GLOBAL');
        const module = pop('STACK_GLOBAL');
        if (typeof module !== 'string' || typeof name !== 'string') throw corrupt('Expected two strings for STACK_GLOBAL but received other values');
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x51: stack.push(persistentLoad(pop('BINPERSID'))); break; // BINPERSID
      case 0x50: // PERSID: an ASCII id; PyTorch never writes it, and a string cannot name a storage here
        throw unsupported(`Expected a binary persistent id (BINPERSID) for a storage but received a text PERSID ${JSON.stringify(line('PERSID'))}`);
      case 0x74: stack.push({ kind: 'tuple', items: popMark('TUPLE') }); break;
      case 0x85: stack.push({ kind: 'tuple', items: [pop('TUPLE1')] }); break;
      case 0x86: { const b = pop('TUPLE2'); const a = pop('TUPLE2'); stack.push({ kind: 'tuple', items: [a, b] }); break; }
      case 0x87: { const c = pop('TUPLE3'); const b = pop('TUPLE3'); const a = pop('TUPLE3'); stack.push({ kind: 'tuple', items: [a, b, c] }); break; }
      case 0x52: { const args = pop('REDUCE'); const fn = pop('REDUCE'); stack.push(reduce(fn, args)); break; }
      case 0x62: { // BUILD: only an OrderedDict's own state (state_dict `_metadata`), which is dropped
        const state = pop('BUILD');
        const target = top('BUILD');
        if (!(target instanceof Map) || !(state instanceof Map || isTuple(state) || state === null)) {
          throw unsafe('Expected BUILD to set the state of a dict but it targets another object');
        }
        break;
      }
      case 0x73: { const v = pop('SETITEM'); const k = pop('SETITEM'); setItems(top('SETITEM'), [k, v], 'SETITEM'); break; }
      case 0x75: { const items = popMark('SETITEMS'); setItems(top('SETITEMS'), items, 'SETITEMS'); break; }
      case 0x61: { const v = pop('APPEND'); append(top('APPEND'), [v], 'APPEND'); break; }
      case 0x65: { const items = popMark('APPENDS'); append(top('APPENDS'), items, 'APPENDS'); break; }
      default: {
        const name = OPCODE_NAMES[op] ?? 'unknown';
        throw unsafe(`Expected a pickle opcode used by PyTorch state dicts but received 0x${op.toString(16).padStart(2, '0')} (${name}) at byte ${at}`);
      }
    }
  }
}
