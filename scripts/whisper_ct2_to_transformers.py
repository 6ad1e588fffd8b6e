#!/usr/bin/env python3
"""Convert the encoder of a CTranslate2 Whisper model (faster-whisper's format) into a Hugging Face folder.

CTranslate2 gives only the encoder's output; the same weights in a transformers folder give the states of
every block (`asr-cli prepare --features encoder --encoder-layer K`). Only the encoder is written (the
decoder is not needed for features); the weights are kept in float32.

    python scripts/whisper_ct2_to_transformers.py CT2_FOLDER -o HF_FOLDER
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from asr_cli.encoder import iter_ct2_variables  # noqa: E402

BLOCK_NAMES = {  # CTranslate2 name within a block -> transformers name within encoder.layers.N
    "self_attention/layer_norm/gamma": "self_attn_layer_norm.weight",
    "self_attention/layer_norm/beta": "self_attn_layer_norm.bias",
    "self_attention/linear_1/weight": "self_attn.out_proj.weight",
    "self_attention/linear_1/bias": "self_attn.out_proj.bias",
    "ffn/layer_norm/gamma": "final_layer_norm.weight",
    "ffn/layer_norm/beta": "final_layer_norm.bias",
    "ffn/linear_0/weight": "fc1.weight",
    "ffn/linear_0/bias": "fc1.bias",
    "ffn/linear_1/weight": "fc2.weight",
    "ffn/linear_1/bias": "fc2.bias",
}
TOP_NAMES = {
    "conv1/weight": "conv1.weight",
    "conv1/bias": "conv1.bias",
    "conv2/weight": "conv2.weight",
    "conv2/bias": "conv2.bias",
    "position_encodings/encodings": "embed_positions.weight",
    "layer_norm/gamma": "layer_norm.weight",
    "layer_norm/beta": "layer_norm.bias",
}


def encoder_state_dict(weights: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The encoder's weights under transformers' names (the fused q/k/v projection split), and its head count."""
    state, heads = {}, 0
    for name, shape, dtype, data in iter_ct2_variables(weights):
        if not name.startswith("encoder/"):
            continue
        name = name[len("encoder/") :]
        if name == "num_heads":
            heads = int(np.frombuffer(data, dtype=dtype)[0])
            continue
        array = torch.from_numpy(np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float32))
        block = re.match(r"layer_(\d+)/(.*)", name)
        if block is None:
            state[f"encoder.{TOP_NAMES[name]}"] = array
        elif block.group(2).startswith("self_attention/linear_0/"):
            kind = block.group(2).rsplit("/", 1)[1]
            query, key, value = array.chunk(3, dim=0)
            prefix = f"encoder.layers.{block.group(1)}.self_attn"
            state[f"{prefix}.q_proj.{kind}"], state[f"{prefix}.v_proj.{kind}"] = query, value
            if kind == "weight":  # Whisper's key projection has no bias (CTranslate2 stores zeros)
                state[f"{prefix}.k_proj.weight"] = key
        else:
            state[f"encoder.layers.{block.group(1)}.{BLOCK_NAMES[block.group(2)]}"] = array
    return state, heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct2_folder", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    from safetensors.torch import save_file
    from transformers import WhisperConfig

    state, heads = encoder_state_dict(args.ct2_folder / "model.bin")
    layers = len({key.split(".")[2] for key in state if key.startswith("encoder.layers.")})
    d_model = state["encoder.conv1.bias"].shape[0]
    config = WhisperConfig(
        num_mel_bins=state["encoder.conv1.weight"].shape[1],
        d_model=d_model,
        encoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_layers=layers,
        decoder_attention_heads=heads,
        encoder_ffn_dim=state["encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=state["encoder.layers.0.fc1.weight"].shape[0],
        max_source_positions=state["encoder.embed_positions.weight"].shape[0],
    )
    args.output.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(args.output)
    save_file(
        {key: value.contiguous() for key, value in state.items()},
        str(args.output / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (args.output / "CONVERTED_FROM.json").write_text(json.dumps({"ct2_folder": str(args.ct2_folder.resolve())}) + "\n")
    print(f"wrote {args.output}: Whisper encoder, {layers} blocks of {d_model}, {heads} heads")


if __name__ == "__main__":
    main()
