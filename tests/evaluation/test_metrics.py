"""The local evaluate metric modules against reference computations written out here (no sklearn)."""

import itertools
import math

import numpy as np
import pytest

from r2tnet_hf.evaluation import METRIC_NAMES, load_metric, metric_path


def reference_pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def reference_auroc(scores, positives):
    """Probability that a random positive outscores a random negative, ties counting one half."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def data():
    generator = np.random.default_rng(0)
    references = generator.standard_normal(30)
    return references + 0.7 * generator.standard_normal(30), references


def test_every_metric_ships_as_a_module_whose_folder_matches_its_file():
    for name in METRIC_NAMES:
        assert (metric_path(name) / f"{name}.py").is_file()
    assert metric_path("val_mae") == metric_path("mae")
    with pytest.raises(ValueError, match="shipped metrics"):
        metric_path("accuracy")


def test_regression_metrics_match_the_reference(data):
    predictions, references = data
    x, y = predictions.tolist(), references.tolist()
    r = load_metric("pearson_r").compute(predictions=x, references=y)["pearson_r"]
    assert r == pytest.approx(reference_pearson(x, y), abs=1e-12)
    mse = load_metric("mse").compute(predictions=x, references=y)["mse"]
    assert mse == pytest.approx(sum((a - b) ** 2 for a, b in zip(x, y)) / len(x), abs=1e-12)
    mae = load_metric("val_mae").compute(predictions=x, references=y)["mae"]
    assert mae == pytest.approx(sum(abs(a - b) for a, b in zip(x, y)) / len(x), abs=1e-12)
    # Missing phenotypes (NaN) are left out, not propagated.
    with_missing = load_metric("mae").compute(predictions=[*x, 5.0], references=[*y, float("nan")])["mae"]
    assert with_missing == pytest.approx(mae, abs=1e-12)


def test_balanced_accuracy_is_the_mean_of_per_class_recall_not_accuracy():
    metric = load_metric("balanced_accuracy")
    references = [0, 0, 0, 0, 1, 1]
    predictions = [0, 0, 0, 0, 0, 1]  # plain accuracy 5/6; recalls 4/4 and 1/2
    assert metric.compute(predictions=predictions, references=references)["balanced_accuracy"] == pytest.approx(0.75)
    majority = metric.compute(predictions=[0] * 6, references=references)["balanced_accuracy"]
    assert majority == pytest.approx(0.5)
    # Three classes; class 2 is predicted but absent from the references: it only costs recall.
    value = metric.compute(predictions=[0, 2, 1, 1, 1], references=[0, 0, 1, 1, 1])["balanced_accuracy"]
    assert value == pytest.approx((1 / 2 + 3 / 3) / 2)


def test_auroc_binary_and_one_vs_rest_match_the_pairwise_reference():
    generator = np.random.default_rng(1)
    labels = generator.integers(0, 2, 40)
    scores = np.round(labels * 0.5 + generator.standard_normal(40), 1)  # rounding makes ties
    binary = load_metric("auroc").compute(prediction_scores=scores.tolist(), references=labels.tolist())["auroc"]
    assert binary == pytest.approx(reference_auroc(scores.tolist(), labels.tolist()), abs=1e-12)

    classes = generator.integers(0, 3, 45)
    class_scores = np.eye(3)[classes] * 0.8 + generator.random((45, 3))
    multi = load_metric("auroc").compute(prediction_scores=class_scores.tolist(), references=classes.tolist())
    expected = np.mean([reference_auroc(class_scores[:, c].tolist(), (classes == c).tolist()) for c in range(3)])
    assert multi["auroc"] == pytest.approx(expected, abs=1e-12)


def test_fingerprint_metric_counts_a_known_swap():
    generator = np.random.default_rng(2)
    session_a = generator.standard_normal((4, 12))
    session_b = session_a[[0, 2, 1, 3]] + 0.01 * generator.standard_normal((4, 12))  # subjects 1 and 2 swapped
    result = load_metric("fingerprint").compute(predictions=session_a.tolist(), references=session_b.tolist())
    assert result["rank1_a2b"] == pytest.approx(0.5) and result["rank1_b2a"] == pytest.approx(0.5)
    labelled = load_metric("fingerprint").compute(
        predictions=session_a.tolist(),
        references=session_b.tolist(),
        query_subjects=["a", "b", "c", "d"],
        database_subjects=["a", "c", "b", "d"],  # the labels follow the swap: every row is found
    )
    assert labelled["rank1_a2b"] == 1.0 and labelled["map"] == 1.0


def test_multi_class_auroc_scores_class_probabilities_not_logits():
    from r2tnet_hf.training.metrics import phenotype_metrics

    # the first row has the larger class-2 logit but, after the softmax, the smaller class-2 probability
    logits = np.array([[10.0, 9.0, 0.0], [0.0, 0.0, -1.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])
    references = np.array([0, 2, 1, 0])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.mean([reference_auroc(probabilities[:, c].tolist(), (references == c).tolist()) for c in range(3)])
    by_logits = np.mean([reference_auroc(logits[:, c].tolist(), (references == c).tolist()) for c in range(3)])
    assert expected != pytest.approx(by_logits)
    found = phenotype_metrics("single_label_classification", logits, references)["val_auroc"]
    assert found == pytest.approx(expected, abs=1e-12)
