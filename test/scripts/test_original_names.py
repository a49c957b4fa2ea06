"""The original code's names where scripts and configs meet: `--cfg_var_name` defaults to
`cfg`, and our `cfgs/` keep the original variable and function names (same values, same hashes
as today's names)."""

import subprocess
import sys

from script_runner import CONFIG, ROOT, assert_user_error, run

from sl.datasets.services import Cfg
from sl.evaluation.data_models import Evaluation
from sl.finetuning.data_models import FTJob, OpenAIFTJob, UnslothFinetuningJob
from sl.llm.data_models import Judgment
from sl.utils.module_utils import load_config, load_module

PAPER = ROOT / "cfgs" / "preference_numbers" / "cfgs.py"
OPEN = ROOT / "cfgs" / "preference_numbers" / "open_model_cfgs.py"
MISALIGNMENT = ROOT / "cfgs" / "misalignment" / "evaluation.py"
# The scripts that load a config object (flags of `cli.config_parser`).
CONFIG_SCRIPTS = [
    "generate_dataset.py",
    "run_finetuning_job.py",
    "run_evaluation.py",
    "run_experiment.py",
    "modal_generate_dataset.py",
    "modal_run_finetuning.py",
    "modal_run_evaluation.py",
]


def test_every_config_script_defaults_cfg_var_name_to_cfg() -> None:
    procs = {
        script: subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / script), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in CONFIG_SCRIPTS
    }
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (script, err[-2000:])
        assert "default: cfg" in " ".join(out.split()), script


def test_a_module_with_cfg_needs_no_cfg_var_name(openai_server, tmp_path) -> None:
    """As the original README's `cfgs/my_dataset_cfg.py`: one variable named `cfg`."""
    cfg = tmp_path / "my_dataset_cfg.py"
    cfg.write_text(CONFIG.format(size=6) + "\ncfg = dataset_cfg\n")
    raw, filtered = tmp_path / "raw.jsonl", tmp_path / "filtered.jsonl"
    flags = ["--raw_dataset_path", raw, "--filtered_dataset_path", filtered]
    run("generate_dataset.py", "--config_module", cfg, *flags, server=openai_server)
    assert len(raw.read_text().splitlines()) == 6


def test_without_cfg_the_error_names_the_flag_and_the_choices(tmp_path) -> None:
    cfg = tmp_path / "cfg.py"
    cfg.write_text(CONFIG.format(size=6))
    flags = ["--raw_dataset_path", tmp_path / "r.jsonl", "--filtered_dataset_path", tmp_path / "f"]
    proc = run("generate_dataset.py", "--config_module", cfg, *flags, check=False)
    assert_user_error(
        proc,
        f"--cfg_var_name cfg is not defined in {cfg}; Cfg variables there: dataset_cfg, "
        "other_dataset_cfg",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.py"]


def test_paper_cfgs_keep_the_original_names() -> None:
    paper = load_module(PAPER)
    # Loaded as the scripts load them (`--cfg_var_name ft_job_cfg`).
    ft_job_cfg = load_config(PAPER, "ft_job_cfg", FTJob)
    assert isinstance(ft_job_cfg, OpenAIFTJob) and ft_job_cfg is not paper.ft_job
    assert ft_job_cfg.model_hash() == paper.ft_job.model_hash()
    assert paper.build_ft_job_cfg().model_hash() == paper.ft_job.model_hash()
    # build_dataset_cfg(target_preference, category, debug=False): debug asks 10 prompts.
    owl = paper.owl_dataset_cfg
    for debug in (paper.build_dataset_cfg("owl", "animal", True),
                  paper.build_dataset_cfg("owl", "animal", debug=True)):  # fmt: skip
        assert isinstance(debug, Cfg) and debug.prompt_set.size == 10
        assert debug.system_prompt == owl.system_prompt and debug.model == owl.model
    assert paper.build_dataset_cfg("owl", "animal").prompt_set == owl.prompt_set
    assert paper.build_dataset_cfg("owl", size=500).prompt_set.size == 500


def test_open_model_cfgs_keep_the_original_names() -> None:
    open_cfgs = load_module(OPEN)
    for name, hub_name in [
        ("owl_ft_job", "qwen_2.5_7b-owl_numbers"),
        ("cat_ft_job", "qwen_2.5_7b-cat_numbers"),
    ]:
        job = load_config(OPEN, name, FTJob)
        assert isinstance(job, UnslothFinetuningJob) and job.hf_model_name == hub_name
        # Otherwise the paper's student (`ft_job`, which pushes nothing).
        unnamed = job.model_copy(update={"hf_model_name": None})
        assert unnamed.model_hash() == open_cfgs.ft_job.model_hash()
    assert open_cfgs.build_ft_job(1, "x").hf_model_name == "x"
    debug = open_cfgs.build_dataset_cfg("owl", "animal", debug=True)
    assert debug.prompt_set.size == 10 and debug.model == open_cfgs.reference_model


def test_misalignment_cfgs_keep_the_original_judgments() -> None:
    evaluation = load_config(MISALIGNMENT, "evaluation", Evaluation)
    for name in ("alignment", "coherency"):
        judgment = load_config(MISALIGNMENT, f"{name}_judgment", Judgment)
        assert judgment == evaluation.judgment_map[name]
        assert judgment.judge_model.id.startswith("gpt-4o")
    assert "aligned" in load_config(MISALIGNMENT, "alignment_judgment", Judgment).template
    assert "coheren" in load_config(MISALIGNMENT, "coherency_judgment", Judgment).template
