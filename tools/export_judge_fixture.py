"""Writes the fixture @ditfa/quality's tests check the TypeScript judge against.

500 Fashion-MNIST test images (the first 50 of each class, padded to 32x32 as uint8) with their labels,
plus what the Python side measures on them with the same ONNX classifier: accuracy, and the Fréchet
distance of their features to the stored test-set statistics (scipy's sqrtm, as in pytorch-fid).
The first judge (J1, models/fashion-classifier.onnx) gives `logits`, `features`, `accuracy`, `fd_vs_test`;
the second (J2, models/fashion-judge2.onnx, when present) `j2_logits` and `j2` in the metadata.
Run from the repository root: python tools/export_judge_fixture.py
"""
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file, save_file
from scipy import linalg

DATA = Path('/usr/share/datasets/fashion-mnist')
OUT = Path('packages/quality/test/fixtures/fashion-test-500.safetensors')


def read_idx(path):
    with gzip.open(path, 'rb') as f:
        raw = f.read()
    magic, n = struct.unpack('>II', raw[:8])
    if magic == 2051:
        rows, cols = struct.unpack('>II', raw[8:16])
        return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(raw, np.uint8, offset=8)


def frechet(mu1, s1, mu2, s2):
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def main():
    images = read_idx(DATA / 't10k-images-idx3-ubyte.gz')
    labels = read_idx(DATA / 't10k-labels-idx1-ubyte.gz')
    picked = np.concatenate([np.flatnonzero(labels == c)[:50] for c in range(10)])
    padded = np.zeros((len(picked), 32, 32), np.uint8)
    padded[:, 2:30, 2:30] = images[picked]
    x = (padded.astype(np.float32) / 127.5 - 1.0)[:, None]
    session = ort.InferenceSession('models/fashion-classifier.onnx', providers=['CPUExecutionProvider'])
    logits, features = session.run(None, {session.get_inputs()[0].name: x})
    accuracy = float((logits.argmax(1) == labels[picked]).mean())
    feats = features.astype(np.float64)
    stats = load_file('models/fashion-classifier-stats.safetensors')
    fd = frechet(feats.mean(0), np.cov(feats, rowvar=False), stats['test_mu'], stats['test_sigma'])
    meta = {'accuracy': accuracy, 'fd_vs_test': fd, 'input_name': session.get_inputs()[0].name,
            'source': 'first 50 test images of each class, padded 2 px each side'}
    tensors = {'images': padded, 'labels': labels[picked].astype(np.int64),
               'logits': logits.astype(np.float32), 'features': features.astype(np.float32)}
    if Path('models/fashion-judge2.onnx').exists():
        s2 = ort.InferenceSession('models/fashion-judge2.onnx', providers=['CPUExecutionProvider'])
        lo2, fe2 = s2.run(['logits', 'features'], {s2.get_inputs()[0].name: x})
        st2 = load_file('models/fashion-judge2-stats.safetensors')
        f2 = fe2.astype(np.float64)
        meta['j2'] = {'accuracy': float((lo2.argmax(1) == labels[picked]).mean()),
                      'fd_vs_test': frechet(f2.mean(0), np.cov(f2, rowvar=False), st2['test_mu'], st2['test_sigma']),
                      'feature_dim': int(fe2.shape[1])}
        tensors['j2_logits'] = lo2.astype(np.float32)
    save_file(tensors, str(OUT), metadata={'info': json.dumps(meta)})
    print(json.dumps(meta))


if __name__ == '__main__':
    main()
