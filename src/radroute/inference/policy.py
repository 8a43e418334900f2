"""Which model sees which image: the one place that decides, for every command and the router.

A :class:`ModelPolicy` is plain data (decode worker processes receive a copy). It picks the first
model for an image from its tags before the pixels are decoded, and names the models that may
follow it (a *cascade*: a stage's answer on one task picks the next model, e.g. an X-ray whose
body part is chest goes on to the view model), so each image is read once and prepared for every
model that may see it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from radroute.errors import NoPixelDataError, WrongModalityError
from radroute.io.types import Metadata

#: DICOM Modality -> bundled model used when no model is forced.
DEFAULT_MODEL_FOR_MODALITY: dict[str, str] = {
    "CR": "chest-view", "DX": "chest-view", "DR": "chest-view",
    "CT": "ct-mr-region", "MR": "ct-mr-region",
}
#: the bundled model for inputs without a modality tag (PNG, JPEG, TIFF, NIfTI).
DEFAULT_MODEL_NO_MODALITY = "ct-mr-region"


@dataclass(frozen=True)
class ModelPolicy:
    """Modality -> model name, and the model for images without a Modality tag."""

    by_modality: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_FOR_MODALITY))
    untagged: str = DEFAULT_MODEL_NO_MODALITY
    #: model -> (task, {label: next model}): after that model, a non-abstained label of that
    #: task sends the image on to the next model
    then: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """Every model this policy may choose, sorted."""
        follow = {m for _, nxt in self.then.values() for m in nxt.values()}
        return sorted({*self.by_modality.values(), self.untagged, *follow})

    def next_model(self, model: str, predictions: dict) -> str | None:
        """The model after ``model`` given its task predictions (``TaskPrediction`` by task)."""
        if model not in self.then:
            return None
        task, nxt = self.then[model]
        answer = predictions.get(task)
        if answer is None or answer.abstained:
            return None
        return nxt.get(answer.label)

    def stages_for(self, meta: Metadata) -> list[str]:
        """:meth:`model_for` and every model that may follow it, in stage order."""
        order = [self.model_for(meta)]
        for model in order:
            for nxt in self.then.get(model, ("", {}))[1].values():
                if nxt not in order:
                    order.append(nxt)
        return order

    def model_for(self, meta: Metadata) -> str:
        """The model for an image with these tags.

        DICOM without pixels raises :class:`NoPixelDataError`; a DICOM modality no model covers
        raises :class:`WrongModalityError`; non-DICOM inputs get :attr:`untagged`.
        """
        modality = (meta.modality or "").upper() if meta.format == "dicom" else ""
        if meta.format == "dicom" and not meta.rows:  # SR, RT plan ...: say so, not "wrong modality"
            raise NoPixelDataError(f"no Pixel Data (modality {modality or 'unknown'}): nothing to "
                                   "classify", meta.path)
        if not modality:
            return self.untagged
        if modality in self.by_modality:
            return self.by_modality[modality]
        raise WrongModalityError(
            f"no bundled model covers modality {modality}; pass --model to classify it anyway", meta.path)

    def describe(self) -> str:
        """One line for users: which modality goes to which model."""
        groups: dict[str, list[str]] = {}
        for modality, model in self.by_modality.items():
            groups.setdefault(model, []).append(modality)
        table = ", ".join(f"{'/'.join(m)} -> {model}" for model, m in groups.items())
        return (f"the model is chosen per file from its DICOM Modality ({table}); inputs without a "
                f"Modality tag (PNG, JPEG, NIfTI) use {self.untagged}; other modalities get a "
                "wrong_modality error. The record's `model` field names the model used.")
