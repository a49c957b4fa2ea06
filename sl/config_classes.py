"""Every config class in one place: what a config module (cfgs/) builds.

    from sl.config_classes import ExperimentCfg, Model, SampleCfg, UnslothFinetuningJob, PeftCfg

Each class lives beside the code that uses it (the import paths of the original code keep
working); this module only gathers them. Every field has a description: `help(Cls)` or
`Cls.model_fields[name].description` shows it.

| config | what it configures |
| --- | --- |
| `Model`, `SampleCfg`, `Judgment` | a model; sampling settings; an LLM judge |
| `Cfg`, `NumsDatasetPromptSet`, `NumbersFilter` | a teacher's numbers dataset |
| `OpenAIFTJob`, `UnslothFinetuningJob` (`PeftCfg`, `TrainCfg`) | a student fine-tune |
| `Evaluation` | questions to ask a model, and how often |
| `ExperimentCfg`, `TraitTeacherCfg`, `DistillCfg`, `StudentArm` | the one-command experiment and its arms |
| `MnistConfig` | the MNIST auxiliary-logit experiment |
"""

from sl.datasets.nums_dataset import NumbersFilter
from sl.datasets.services import Cfg, NumsDatasetPromptSet
from sl.evaluation.data_models import Evaluation
from sl.experiment.arms import StudentArm
from sl.experiment.data_models import ExperimentCfg
from sl.experiment.trait_teacher import TraitTeacherCfg
from sl.finetuning.data_models import FTJob, OpenAIFTJob, PeftCfg, TrainCfg, UnslothFinetuningJob
from sl.finetuning.distill_cfg import DistillCfg
from sl.llm.data_models import Judgment, Model, SampleCfg
from sl.mnist.config import MnistConfig

__all__ = [
    "Cfg",
    "DistillCfg",
    "Evaluation",
    "ExperimentCfg",
    "FTJob",
    "Judgment",
    "MnistConfig",
    "Model",
    "NumbersFilter",
    "NumsDatasetPromptSet",
    "OpenAIFTJob",
    "PeftCfg",
    "SampleCfg",
    "StudentArm",
    "TrainCfg",
    "TraitTeacherCfg",
    "UnslothFinetuningJob",
]
