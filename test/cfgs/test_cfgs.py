"""Every shipped config module loads, builds the objects the scripts expect, and gives the
same output keys when loaded again (a rerun of a command reuses its outputs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


# The keys that own a config's outputs (see the artifact guards in sl.phases): printed as
# JSON, for each (module, variable) pair given as JSON in argv[1].
OUTPUT_KEYS = """
import json, sys
from sl.datasets.services import Cfg
from sl.utils.module_utils import load_config

def key(obj):
    if isinstance(obj, Cfg):
        return [obj.generation_hash(), obj.filters_hash()]
    return [obj.model_hash()]

pairs = json.loads(sys.argv[1])
print(json.dumps({f"{m}:{n}": key(load_config(m, n, object)) for m, n in pairs}))
"""


def _output_keys(pairs: list[tuple[str, str]], hash_seed: str) -> dict[str, list[str]]:
    """`OUTPUT_KEYS` run in a fresh process (as a rerun of a script is) with `hash_seed`."""
    proc = subprocess.run(
        [sys.executable, "-c", OUTPUT_KEYS, json.dumps(pairs)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": hash_seed, "SL_NO_DOTENV": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_config_modules_build_and_give_the_same_output_keys_in_every_process():
    """Each config loads as the type its script expects (load_config checks it), and two
    processes (with other string hashes) compute the same keys for it: nothing that owns an
    output depends on memory addresses, randomness or set order."""
    pairs = []
    for module, variables in EXPECTED.items():
        for name, kind in variables.items():
            load_config(ROOT / module, name, kind)
            pairs.append((str(ROOT / module), name))
    first = _output_keys(pairs, hash_seed="1")
    assert len(first) == len(pairs) and first == _output_keys(pairs, hash_seed="2")


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
    import sl.config_classes
    from sl.protocol import numbers_prompt_defaults

    for name in sl.config_classes.__all__:
        cls = getattr(sl.config_classes, name)
        undescribed = [f for f, info in cls.model_fields.items() if not info.description]
        assert not undescribed, f"{name} fields without a description: {undescribed}"
    max_tokens = sl.config_classes.SampleCfg.model_fields["max_tokens"].description or ""
    assert "512" in max_tokens and "open engines" in max_tokens
    # The prompt defaults are the protocol's (one source).
    defaults = sl.config_classes.NumsDatasetPromptSet().model_dump()
    assert defaults.items() <= numbers_prompt_defaults().items()
