"""Copy a Piper VITS graph, adding its frames-per-phoneme tensor as a second output named `durations`.

The stock graph computes durations (`/Ceil_output_0`, shape [B, 1, phonemes]) but does not output them. Chorus needs
them for word and phoneme timestamps and for trimming padded batch items.
"""
import sys

import onnx
from onnx import helper, TensorProto

src, dst = sys.argv[1], sys.argv[2]
model = onnx.load(src)
graph = model.graph
if any(o.name == "durations" for o in graph.output):
    onnx.save(model, dst)
    sys.exit(0)
candidates = [n for n in graph.node if "/Ceil_output_0" in n.output]
if not candidates:
    sys.exit(f"{src}: no /Ceil_output_0 value in the graph; cannot expose durations")
# An Identity node gives the tensor a stable public name.
graph.node.append(helper.make_node("Identity", ["/Ceil_output_0"], ["durations"], name="chorus_durations"))
graph.output.append(helper.make_tensor_value_info("durations", TensorProto.FLOAT, ["batch", 1, "phonemes"]))
onnx.checker.check_model(model)
onnx.save(model, dst)
print(f"wrote {dst}")
