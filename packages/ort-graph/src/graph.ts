import { InvalidArgumentError, ShapeMismatchError, describeValue } from '@ditfa/core';
import { OnnxAttributeType, OnnxDataType, type OnnxElementType, ProtoWriter } from './proto.js';

/**
 * An ONNX graph builder: named inputs, initializers (constant tensors, e.g. weights), nodes and outputs,
 * serialised to a ModelProto with {@link GraphBuilder.toModel}. Value names are strings; every helper
 * returns the name of the value it produced.
 */

/** A dimension: a fixed size or a symbolic name (`'B'`, `'L'`). */
export type Dim = number | string;

export type AttributeValue = number | string | readonly number[] | { readonly float: number } | { readonly floats: readonly number[] };

export interface InitializerData {
  readonly type: OnnxElementType;
  readonly dims: readonly number[];
  /** Little-endian raw bytes or a typed array of the matching type. */
  readonly data: Float32Array | Int32Array | BigInt64Array | Uint8Array | Float64Array;
}

interface ValueInfo {
  readonly name: string;
  readonly type: OnnxElementType;
  readonly dims: readonly Dim[] | undefined;
}

interface NodeSpec {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, AttributeValue>>;
  readonly domain: string;
}

const ELEMENT_BYTES: Record<OnnxElementType, number> = { float32: 4, uint8: 1, int8: 1, int32: 4, int64: 8, bool: 1, float16: 2, float64: 8, bfloat16: 2 };

export interface ModelOptions {
  /** Default opset of the `ai.onnx` domain (default 20: LayerNormalization-17, Gelu-20 with tanh). */
  readonly opset?: number;
  /** Extra operator sets, e.g. `{ 'com.microsoft': 1 }`. */
  readonly extraOpsets?: Readonly<Record<string, number>>;
  readonly irVersion?: number;
  readonly producer?: string;
}

export class GraphBuilder {
  readonly name: string;
  readonly #inputs: ValueInfo[] = [];
  readonly #outputs: ValueInfo[] = [];
  readonly #initializers = new Map<string, InitializerData>();
  readonly #nodes: NodeSpec[] = [];
  readonly #names = new Set<string>();
  #counter = 0;

  constructor(name: string) {
    this.name = name;
  }

  #claim(name: string): string {
    if (this.#names.has(name)) throw new InvalidArgumentError(`Expected a new value name in graph "${this.name}" but "${name}" is taken`);
    this.#names.add(name);
    return name;
  }

  /** A fresh value name with the given prefix. */
  fresh(prefix = 'v'): string {
    let name: string;
    do name = `${prefix}_${this.#counter++}`;
    while (this.#names.has(name));
    return name;
  }

  input(name: string, type: OnnxElementType, dims: readonly Dim[]): string {
    this.#inputs.push({ name: this.#claim(name), type, dims });
    return name;
  }

  /** Marks a value as a graph output (an `Identity` renames it when `as` differs). */
  output(value: string, as: string = value, type: OnnxElementType = 'float32', dims?: readonly Dim[]): string {
    const name = as === value ? value : this.op('Identity', [value], {}, { outputs: [as] });
    this.#outputs.push({ name, type, dims });
    return name;
  }

  /** A constant tensor stored in the model. */
  initializer(name: string, data: InitializerData): string {
    const n = data.dims.reduce((a, b) => a * b, 1);
    const bytes = data.data.byteLength;
    if (bytes !== n * ELEMENT_BYTES[data.type]) {
      throw new ShapeMismatchError(
        `Expected ${n * ELEMENT_BYTES[data.type]} bytes for ${data.type} initializer "${name}" of shape [${data.dims.join(', ')}] but received ${bytes}`,
      );
    }
    this.#initializers.set(this.#claim(name), data);
    return name;
  }

  /** A float32 constant. */
  constF(data: Float32Array | readonly number[], dims: readonly number[], prefix = 'c'): string {
    const arr = data instanceof Float32Array ? data : Float32Array.from(data);
    return this.initializer(this.fresh(prefix), { type: 'float32', dims, data: arr });
  }

  /** An int64 constant (shapes, axes). */
  constI64(values: readonly number[], dims: readonly number[] = [values.length], prefix = 'i'): string {
    return this.initializer(this.fresh(prefix), { type: 'int64', dims, data: BigInt64Array.from(values.map((v) => BigInt(v))) });
  }

  /** Adds a node; returns its first output's name (see {@link opN} for several). */
  op(op: string, inputs: readonly string[], attrs: Readonly<Record<string, AttributeValue>> = {}, options: { outputs?: readonly string[]; domain?: string } = {}): string {
    return this.opN(op, inputs, options.outputs ?? 1, attrs, options.domain)[0]!;
  }

  /** Adds a node with `outputs` outputs (a count or explicit names); returns their names. */
  opN(op: string, inputs: readonly string[], outputs: number | readonly string[], attrs: Readonly<Record<string, AttributeValue>> = {}, domain = ''): string[] {
    for (const i of inputs) {
      if (i !== '' && !this.#names.has(i)) {
        throw new InvalidArgumentError(`Expected node ${op} in graph "${this.name}" to read a defined value but "${i}" is not defined`);
      }
    }
    const names = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(op.toLowerCase())) : [...outputs];
    for (const n of names) this.#claim(n);
    this.#nodes.push({ op, inputs, outputs: names, attrs, domain });
    return names;
  }

