"""Publishing: a run folder's best model → one Hub commit (or a local folder with `--dry-run`).

The best candidate is chosen by the validation metric that each candidate's `eval_results.json` records (respecting
`greater_is_better`), never by parsing file names. A candidate is any folder under the run holding `eval_results.json`
beside `config.json` and `model.safetensors` (`best/` is the usual one; `checkpoints/step_*` are Accelerate states,
not models). Weights, config and processor are copied byte for byte, the card is rendered, and the folder is uploaded
in a single `HfApi.upload_folder` commit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import FmriInputError
from ..utils import atomic_write_text, current_umask
from .cards import RunRecord, build_model_card, read_json

MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "preprocessor_config.json")
CARD_FILE = "README.md"


@dataclass
class Candidate:
    folder: Path
    metric: str
    value: float
    greater_is_better: bool
    step: int | None = None


def find_candidates(run_dir: str | os.PathLike) -> list[Candidate]:
    """Every publishable folder under `run_dir` with the metric its `eval_results.json` records."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FmriInputError.for_source(run_dir, expected="a run folder", found="no such folder")
    candidates = []
    for results_path in sorted(run_dir.rglob("eval_results.json")):
        folder = results_path.parent
        if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
            continue
        results = read_json(results_path)
        metric, value = results.get("metric"), results.get("value")
        if not metric or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FmriInputError.for_source(
                results_path, expected='"metric" and a numeric "value"', found=f"metric={metric!r}, value={value!r}"
            )
        candidates.append(
            Candidate(
                folder, str(metric), float(value), bool(results.get("greater_is_better", True)), results.get("step")
            )
        )
    if not candidates:
        raise FmriInputError.for_source(
            run_dir,
            expected="a folder with eval_results.json beside config.json and model.safetensors (e.g. best/)",
            found="none",
        )
    return candidates


def _relative(folder: Path, run_dir: Path | None) -> str:
    try:
        return str(folder.relative_to(run_dir)) if run_dir is not None else str(folder)
    except ValueError:
        return str(folder)


def select_best(candidates: list[Candidate], run_dir: str | os.PathLike | None = None) -> Candidate:
    """The best candidate by its recorded metric; candidates recording different metrics or directions are refused,
    each named by its folder (relative to `run_dir`)."""
    run_dir = Path(run_dir) if run_dir is not None else candidates[0].folder.parent
    metrics = {(c.metric, c.greater_is_better) for c in candidates}
    if len(metrics) > 1:
        listing = "; ".join(
            f"{_relative(c.folder, run_dir)}/ records {c.metric} (greater_is_better={c.greater_is_better})"
            for c in candidates
        )
        raise FmriInputError.for_source(
            run_dir,
            expected="candidates recording the same validation metric",
            found=listing,
            hint="publish one of these folders by itself (r2tnet publish RUN_DIR/<folder>), or re-evaluate them "
            "with one metric",
        )
    sign = 1.0 if candidates[0].greater_is_better else -1.0
    return max(candidates, key=lambda c: sign * c.value)  # ties: the first in path order


def _copy_model_files(source: Path, target: Path) -> list[str]:
    copied = []
    for name in MODEL_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
            copied.append(name)
    for shard in sorted(source.glob("model-*.safetensors")):
        shutil.copyfile(shard, target / shard.name)
        copied.append(shard.name)
    return copied


ATLAS_FOLDER = "atlas"


def _ship_atlas(processor, target: Path) -> list[str]:
    """Copy the processor's atlas file (and a label NIfTI's table of names) into `target/atlas/` and point the staged
    `preprocessor_config.json` at it, so that the published model parcellates volumes wherever it is loaded."""
    source = Path(processor.atlas_file) if processor is not None and processor.atlas_file else None
    if source is None or not source.is_file():
        return []
    (target / ATLAS_FOLDER).mkdir()
    names = [source]
    stem = re.sub(r"\.nii(\.gz)?$", "", source.name, flags=re.IGNORECASE)
    if (source.parent / f"{stem}.tsv").is_file() and not source.name.endswith(".dlabel.nii"):
        names.append(source.parent / f"{stem}.tsv")
    for name in names:
        shutil.copyfile(name, target / ATLAS_FOLDER / name.name)
    config_path = target / "preprocessor_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["atlas_file"] = f"{ATLAS_FOLDER}/{source.name}"
    atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return [f"{ATLAS_FOLDER}/{name.name}" for name in names]


