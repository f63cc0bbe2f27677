"""KTO on unpaired desirable/undesirable feedback: ``method=kto``."""

from rlhf.methods import lazy_exports

_CLASSES = {"KTODataModule": "datamodule", "KTOModule": "module"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
