// ort_bench.mjs MODEL.onnx THREADS LATENCY_ITERS MIN_INFER_S: ONNX Runtime (onnxruntime-node,
// native CPU build, pinned in tests/onnx) on an `mnist export --format onnx` file, measured the
// way `mnist bench` measures libcnn: single-image latency (median and p90 of LATENCY_ITERS runs
// after 20 warm-up runs) and batch-1000 throughput (repeated for at least MIN_INFER_S seconds).
// Inputs are the first MNIST test images (data/mnist), raw 0..255. Prints one JSON object.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ort = createRequire(join(root, 'tests/onnx/package.json'))('onnxruntime-node');
const [model, threadsArg, itersArg, minArg] = process.argv.slice(2);
const threads = Number(threadsArg), iters = Number(itersArg), minS = Number(minArg);

const idx = readFileSync(join(root, 'data/mnist/t10k-images-idx3-ubyte'));
const px = new Float32Array(1000 * 784);
for (let i = 0; i < px.length; i++) px[i] = idx[16 + i];

const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const run = (b, off) => session.run({ pixels: new ort.Tensor('float32', px.subarray(off * 784, (off + b) * 784), [b, 1, 28, 28]) });
const now = () => Number(process.hrtime.bigint()) / 1e3; // microseconds

for (let i = 0; i < 20; i++) await run(1, i);
const lat = [];
for (let i = 0; i < iters; i++) {
  const t = now();
  await run(1, i % 1000);
  lat.push(now() - t);
}
lat.sort((a, b) => a - b);
await run(1000, 0);
let n = 0;
const t0 = now();
while (now() - t0 < minS * 1e6) { await run(1000, 0); n += 1000; }
const secs = (now() - t0) / 1e6;
console.log(JSON.stringify({
  runtime: `onnxruntime-node ${ort.env.versions.node}`, threads,
  latency_us_median: lat[Math.floor(lat.length / 2)], latency_us_p90: lat[Math.floor(lat.length * 0.9)],
  infer_images_per_s: n / secs, infer_batch: 1000,
}));