def stage_candidate(
    candidate: Path, run_dir: Path | None, target: Path, repo_id: str | None = None, license: str | None = None
) -> list[str]:
    """Write the publishable folder for `candidate` into `target`: model files (copied) and README.md (the card)."""
    from .loading import load_model, load_processor

    model = load_model(candidate)  # refuses unknown model types, missing weights and partial checkpoints
    processor = load_processor(candidate)
    files = _copy_model_files(candidate, target) + _ship_atlas(processor, target)
    run = RunRecord.from_run_dir(run_dir, candidate) if run_dir is not None else RunRecord()
    card = build_model_card(model, processor, run=run, repo_id=repo_id, license=license)
    card.save(target / CARD_FILE)
    return [*files, CARD_FILE]


def upload_staged(folder: Path, repo_id: str, private: bool = False, commit_message: str | None = None, api=None):
    """`create_repo(exist_ok=True)`, then one `upload_folder` commit. Returns the `CommitInfo`.

    The token is whatever `huggingface_hub` finds (`HF_TOKEN`, or `hf auth login`); it is never printed.
    """
    from huggingface_hub import HfApi

    api = api or HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="model",
        commit_message=commit_message or "Upload r2tnet-hf model",
    )


class PublishUploadError(RuntimeError):
    """The upload to the Hub failed (network, HTTP status, authentication, offline mode): one line."""

    @classmethod
    def from_error(cls, repo_id: str, error: Exception) -> PublishUploadError:
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else ""
        hint = ""
        if "401" in text or "403" in text or "token" in text.lower():
            hint = " (log in with `hf auth login` or set HF_TOKEN)"
        elif "offline" in text.lower():
            hint = " (HF_HUB_OFFLINE is set; unset it to upload, or use --dry-run OUT)"
        elif type(error).__name__ in ("ConnectError", "ConnectionError", "ConnectTimeout", "ReadTimeout"):
            hint = " (is the network up? HF_ENDPOINT selects another Hub server; --dry-run OUT writes the folder)"
        return cls(f"upload to {repo_id} failed: {type(error).__name__}: {first_line}{hint}")


@dataclass
class PublishResult:
    candidate: Candidate
    files: list[str]
    dry_run_dir: Path | None = None
    commit_url: str | None = None
    commit_oid: str | None = None


def publish_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    dry_run: str | os.PathLike | None = None,
    license: str | None = None,
    api=None,
) -> PublishResult:
    """Publish the best candidate of `run_dir` to `repo_id` in one commit, or write it to `dry_run` (atomically)."""
    run_dir = Path(run_dir)
    best = select_best(find_candidates(run_dir), run_dir)
    if dry_run is not None:
        out = Path(dry_run)
        if out.exists() and not (out / CARD_FILE).is_file():
            raise FmriInputError.for_source(
                out, expected="a new folder, or one a previous dry run wrote", found="other content"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        staging.chmod(0o777 & ~current_umask())
        try:
            files = stage_candidate(best.folder, run_dir, staging, repo_id=repo_id, license=license)
            old = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
            if old is not None:
                out.rename(old)
            staging.rename(out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return PublishResult(best, files, dry_run_dir=out)
    with tempfile.TemporaryDirectory(prefix="r2tnet-publish-") as staging:
        files = stage_candidate(best.folder, run_dir, Path(staging), repo_id=repo_id, license=license)
        message = f"Upload {best.folder.name} ({best.metric} = {best.value:.4g})"
        try:
            commit = upload_staged(Path(staging), repo_id, private=private, commit_message=message, api=api)
        except Exception as error:  # network, HTTP, auth, offline mode: one line, never the token
            raise PublishUploadError.from_error(repo_id, error) from error
    return PublishResult(best, files, commit_url=str(commit.commit_url), commit_oid=commit.oid)


def save_with_card(
    model,
    processor,
    folder: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """`model.save_pretrained` + `processor.save_pretrained` + README.md (the model card) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)
    run = RunRecord.from_run_dir(run_dir) if run_dir is not None else RunRecord()
    build_model_card(model, processor, run=run, repo_id=repo_id, license=license).save(folder / CARD_FILE)
    return folder


def push_with_card(
    model,
    processor,
    repo_id: str,
    run_dir: str | os.PathLike | None = None,
    private: bool = False,
    license: str | None = None,
    api=None,
):
    """`push_to_hub` with the card: save model, processor and card to a temporary folder, then one commit."""
    with tempfile.TemporaryDirectory(prefix="r2tnet-push-") as staging:
        save_with_card(model, processor, staging, run_dir=run_dir, repo_id=repo_id, license=license)
        return upload_staged(Path(staging), repo_id, private=private, api=api)


__all__ = [
    "Candidate",
    "PublishResult",
    "find_candidates",
    "publish_run",
    "push_with_card",
    "save_with_card",
    "select_best",
    "stage_candidate",
    "upload_staged",
]
