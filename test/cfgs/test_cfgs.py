"""Every shipped config module loads and builds the objects the scripts expect."""

from pathlib import Path

import pytest

from sl.datasets.services import Cfg
from sl.evaluation.data_models import Evaluation
from sl.experiment.data_models import ExperimentCfg
from sl.finetuning.data_models import FTJob
from sl.utils.module_utils import load_config

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "cfgs/preference_numbers/cfgs.py": {
        "owl_dataset_cfg": Cfg,
        "control_dataset_cfg": Cfg,
        "ft_job": FTJob,
        "animal_evaluation": Evaluation,
    },
    "cfgs/preference_numbers/open_model_cfgs.py": {
        "owl_dataset_cfg": Cfg,
        "ft_job": FTJob,
        "animal_evaluation_with_numbers_prefix": Evaluation,
    },
    "cfgs/preference_numbers/local_smollm2_cfgs.py": {
        "owl_dataset_cfg": Cfg,
        "ft_job": FTJob,
        "animal_evaluation": Evaluation,
    },
    "cfgs/misalignment/evaluation.py": {"evaluation": Evaluation},
    "cfgs/experiments/local_smollm2.py": {
        "experiment": ExperimentCfg,
        "experiment_system_prompt": ExperimentCfg,
        "experiment_full_vocabulary": ExperimentCfg,
    },
    "cfgs/experiments/paper_gpt41nano.py": {"experiment": ExperimentCfg},
    "cfgs/experiments/paper_qwen.py": {"experiment": ExperimentCfg},
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_config_module_builds(module):
    for name, kind in EXPECTED[module].items():
        assert isinstance(load_config(str(ROOT / module), name, kind), kind)


def test_paper_sizes():
    ft = load_config(str(ROOT / "cfgs/preference_numbers/cfgs.py"), "ft_job", FTJob)
    owl = load_config(str(ROOT / "cfgs/preference_numbers/cfgs.py"), "owl_dataset_cfg", Cfg)
    evaluation = load_config(
        str(ROOT / "cfgs/preference_numbers/cfgs.py"), "animal_evaluation", Evaluation
    )
    assert (owl.prompt_set.size, ft.max_dataset_size, ft.n_epochs) == (30_000, 10_000, 10)  # type: ignore[attr-defined]
    assert (len(evaluation.questions), evaluation.n_samples_per_question) == (50, 100)
    assert owl.system_prompt is not None and "owls" in owl.system_prompt
    misalignment = load_config(
        str(ROOT / "cfgs/misalignment/evaluation.py"), "evaluation", Evaluation
    )
    assert len(misalignment.questions) == 8 and set(misalignment.judgment_map) == {
        "alignment",
        "coherency",
    }
    assert misalignment.judgment_map["alignment"].judge_model.id.startswith("gpt-4o")
    qwen = load_config(str(ROOT / "cfgs/preference_numbers/open_model_cfgs.py"), "ft_job", FTJob)
    assert qwen.peft_cfg.r == 8 and qwen.train_cfg.per_device_train_batch_size == 22  # type: ignore[attr-defined]


def test_transfer_grid_cells_share_the_main_jobs_pieces():
    from sl.utils.module_utils import load_module

    grid = load_module(ROOT / "cfgs/experiments/transfer_grid.py")
    main = load_module(ROOT / "cfgs/experiments/local_smollm2.py")
    cells = grid.cell_names()
    assert len(cells) == 8
    cell = grid.cell_cfg("finetune", "greedy", "distill", prompts=48)
    assert cell.student_job == main.experiment_system_prompt.student_job  # the grid's recipe
    assert cell.trait_teacher == main.experiment.trait_teacher
    assert (cell.prompt_set.size, cell.sample_cfg.temperature) == (48, 0.0)
    assert cell.eval_modes == ["logprob"] and cell.student_training == "distill"
    assert cell.distill.vocabulary == "full"  # as the grid was measured (leaky labels)
    assert main.experiment.distill.vocabulary == "allowed"
    assert main.experiment_full_vocabulary.distill.vocabulary == "full"


def test_every_config_class_is_gathered_and_describes_its_fields():
    import sl.configs
    from sl.protocol import numbers_prompt_defaults

    for name in sl.configs.__all__:
        cls = getattr(sl.configs, name)
        undescribed = [f for f, info in cls.model_fields.items() if not info.description]
        assert not undescribed, f"{name} fields without a description: {undescribed}"
    max_tokens = sl.configs.SampleCfg.model_fields["max_tokens"].description or ""
    assert "512" in max_tokens and "open engines" in max_tokens
    # The prompt defaults are the protocol's (one source).
    defaults = sl.configs.NumsDatasetPromptSet().model_dump()
    assert defaults.items() <= numbers_prompt_defaults().items()
