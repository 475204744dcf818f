"""A vLLM general plugin (entry point group `vllm.general_plugins`): Qwen3.5 text serving without torchvision.

vLLM's Qwen3.5 code imports its Qwen3-VL code, which imports `smart_resize` from transformers' Qwen2-VL image
processor module, and that module imports torchvision unconditionally. On a CPU machine PyPI has no torchvision
that matches the CPU torch (its builds link CUDA), so the import fails and no Qwen3.5 checkpoint can be served,
text-only ones included. transformers ships a Pillow implementation of the same processor, with the same
`smart_resize`; where torchvision cannot be imported, this plugin points the torchvision-only module at it.
Text requests never touch image preprocessing; image requests get the Pillow processor, which is what
transformers itself falls back to without torchvision. vLLM loads general plugins in every process it starts
(API server, engine core, workers, its model-inspection subprocess), so the alias is in place everywhere.
"""

from __future__ import annotations

import importlib
import sys

from quant_dag.runtime.version import torchvision_works

TORCHVISION_ONLY = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
PILLOW_TWIN = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"


def register() -> None:
    if TORCHVISION_ONLY in sys.modules or torchvision_works():
        return
    try:
        twin = importlib.import_module(PILLOW_TWIN)
    except ImportError:  # a transformers without the Pillow twin: leave vLLM's own error in place
        return
    sys.modules[TORCHVISION_ONLY] = twin
    setattr(sys.modules[TORCHVISION_ONLY.rsplit(".", 1)[0]], TORCHVISION_ONLY.rsplit(".", 1)[1], twin)
