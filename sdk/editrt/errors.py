"""Exceptions with stable exit codes: the CLI maps each class to its code, scripts may rely on them."""

from __future__ import annotations


class EditrtError(Exception):
    """Base class of every error editrt raises on purpose."""

    exit_code = 1


class InputError(EditrtError, ValueError):
    """A user input is unusable: an image, a prompt, an argument or a config value."""

    exit_code = 2


class WeightsError(EditrtError):
    """A checkpoint is missing, unreadable, or does not fit the architecture it is loaded into."""

    exit_code = 3


class NumericalError(EditrtError, FloatingPointError):
    """A loss, gradient or output became NaN or infinite."""

    exit_code = 4


class EngineError(EditrtError):
    """An exported artifact is missing, stale, built for another GPU/library, or corrupt."""

    exit_code = 5


class BackendUnavailable(EditrtError):
    """A requested backend (onnxruntime provider, TensorRT, CUDA) is not installed or has no device."""

    exit_code = 6


class EmptyEditWarning(UserWarning):
    """An edit had nothing to change (e.g. DeltaEdit's channel mask removed every channel), so
    its output equals the source. A warning, not an error, so a batch keeps going; turn it into
    one with ``warnings.simplefilter("error", EmptyEditWarning)``."""
