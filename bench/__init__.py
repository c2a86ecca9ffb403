"""Side-by-side benchmark of trackstream against mlflow server (run with ``python -m bench.run``)."""