  /** Serialises the graph as an ONNX ModelProto. */
  toModel(options: ModelOptions = {}): Uint8Array {
    const graph = new ProtoWriter();
    for (const node of this.#nodes) graph.message(1, encodeNode(node));
    graph.string(2, this.name);
    for (const [name, data] of this.#initializers) graph.message(5, encodeTensor(name, data));
    for (const v of this.#inputs) graph.message(11, encodeValueInfo(v));
    for (const v of this.#outputs) graph.message(12, encodeValueInfo(v));

    const model = new ProtoWriter();
    model.int(1, options.irVersion ?? 9);
    model.string(2, options.producer ?? 'ditfa');
    model.message(7, graph);
    model.message(8, new ProtoWriter().string(1, '').int(2, options.opset ?? 20));
    for (const [domain, version] of Object.entries(options.extraOpsets ?? {})) {
      model.message(8, new ProtoWriter().string(1, domain).int(2, version));
    }
    return model.finish();
  }

  /** Bytes held by the initializers. */
  initializerBytes(): number {
    let n = 0;
    for (const d of this.#initializers.values()) n += d.data.byteLength;
    return n;
  }
}

function encodeNode(node: NodeSpec): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of node.inputs) w.string(1, i);
  for (const o of node.outputs) w.string(2, o);
  w.string(3, node.outputs[0] ?? node.op);
  w.string(4, node.op);
  for (const [name, value] of Object.entries(node.attrs)) w.message(5, encodeAttribute(name, value));
  if (node.domain) w.string(7, node.domain);
  return w;
}

function encodeAttribute(name: string, value: AttributeValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      throw new InvalidArgumentError(`Expected an integer for int attribute "${name}" (wrap floats as { float }) but received ${describeValue(value)}`);
    }
    return w.int(3, value).int(20, OnnxAttributeType.int);
  }
  if (typeof value === 'string') return w.string(4, value).int(20, OnnxAttributeType.string);
  if (Array.isArray(value)) return w.packedInts(8, value as number[]).int(20, OnnxAttributeType.ints);
  if ('float' in value) return w.float(2, value.float).int(20, OnnxAttributeType.float);
  if ('floats' in value) return w.packedFloats(7, value.floats).int(20, OnnxAttributeType.floats);
  throw new InvalidArgumentError(`Unsupported attribute value for "${name}": ${describeValue(value)}`);
}

function encodeTensor(name: string, t: InitializerData): ProtoWriter {
  const w = new ProtoWriter();
  w.packedInts(1, t.dims);
  w.int(2, OnnxDataType[t.type]);
  w.string(8, name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return w;
}

function encodeValueInfo(v: ValueInfo): ProtoWriter {
  const tensorType = new ProtoWriter().int(1, OnnxDataType[v.type]);
  if (v.dims) {
    const shape = new ProtoWriter();
    for (const d of v.dims) shape.message(1, typeof d === 'number' ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
    tensorType.message(2, shape);
  }
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensorType));
}
