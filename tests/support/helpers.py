"""Small helpers shared by test modules."""

import torch


def modules_of(model: torch.nn.Module, cls: type) -> list:
    """The submodules of ``model`` that are instances of ``cls``, in order."""
    return [m for m in model.modules() if isinstance(m, cls)]


def permission_denied(*args, **kwargs):
    """A stand-in for a file-system call in a folder the process may not write to (the tests run as root)."""
    raise PermissionError(13, "Permission denied")
