"""Content logged through the official MLflow client for the browser test to find on every page."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

EXPERIMENT = "ui-exp"
RUNS = {"ui-run-alpha": "0.01", "ui-run-beta": "0.05"}  # run name -> its "lr" param
TEXT = "hello from trackstream"
STEPS = 50
REGISTERED = "ui-model"  # the first run's logged model, registered (the Models pages)


@dataclass(frozen=True)
class Logged:
    experiment_id: str
    run_ids: list[str]  # in the order of RUNS
    model_id: str  # the logged model of the first run

    @property
    def first(self) -> str:
        return self.run_ids[0]


def fill(url: str) -> Logged:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.linear_model import LinearRegression

    mlflow.set_tracking_uri(url)
    experiment_id = mlflow.MlflowClient(url).create_experiment(EXPERIMENT)
    run_ids: list[str] = []
    model_id = ""
    for name, lr in RUNS.items():
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.log_params({"lr": lr, "optimizer": "adam"})
            for step in range(STEPS):
                mlflow.log_metrics({"loss": 1.0 / (step + 1) + float(lr), "accuracy": step / STEPS}, step=step)
            mlflow.set_tag("mlflow.note.content", f"Description of {name}")
            mlflow.log_text(TEXT + "\n", "notes/hello.txt")
            fig, ax = plt.subplots(figsize=(3, 2))
            ax.plot([1, 3, 2])
            mlflow.log_figure(fig, "plots/curve.png")
            plt.close(fig)
            mlflow.log_table({"col_a": [1, 2, 3], "col_b": ["x", "y", "z"]}, "tables/results.json")
            model = LinearRegression().fit([[0], [1], [2]], [0, 1, 2])
            if not run_ids:
                # A logged model (the experiment's Models tab) and a model directory among the run's
                # artifacts (the artifact browser's model preview).
                model_id = mlflow.sklearn.log_model(model, name="model").model_id
                with tempfile.TemporaryDirectory() as tmp:
                    mlflow.sklearn.save_model(model, Path(tmp) / "sk_model")
                    mlflow.log_artifacts(str(Path(tmp) / "sk_model"), "sk_model")
            run_ids.append(run.info.run_id)
    mlflow.register_model(f"models:/{model_id}", REGISTERED)
    mlflow.MlflowClient(url).set_registered_model_alias(REGISTERED, "champion", "1")
    return Logged(experiment_id, run_ids, model_id)
