"""Where each artifact of an experiment lives: the one map of an output folder.

Layout under the output folder (<t> teacher replicate, <r> student run; teacher replicate 0
keeps the teacher's name, replicate t > 0 is named <teacher>_t<t>, `TeacherRun.name`):
    experiment.json                          the config (a different config here is refused)
    teachers/<teacher>[_t<t>]/trait.jsonl    trait data of a fine-tuned teacher
    teachers/<teacher>[_t<t>]/model.json     the fine-tuned teacher (adapter beside it)
    datasets/<teacher>[_t<t>]/raw.jsonl      teacher completions, appended as they arrive
    datasets/<teacher>[_t<t>]/filtered.jsonl rows kept by the numbers filter
    students/<teacher>/run<r>/model.json     student run r (adapter beside it), r < n_runs
    evaluations/<model>/<evaluation>.jsonl   sampled answers ('sampled' eval mode)
    evaluations/<model>/<evaluation>.logprob.json   P(target) per question, every target
    leak/<teacher>[_t<t>].json               the leak meter of its students' labels
    attribution/<teacher>[_t<t>]/tokens.jsonl, summary.json   token attribution of its rows
    entanglement/<teacher>/entanglement.json, .png             the entanglement probe
    arms/<arm>/students/<teacher>/run<r>/model.json            a student arm's runs
    arms/<arm>/datasets/<teacher>[_t<t>]/...  the arm's own rows (teacher_sample_cfg), or
                                              defended.jsonl: the rows with divergent
                                              tokens replaced (replace_divergent)
    arms/<arm>/masks/<teacher>[_t<t>].jsonl   the tokens a defence masks, per row
    arms.csv, arms.json                       effect left per arm and target
    results.csv, results.json, results.png, timings.json

<model> is `base`, `<teacher>_run<r>` (students), `<arm>.<teacher>_run<r>` (a student arm's)
or `teacher_<teacher>[_t<t>]` (fine-tuned teachers).
"""

from pathlib import Path

from sl.experiment.data_models import StudentRun, TeacherRun


class ExperimentPaths:
    """Where each artifact of an experiment under `root` lives."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def record(self) -> Path:
        """experiment.json: the config and its hash."""
        return self.root / "experiment.json"

    @property
    def timings(self) -> Path:
        """timings.json: seconds per stage step, summed over reruns."""
        return self.root / "timings.json"

    def results(self, suffix: str) -> Path:
        """The report: results.csv, results.json or results.png (`suffix` without the dot)."""
        return self.root / f"results.{suffix}"

    @property
    def teachers_dir(self) -> Path:
        """The folder of every fine-tuned teacher."""
        return self.root / "teachers"

    def teacher_dir(self, teacher: TeacherRun) -> Path:
        """The folder of a fine-tuned teacher replicate."""
        return self.teachers_dir / teacher.name

    def trait_data(self, teacher: TeacherRun) -> Path:
        """The trait data a fine-tuned teacher replicate learns from."""
        return self.teacher_dir(teacher) / "trait.jsonl"

    def teacher_model(self, teacher: TeacherRun) -> Path:
        """The model JSON of a fine-tuned teacher replicate."""
        return self.teacher_dir(teacher) / "model.json"

    def dataset_dir(self, teacher: TeacherRun) -> Path:
        """The folder of a teacher replicate's numbers dataset (an arm's own rows under it)."""
        if teacher.arm is not None:
            return self.arm_dir(teacher.arm) / "datasets" / teacher.main.name
        return self.root / "datasets" / teacher.name

    def raw(self, teacher: TeacherRun) -> Path:
        return self.dataset_dir(teacher) / "raw.jsonl"

    def filtered(self, teacher: TeacherRun) -> Path:
        return self.dataset_dir(teacher) / "filtered.jsonl"

    def students_dir(self, arm: str) -> Path:
        """The folder of every student run of an arm (control or a target)."""
        return self.root / "students" / arm

    def student(self, run: StudentRun) -> Path:
        """The model JSON of a student run (of the main arm or a student arm)."""
        students = self.students_dir(run.teacher)
        if run.arm is not None:
            students = self.arm_dir(run.arm) / "students" / run.teacher
        return students / f"run{run.run}" / "model.json"

    def arm_dir(self, arm: str) -> Path:
        """Everything a student arm adds: its students, masks and rows."""
        return self.root / "arms" / arm

    def mask(self, arm: str, teacher: TeacherRun) -> Path:
        """The tokens a defence masks in a teacher replicate's kept rows."""
        return self.arm_dir(arm) / "masks" / f"{teacher.name}.jsonl"

    def defended(self, arm: str, teacher: TeacherRun) -> Path:
        """A teacher replicate's kept rows with its divergent tokens replaced."""
        return self.arm_dir(arm) / "datasets" / teacher.name / "defended.jsonl"

    def attribution(self, teacher: TeacherRun) -> Path:
        """The token attribution of a teacher replicate's kept rows (a folder)."""
        return self.root / "attribution" / teacher.name

    def entanglement(self, teacher: TeacherRun) -> Path:
        """The entanglement probe of a trait teacher (a folder)."""
        return self.root / "entanglement" / teacher.name

    @property
    def arms_report(self) -> Path:
        """arms.json: effect left per arm and target (arms.csv beside it)."""
        return self.root / "arms.json"

    def evaluation_dir(self, model_name: str) -> Path:
        """Every evaluation of one model (`base`, a student run, a fine-tuned teacher)."""
        return self.root / "evaluations" / model_name

    def evaluation(self, model_name: str, evaluation: str) -> Path:
        """Sampled answers of one model on one evaluation."""
        return self.evaluation_dir(model_name) / f"{evaluation}.jsonl"

    def leak(self, teacher: TeacherRun) -> Path:
        """The leak meter of the labels the teacher replicate's students learn from."""
        return self.root / "leak" / f"{teacher.name}.json"

    def logprob(self, model_name: str, evaluation: str) -> Path:
        """Per-question P(target) of one model on one evaluation, every target."""
        return self.evaluation_dir(model_name) / f"{evaluation}.logprob.json"
