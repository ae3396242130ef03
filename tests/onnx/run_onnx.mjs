// run_onnx.mjs MODEL.onnx IMAGES-IDX N OUT: runs the first N images of an IDX file (raw 0..255
// pixels, shape (N,1,H,W)) through the model in ONNX Runtime (onnxruntime-node, CPU) and writes
// the "probs" output, one line per image, space-separated, as `mnist eval --probs` does.
// Also checks the inputs and outputs the exporter promises. Exits 1 with a one-line reason.
import { readFileSync, writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';

const [model, idxPath, nArg, out] = process.argv.slice(2);
const fail = (why) => { console.error(`run_onnx: ${why}`); process.exit(1); };
if (!out) fail('usage: run_onnx.mjs MODEL.onnx IMAGES-IDX N OUT');

const idx = readFileSync(idxPath);
if (idx.readUInt32BE(0) !== 0x803) fail(`${idxPath}: not an IDX u8 image file`);
const count = idx.readUInt32BE(4), h = idx.readUInt32BE(8), w = idx.readUInt32BE(12);
const n = Math.min(Number(nArg), count);
const pixels = new Float32Array(n * h * w);
for (let i = 0; i < n * h * w; i++) pixels[i] = idx[16 + i];

const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
if (session.inputNames.join() !== 'pixels') fail(`inputs are ${session.inputNames}, not pixels`);
if (session.outputNames.join() !== 'logits,probs') fail(`outputs are ${session.outputNames}`);
const lines = [];
// in batches of 100 (and one of 1, to show the batch dimension is free)
for (let i0 = 0; i0 < n;) {
  const b = i0 === 0 ? 1 : Math.min(100, n - i0);
  const x = new ort.Tensor('float32', pixels.subarray(i0 * h * w, (i0 + b) * h * w), [b, 1, h, w]);
  const r = await session.run({ pixels: x });
  const p = r.probs, k = p.dims[1];
  if (p.dims[0] !== b) fail(`probs has ${p.dims[0]} rows for a batch of ${b}`);
  for (let j = 0; j < b; j++)
    lines.push(Array.from(p.data.subarray(j * k, (j + 1) * k), (v) => v.toPrecision(9)).join(' '));
  i0 += b;
}
writeFileSync(out, lines.join('\n') + '\n');
