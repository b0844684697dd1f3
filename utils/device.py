"""The compute device a script runs on (``--device auto|cpu|cuda[:N]``)."""
import torch

from utils.errors import UserError


def pick_device(name):
    """``torch.device`` for a ``--device`` value; ``auto`` takes the GPU when there is one.
    Raises UserError for a name that is not a device or a GPU that is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name} is not a device: use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    return device
