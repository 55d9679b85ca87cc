"""The torch device a capture runs on, parsed once for every caller (``--device``)."""

from __future__ import annotations

from tgo_store.errors import TgoError


def resolve_device(device: str) -> str:
    """'auto' -> cuda when there is a GPU, else cpu; any other name is checked against torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise TgoError(f"unknown --device '{device}'; use auto, cpu, cuda or cuda:N") from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise TgoError(f"--device {device} asks for a GPU but torch sees none; use --device cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise TgoError(f"--device {device}: torch sees {count} GPU(s) (cuda:0..cuda:{count - 1}); pick one of them")
    elif parsed.type not in ("cpu", "mps", "xpu"):
        raise TgoError(f"unsupported --device '{device}'; use auto, cpu, cuda or cuda:N")
    return str(parsed)
