"""Identification ("fingerprinting") from two signature matrices (a local `evaluate` module of r2tnet_hf).

`predictions` are the signatures of one session (or modality), `references` those of the other. Row i of each
belongs to subject i unless `query_subjects` / `database_subjects` say otherwise (then a subject may have several
rows). Reports Rank-1 both ways and mean average precision; see `r2tnet_hf.evaluation.identification`.
"""

import datasets
import evaluate

from r2tnet_hf.evaluation.fingerprinting import identification
from r2tnet_hf.evaluation.metric_support import metric_info

_DESCRIPTION = "Rank-1 identification in both directions and mAP between two sets of brain signatures."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): signatures of session A, one row per scan.
    references (`list[list[float]]`): signatures of session B, one row per scan (as many rows as `predictions`:
        `evaluate` pairs them up; for unequal sides call `r2tnet_hf.evaluation.identification` directly).
    query_subjects (`list[str]`, *optional*): the subject of each row of `predictions` (default: row index).
    database_subjects (`list[str]`, *optional*): the subject of each row of `references` (default: row index).
Returns:
    rank1_a2b, rank1_b2a, map_a2b, map_b2a, map (`float`).
"""


class Fingerprint(evaluate.Metric):
    def _info(self):
        signature = datasets.Sequence(datasets.Value("float32"))
        return metric_info(_DESCRIPTION, _KWARGS_DESCRIPTION, {"predictions": signature, "references": signature})

    def _compute(self, predictions, references, query_subjects=None, database_subjects=None):
        query_subjects = list(range(len(predictions))) if query_subjects is None else list(query_subjects)
        database_subjects = list(range(len(references))) if database_subjects is None else list(database_subjects)
        result = identification(predictions, references, query_subjects, database_subjects)
        return {key: result[key] for key in ("rank1_a2b", "rank1_b2a", "map_a2b", "map_b2a", "map")}
