"""The benchmark peer: the reference Python Piper (`piper-tts`), same voice file, same texts, same ONNX Runtime
version. Invoked by `chorus bench`; prints one JSON object with the same measurements Chorus reports.

usage: bench_peer_piper.py MODEL.onnx CONFIG.json THREADS ITERATIONS SHORT_TEXT PARAGRAPH
"""
import json
import statistics
import sys
import time

import onnxruntime
from pathlib import Path

from piper import PiperVoice
from piper.config import PiperConfig
from piper.phonemize_espeak import ESPEAK_DATA_DIR


def main() -> None:
    model, config, threads, iterations, short, paragraph = sys.argv[1:7]
    threads, iterations = int(threads), int(iterations)

    def load() -> PiperVoice:
        # As PiperVoice.load does, but with the thread count set (load() gives no way to pass it).
        with open(config, encoding="utf-8") as f:
            config_dict = json.load(f)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        voice = PiperVoice(
            config=PiperConfig.from_dict(config_dict),
            session=onnxruntime.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"]),
            espeak_data_dir=Path(ESPEAK_DATA_DIR),
        )
        for _ in voice.synthesize("Warming up."):
            pass
        return voice

    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        voice = load()
        loads.append(time.perf_counter() - t0)

    ttfa = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        chunks = voice.synthesize(short)
        next(iter(chunks))
        ttfa.append(time.perf_counter() - t0)

    rtf = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        samples = 0
        rate = voice.config.sample_rate
        for chunk in voice.synthesize(paragraph):
            samples += len(chunk.audio_float_array)
            rate = chunk.sample_rate
        rtf.append((time.perf_counter() - t0) / (samples / rate))

    print(json.dumps({
        "load_s": statistics.median(loads),
        "ttfa_s": sorted(ttfa),
        "rtf": sorted(rtf),
        "onnxruntime": onnxruntime.__version__,
    }))


if __name__ == "__main__":
    main()
