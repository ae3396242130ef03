#!/usr/bin/python3
"""Checks for tests/test_export.sh, with Debian's python3-onnx.

  onnx_check.py check MODEL.onnx BN_NODES   onnx.checker.check_model(full_check=True), then
                                            what the exporter promises: IR 7, opset 13, input
                                            "pixels" (N,1,28,28), outputs "logits" and "probs"
                                            (N,10), the spec in metadata, and BN_NODES
                                            BatchNormalization nodes
  onnx_check.py compare A B TOL             two --probs files: every argmax equal, the largest
                                            difference <= TOL; prints it
Exit status 1 with a one-line reason on failure.
"""
import sys

import onnx


def fail(why):
    print(f"onnx_check: {why}")
    sys.exit(1)


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check(path, bn_nodes):
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    g = model.graph
    opsets = {o.domain: o.version for o in model.opset_import}
    meta = {p.key: p.value for p in model.metadata_props}
    ops = [n.op_type for n in g.node]
    problems = []
    if model.ir_version != 7 or opsets.get("", 0) != 13:
        problems.append(f"IR {model.ir_version}, opsets {opsets}")
    if [i.name for i in g.input] != ["pixels"] or dims(g.input[0]) != ["N", 1, 28, 28]:
        problems.append(f"input {[(i.name, dims(i)) for i in g.input]}")
    outs = [(o.name, dims(o)) for o in g.output]
    if outs != [("logits", ["N", 10]), ("probs", ["N", 10])]:
        problems.append(f"outputs {outs}")
    if "spec" not in meta or meta["spec"] not in model.doc_string:
        problems.append("no spec in metadata_props and doc_string")
    if ops.count("BatchNormalization") != bn_nodes:
        problems.append(f"{ops.count('BatchNormalization')} BatchNormalization nodes, want {bn_nodes}")
    if problems:
        fail(f"{path}: " + "; ".join(problems))
    print(f"{path}: checker passed; {len(ops)} nodes: {' '.join(ops)}")


def compare(a, b, tol):
    rows_a = [list(map(float, line.split())) for line in open(a)]
    rows_b = [list(map(float, line.split())) for line in open(b)]
    if len(rows_a) != len(rows_b) or not rows_a:
        fail(f"{a} has {len(rows_a)} rows, {b} has {len(rows_b)}")
    worst, differ = 0.0, 0
    for pa, pb in zip(rows_a, rows_b):
        differ += pa.index(max(pa)) != pb.index(max(pb))
        worst = max(worst, max(abs(x - y) for x, y in zip(pa, pb)))
    print(f"{len(rows_a)} images: {differ} argmax differ, largest difference {worst:.2e}")
    if differ or worst > tol:
        fail(f"{differ} argmax differ, largest difference {worst:.2e} > {tol}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        fail("usage: onnx_check.py check MODEL BN_NODES | compare A B TOL")
