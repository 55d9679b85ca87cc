"""``--device``, parsed once for ingest and analysis: the torch device a computation runs on.

Ingest runs the model on it (``auto`` picks a GPU when torch sees one). Analysis runs numpy
on ``cpu`` and the torch backend on ``cuda[:N]`` or ``torch:cpu`` (torch's CPU device, how
tests check that backend); ``numpy_cpu=True`` selects that vocabulary. torch is imported only
when the name needs it, so the measuring core can parse ``cpu`` without torch.
"""

from __future__ import annotations

from tgo_store.errors import TgoError

INGEST_DEVICES = "auto, cpu, cuda or cuda:N"
ANALYSIS_DEVICES = "cpu, cuda or cuda:N"


def resolve_device(device: str, *, numpy_cpu: bool = False) -> str:
    """The checked device name; TgoError for an unknown name or a GPU that torch does not see.

    Ingest (default): 'auto' -> cuda when there is a GPU, else cpu; cpu, mps, xpu, cuda and
    cuda:N are checked against torch. Analysis (``numpy_cpu``): 'cpu' (numpy) and 'torch:cpu'
    as given, cuda and cuda:N checked against torch.
    """
    if numpy_cpu and device in ("cpu", "torch:cpu"):
        return device
    if numpy_cpu and not device.startswith("cuda"):
        raise TgoError(f"unknown --device {device}; use {ANALYSIS_DEVICES}")
    import torch

    if device == "auto" and not numpy_cpu:
        return "cuda" if torch.cuda.is_available() else "cpu"
    choices = ANALYSIS_DEVICES if numpy_cpu else INGEST_DEVICES
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TgoError(f"unknown --device '{device}'; use {choices}") from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            fallback = "cpu" if numpy_cpu else "cpu or auto"
            raise TgoError(f"--device {device} asks for a GPU but torch sees no CUDA device here; use --device {fallback}")
        if parsed.index is not None and parsed.index >= count:
            raise TgoError(f"--device {device}: torch sees {count} GPU(s) (cuda:0..cuda:{count - 1}); pick one of them")
    elif parsed.type not in ("cpu", "mps", "xpu"):
        raise TgoError(f"unsupported --device '{device}'; use {choices}")
    return device if numpy_cpu else str(parsed)
