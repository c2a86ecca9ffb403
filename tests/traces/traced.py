"""The traced functions the trace tests and the trace differential session call: a pipeline with a nested
retriever span and an LLM span, and a call that fails."""

from __future__ import annotations

import mlflow


@mlflow.trace(span_type="LLM")
def answer(question: str) -> str:
    return question.upper()


@mlflow.trace
def pipeline(question: str) -> str:
    with mlflow.start_span("retrieve", span_type="RETRIEVER") as span:
        span.set_inputs({"q": question})
        span.set_attribute("retriever.k", 2)
        span.set_outputs(["doc-1", "doc-2"])
    return answer(question)


@mlflow.trace(name="failing", attributes={"kind": "bad"})
def failing() -> None:
    raise ValueError("boom")
