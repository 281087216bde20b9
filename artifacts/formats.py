"""Loading model artifacts: skops by default (only listed types), ONNX graphs (standard operators
unless others are listed), joblib only when trusted. Each loader's library is imported at its first
use, so a process that only names formats (the gateway, until an upload) starts without them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

# Types that skops does not trust by default but that plain scikit-learn models need.
# Keep this list short: every entry widens what an uploaded file may construct.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
)


class ArtifactFormat(StrEnum):
    SKOPS = "skops"
    JOBLIB = "joblib"
    ONNX = "onnx"

    @classmethod
    def from_filename(cls, filename: str) -> ArtifactFormat:
        suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        try:
            return cls(suffix)
        except ValueError:
            raise ArtifactError(
                f"unsupported artifact file {filename!r}: expected one of "
                + ", ".join(f".{member.value}" for member in cls)
            ) from None


class ArtifactError(ValueError):
    """The bytes are not a loadable, safe scikit-learn model."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_artifact(data: bytes, fmt: ArtifactFormat, trusted_types: Sequence[str] = ()) -> Any:
    """Return the estimator in `data`; raise ArtifactError for anything else.

    skops files may only contain scikit-learn's own types, DEFAULT_TRUSTED_TYPES and `trusted_types`;
    ONNX graphs only the standard operator domains and those in `trusted_types`.
    """
    if fmt is ArtifactFormat.ONNX:
        from artifacts.onnx_model import OnnxModel  # onnxruntime: loaded only where ONNX is served

        return OnnxModel(data, trusted_types)
    model = _load_skops(data, trusted_types) if fmt is ArtifactFormat.SKOPS else _load_joblib(data)
    if not callable(getattr(model, "predict", None)) and not callable(getattr(model, "transform", None)):
        raise ArtifactError(
            f"artifact holds a {type(model).__name__}, which has no predict() nor transform()"
        )
    return model


def _load_skops(data: bytes, trusted_types: Sequence[str]) -> Any:
    import skops.io as sio  # with scikit-learn: 2 s of CPU at import

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises many kinds on corrupt zips
        raise ArtifactError(f"not a valid skops file: {exc}") from None
    refused = sorted(set(untrusted) - set(DEFAULT_TRUSTED_TYPES) - set(trusted_types))
    if refused:
        raise ArtifactError(
            f"skops file contains untrusted types: {', '.join(refused)}; "
            "allow them explicitly with trusted_types if you trust this file"
        )
    try:
        return sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactError(f"skops file could not be loaded: {exc}") from None


def _load_joblib(data: bytes) -> Any:
    import joblib

    # joblib executes code while loading: callers only get here for trusted uploads.
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:
        raise ArtifactError(f"joblib file could not be loaded: {exc}") from None
