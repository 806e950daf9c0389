"""PYRA (arXiv 2403.09192): parallel yielding re-activation. Token merging (ToMe) whose merged tokens are
modulated by learned channel and token gates, trained with LoRA (peft) so adaptation and inference are cheap."""
from .gate import PYRAGate
from .merge import PYRAMergeStep, eager_pyra_merge, pyra_merge
from .patch import export, gates, param_groups, patch, unpatch
from .schedule import NAMED as SCHEDULES
from .schedule import rescale, resolve, tokens_per_layer

__all__ = ["PYRAGate", "pyra_merge", "eager_pyra_merge", "PYRAMergeStep", "patch", "unpatch", "param_groups",
           "export", "gates", "SCHEDULES", "rescale", "resolve", "tokens_per_layer"]
