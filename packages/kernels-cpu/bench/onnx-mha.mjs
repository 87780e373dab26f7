// A one-node ONNX model, `com.microsoft.MultiHeadAttention`, written with a tiny protobuf encoder (the
// handful of ModelProto fields it needs), so the bench compares against onnxruntime's own attention
// kernel without python or a model file.

function varint(value) {
  let v = BigInt(value);
  const bytes = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    bytes.push(b);
  } while (v !== 0n);
  return bytes;
}

const tag = (field, wire) => varint((field << 3) | wire);
const intField = (field, value) => [...tag(field, 0), ...varint(value)];
const bytesField = (field, bytes) => [...tag(field, 2), ...varint(bytes.length), ...bytes];
const strField = (field, text) => bytesField(field, [...new TextEncoder().encode(text)]);
const floatField = (field, value) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, value, true);
  return [...tag(field, 5), ...b];
};

// ValueInfoProto { name = 1, type = 2 { tensor_type = 1 { elem_type = 1, shape = 2 { dim = 1 { dim_value = 1 } } } } }
function valueInfo(name, dims) {
  const shape = dims.flatMap((d) => bytesField(1, intField(1, d)));
  const tensorType = [...intField(1, 1 /* FLOAT */), ...bytesField(2, shape)];
  return [...strField(1, name), ...bytesField(2, bytesField(1, tensorType))];
}

/** Serialized ModelProto: query/key/value `[B, L, H·D]` → output `[B, L, H·D]`, `num_heads = H`. */
export function multiHeadAttentionModel({ B, L, H, D, scale }) {
  const attribute = (name, body) => bytesField(5, [...strField(1, name), ...body]);
  const node = [
    ...strField(1, 'query'),
    ...strField(1, 'key'),
    ...strField(1, 'value'),
    ...strField(2, 'output'),
    ...strField(3, 'mha'),
    ...strField(4, 'MultiHeadAttention'),
    ...strField(7, 'com.microsoft'),
    ...attribute('num_heads', [...intField(3, H), ...intField(20, 2 /* INT */)]),
    ...attribute('scale', [...floatField(2, scale), ...intField(20, 1 /* FLOAT */)]),
  ];
  const dims = [B, L, H * D];
  const graph = [
    ...bytesField(1, node),
    ...strField(2, 'attention'),
    ...bytesField(11, valueInfo('query', dims)),
    ...bytesField(11, valueInfo('key', dims)),
    ...bytesField(11, valueInfo('value', dims)),
    ...bytesField(12, valueInfo('output', dims)),
  ];
  const opset = (domain, version) => bytesField(8, [...strField(1, domain), ...intField(2, version)]);
  return Uint8Array.from([...intField(1, 8 /* ir_version */), ...strField(2, 'ditfa-bench'), ...bytesField(7, graph), ...opset('', 17), ...opset('com.microsoft', 1)]);
}
