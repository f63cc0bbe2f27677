"""Direct preference optimisation and its variants (cDPO, rDPO, IPO, SLiC-hinge, RPO): ``method=dpo``."""

from rlhf.methods import lazy_exports

_CLASSES = {"DPODataModule": "datamodule", "DPOModule": "module"}
__all__ = list(_CLASSES)
__getattr__ = lazy_exports(__name__, _CLASSES)
