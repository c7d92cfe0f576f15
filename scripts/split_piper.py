"""Split a Piper VITS graph after its duration predictor, for shape buckets (docs/ARCHITECTURE.md, engine).

    split_piper.py VOICE.onnx OUT.enc.onnx OUT.dec.onnx

The encoder part runs the text encoder, its projection and the duration predictor:
    inputs  input [B, ids] int64, input_lengths [B] int64, scales [3] float
    outputs durations [B, 1, ids] (frames per id, whole numbers), x_mask [B, 1, 1, ids],
            m_p and logs_p [B, ids, 192] (the prior's mean and log-scale per id)
The decoder part expands them to frames and runs the flow and the vocoder on a frame count the caller chooses (at
least the largest sum of durations of its items), so that its shapes come from a few buckets:
    inputs  durations, x_mask, m_p, logs_p (as above), scales [3] float, frames [1] int64
    output  output [B, 1, 1, frames * 256]
Frames past an item's own length are masked as the padding of a batch is in the whole graph; the caller cuts each
item's audio to its durations' sum. None of the decoder's convolutions sees the number of ids, only of frames.

The cut is found, not hard-coded: the decoder part is every node the audio needs that depends on the durations
(`/Ceil_output_0`) or on the scales (the prior's noise), the encoder part everything else; the longest item's frame
count (`/ReduceMax_output_0`) becomes the `frames` input. A graph of another shape is refused with a clear error.
"""
import sys
from collections import defaultdict

import onnx
from onnx import TensorProto, helper

DURATIONS = "/Ceil_output_0"
MAX_FRAMES = "/ReduceMax_output_0"


def fail(message: str) -> None:
    sys.exit(f"split_piper: {message}")


def main(src: str, enc_path: str, dec_path: str) -> None:
    model = onnx.load(src)
    graph = model.graph
    producer, consumers = {}, defaultdict(list)
    for i, node in enumerate(graph.node):
        for out in node.output:
            producer[out] = i
        for x in node.input:
            consumers[x].append(i)
    graph_inputs = {i.name: i for i in graph.input}
    if DURATIONS not in producer or MAX_FRAMES not in producer:
        fail(f"{src}: no {DURATIONS} or {MAX_FRAMES} in the graph (not a Piper VITS export?)")
    if "scales" not in graph_inputs or not any(o.name == "output" for o in graph.output):
        fail(f"{src}: no 'scales' input or 'output' output")

    def ancestors(names):
        seen, stack = set(), [producer[n] for n in names if n in producer]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(producer[x] for x in graph.node[i].input if x in producer)
        return seen

    def descendants(tensors):
        seen, stack = set(), [i for t in tensors for i in consumers[t]]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack.extend(j for o in graph.node[i].output for j in consumers[o])
        return seen

    needed = ancestors(["output"])
    durations_part = ancestors([DURATIONS])
    dec = (needed - durations_part) & (descendants([DURATIONS]) | descendants(["scales"]))
    enc = needed - dec
    max_node = producer[MAX_FRAMES]
    if max_node not in dec or graph.node[max_node].op_type != "ReduceMax":
        fail(f"{MAX_FRAMES} is not the decoder part's ReduceMax")
    dec.discard(max_node)

    cut = []
    for i in sorted(dec):
        for x in graph.node[i].input:
            if x and x not in cut and ((x in producer and producer[x] in enc) or x in graph_inputs):
                cut.append(x)

    # Public names for what crosses the cut.
    names = {}
    for x in cut:
        node = graph.node[producer[x]] if x in producer else None
        if x in graph_inputs:
            names[x] = x
        elif x == DURATIONS:
            names[x] = "durations"
        elif node.op_type == "Unsqueeze":
            names[x] = "x_mask"
        elif node.op_type == "Transpose" and node.input[0] in producer:
            split = graph.node[producer[node.input[0]]]
            if split.op_type != "Split":
                fail(f"unexpected tensor across the cut: {x}")
            names[x] = ["m_p", "logs_p"][list(split.output).index(node.input[0])]
        else:
            fail(f"unexpected tensor across the cut: {x} ({node.op_type})")
    public = sorted(n for x, n in names.items() if x not in graph_inputs)
    if public != ["durations", "logs_p", "m_p", "x_mask"] or MAX_FRAMES in cut:
        fail(f"unexpected tensors across the cut: {names}")

    shapes = {
        "durations": ["batch", 1, "ids"],
        "x_mask": ["batch", 1, 1, "ids"],
        "m_p": ["batch", "ids", 192],
        "logs_p": ["batch", "ids", 192],
    }

    def rename(node):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for k, x in enumerate(copy.input):
            copy.input[k] = names.get(x, x) if x not in graph_inputs else x
        for k, x in enumerate(copy.output):
            copy.output[k] = names.get(x, x) if x not in graph_inputs else x
        return copy

    def part(nodes, inputs, outputs, first, name):
        used = {x for i in nodes for x in graph.node[i].input} | {x for n in first for x in n.input}
        inits = [t for t in graph.initializer if t.name in used]
        # `first` (the frame count's squeeze) depends on graph inputs only, so it can lead.
        body = first + [rename(graph.node[i]) for i in sorted(nodes)]
        g = helper.make_graph(body, name, inputs, outputs, initializer=inits)
        m = helper.make_model(g, opset_imports=list(model.opset_import), producer_name="chorus split_piper")
        m.ir_version = model.ir_version
        onnx.checker.check_model(m)
        return m

    tensor = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n])  # noqa: E731
    order = ["durations", "x_mask", "m_p", "logs_p"]
    enc_model = part(enc, list(graph.input), [tensor(n) for n in order], [], "piper_encoder")
    dec_inputs = [tensor(n) for n in order] + [
        graph_inputs["scales"],
        helper.make_tensor_value_info("frames", TensorProto.INT64, [1]),
    ]
    squeeze = helper.make_node("Squeeze", ["frames"], [MAX_FRAMES], name="chorus_frames")
    outputs = [o for o in graph.output if o.name == "output"]
    dec_model = part(dec, dec_inputs, outputs, [squeeze], "piper_decoder")
    onnx.save(enc_model, enc_path)
    onnx.save(dec_model, dec_path)
    print(f"wrote {enc_path} ({len(enc_model.graph.node)} nodes) and {dec_path} ({len(dec_model.graph.node)} nodes)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        fail("usage: split_piper.py VOICE.onnx OUT.enc.onnx OUT.dec.onnx")
    main(*sys.argv[1:])
