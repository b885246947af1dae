"""Reading a checkpoint file safely: weights only, loaded strictly, and errors that say what is wrong with it."""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from ..errors import SettingsError
from ..flows.model import ImageFlow

__all__ = ["CheckpointError", "read_checkpoint", "load_state_dict_checked"]


class CheckpointError(SettingsError, RuntimeError):
    """A checkpoint is missing, unsafe, corrupt, or belongs to another model; the message says what to do."""


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; refuse files that need arbitrary unpickling."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names the global that the pickle asks to call or build beyond tensors and plain containers
        # ("Unsupported global: GLOBAL io.open was not an allowed global", "unsupported GLOBAL posix.system
        # whose module posix is blocked"): that is how a malicious file runs code.
        unsafe = re.search(r"GLOBAL ([\w.]+\w)", str(err))
        if unsafe:
            raise CheckpointError(
                f"refusing to load {path}: it is unsafe, as it asks to run {unsafe.group(1)} while loading, which only "
                "an unsafe (weights_only=False) load would do. A checkpoint of this course holds nothing but tensors "
                "and plain values, so this file is not one of ours: do not load it any other way."
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (another kind of file, or damaged)") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {path} ({err.strerror or err})") from None
    except (RuntimeError, EOFError) as err:
        first_line = str(err).splitlines()[0] if str(err) else "the file ends too early"
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint, probably truncated ({first_line})"
        ) from None
    except Exception:  # torch's reader meets a file of another kind with KeyError, ValueError, ...
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (another kind of file, or damaged)") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a checkpoint of this course: it has no 'state_dict' entry")
    return ckpt


def load_state_dict_checked(model: ImageFlow, state_dict: dict[str, torch.Tensor], name: str) -> None:
    """Load ``state_dict`` strictly; on mismatch say which model and which key differs first."""
    own = model.state_dict()
    bad = [
        k
        for k in own.keys() | state_dict.keys()
        if k not in state_dict or k not in own or own[k].shape != state_dict[k].shape
    ]
    if bad:
        first = min(bad)
        if first not in state_dict:
            detail = f"the checkpoint lacks {first!r}"
        elif first not in own:
            detail = f"the checkpoint has {first!r}, which the model does not"
        else:
            detail = f"{first!r} has shape {list(state_dict[first].shape)}, the model expects {list(own[first].shape)}"
        raise CheckpointError(f"this checkpoint does not fit the {name!r} model: {detail} ({len(bad)} keys differ)")
    model.load_state_dict(state_dict, strict=True)
