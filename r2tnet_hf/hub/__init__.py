"""Hub integration: model cards, publishing the best model of a run, and checked loading."""

from .cards import RunRecord, build_model_card, check_card_offline
from .loading import load_model, load_processor
from .publish import find_candidates, publish_run, push_with_card, save_with_card, select_best

__all__ = [
    "RunRecord",
    "build_model_card",
    "check_card_offline",
    "find_candidates",
    "load_model",
    "load_processor",
    "publish_run",
    "push_with_card",
    "save_with_card",
    "select_best",
]
