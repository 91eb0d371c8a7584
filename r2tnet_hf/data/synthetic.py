"""A synthetic rest + task cohort with known structure, written as files plus a manifest (the full file path).

Per subject: a connectivity structure `A_s = A_0 + strength · B_s / √V` (a shared mixing matrix plus a subject's own).
Per session: a fresh draw `x = A_s z + noise`, with `z` an AR(1) latent whose correlation time is `correlation_time`
seconds, so autocorrelation is realistic at any TR. Task scans add a block design (20 s on, 20 s off) convolved with a
canonical double-gamma HRF, on a task map shared by all subjects. The phenotype `score` is linked to each subject's
connectivity (and predictable from FC).

Task scans differ from rest in three ways, each a stated prior rather than a setting tuned for a method:

- a shared task map activated by the block design, with a subject's own amplitude (`task_amplitude` ×
  lognormal(0, `task_amplitude_spread`)) and map (the shared map plus `task_map_spread` × a subject's own, rescaled);
- a connectivity change shared by everyone (`task_connectivity` · D / √V): what state-centring removes;
- a subject × state interaction (`state_interaction` · C_s / √V, C_s drawn per subject): the part of a person's task
  connectivity that their rest does not predict, which no method can recover.

With all three at 0 (the defaults of `make_synthetic_cohort`) a task scan is rest plus the same additive block
response for everyone, a cohort on which subtracting each state's mean is almost all there is to learn.

Individual differences `B_s` come in two kinds:

- `modes=None`: `B_s` is an independent Gaussian V × V matrix per subject, spread evenly over every connection; the
  phenotype is a fixed linear read-out of `B_s` plus noise. No shared structure tells subjects apart, so a model
  can only learn from it what to ignore (state, noise), never which differences matter.
- `modes=K`: `B_s = √(1 − ι²) · Σ_k w_sk P_k / √K + ι · E_s`, with K population modes `P_k` shared by everyone,
  each subject's loadings `w_s ~ N(0, I_K)`, and an idiosyncratic part `E_s` of share ι = `idiosyncratic`. Individual
  differences in functional connectivity concentrate in modes of this kind, one of them linked to behaviour (Smith et
  al., 2015, Nat. Neurosci. 18:1565); here the phenotype is a fixed linear read-out of the loadings `w_s` plus noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FmriInputError
from .manifest import Manifest, ScanRecord, write_manifest


def canonical_hrf(repetition_time: float, duration: float = 32.0) -> np.ndarray:
    """SPM-style double-gamma HRF (peak ≈ 5 s, undershoot ≈ 15 s, ratio 1/6), sampled every TR, peak 1."""
    from scipy.stats import gamma

    t = np.arange(0.0, duration, repetition_time)
    hrf = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return hrf / hrf.max()


def block_design(frames: int, repetition_time: float, block_seconds: float = 20.0) -> np.ndarray:
    """A boxcar of alternating rest/task blocks convolved with the HRF, scaled to unit peak."""
    t = np.arange(frames) * repetition_time
    boxcar = ((t // block_seconds) % 2 == 1).astype(np.float64)
    response = np.convolve(boxcar, canonical_hrf(repetition_time))[:frames]
    return response / max(response.max(), 1e-12)


def ar1(generator: np.random.Generator, rows: int, frames: int, rho: float) -> np.ndarray:
    """Unit-variance AR(1) series (rows, frames) with lag-1 correlation `rho`."""
    noise = generator.standard_normal((rows, frames))
    series = np.empty_like(noise)
    series[:, 0] = noise[:, 0]
    scale = np.sqrt(1.0 - rho**2)
    for t in range(1, frames):
        series[:, t] = rho * series[:, t - 1] + scale * noise[:, t]
    return series


def individual_differences(
    generator: np.random.Generator,
    subjects: int,
    rois: int,
    readout: np.ndarray,
    modes: int | None = None,
    idiosyncratic: float = 0.3,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each subject's own connectivity `B_s` (V × V) and its phenotype before standardisation and noise.

    `modes=None`: independent Gaussian `B_s`, phenotype `<readout, B_s> / V`. `modes=K`: `B_s` from K population modes
    (loadings `w_s`) plus the idiosyncratic share, phenotype a fixed linear read-out of `w_s`.
    """
    own = [generator.standard_normal((rois, rois)) for _ in range(subjects)]
    if modes is None:
        return own, np.array([float(np.sum(readout * b)) / rois for b in own])
    population_modes = generator.standard_normal((modes, rois, rois))
    loadings = generator.standard_normal((subjects, modes))
    raw_scores = loadings @ generator.standard_normal(modes)
    shared_part = np.sqrt(1.0 - idiosyncratic**2) / np.sqrt(modes)
    own = [shared_part * np.tensordot(w, population_modes, 1) + idiosyncratic * e for w, e in zip(loadings, own)]
    return own, raw_scores


# How task scans differ from rest across people (module docstring): each a weight >= 0.
TASK_SPREADS = ("task_amplitude_spread", "task_map_spread", "task_connectivity", "state_interaction")


def make_synthetic_cohort(
    out_dir: str | os.PathLike,
    subjects: int = 16,
    sessions: int = 2,
    rois: int = 32,
    frames: int = 300,
    repetition_time: float = 0.8,
    task: bool = True,
    phenotype: bool = True,
    subject_strength: float = 0.8,
    noise: float = 0.5,
    correlation_time: float = 3.0,
    task_amplitude: float = 1.0,
    seed: int = 0,
    roi_labels: list[str] | None = None,
    modes: int | None = None,
    idiosyncratic: float = 0.3,
    progress: bool = False,
    task_amplitude_spread: float = 0.0,
    task_map_spread: float = 0.0,
    task_connectivity: float = 0.0,
    state_interaction: float = 0.0,
) -> Manifest:
    """Write the cohort under `out_dir` (one TSV per scan, rows = timepoints) and `out_dir/manifest.tsv`.

    `modes` and `idiosyncratic` shape the individual differences, `task_amplitude_spread`, `task_map_spread`,
    `task_connectivity` and `state_interaction` how task scans differ from rest (see the module docstring);
    `progress` shows a bar over subjects.

    `roi_labels` names the columns (default `roi_000`, ...); giving another cohort's names puts both in one parcel
    order, so one model and processor read both.
    """
    from tqdm.auto import tqdm

    spreads = dict(zip(TASK_SPREADS, (task_amplitude_spread, task_map_spread, task_connectivity, state_interaction)))
    labels = _checked_labels(subjects, sessions, rois, frames, modes, idiosyncratic, roi_labels, spreads)
    out_dir = Path(out_dir)
    generator = np.random.default_rng(seed)
    shared, task_map, own, scores = _draw_people(generator, subjects, rois, modes, idiosyncratic)
    # the task's variation across people, from a generator of its own so that the defaults leave cohorts unchanged
    task_generator = np.random.default_rng([seed, 1])
    task_change, amplitudes, maps = _draw_task_variation(task_generator, task_map, subjects, task_amplitude, spreads)
    design = block_design(frames, repetition_time)
    rho = float(np.exp(-repetition_time / correlation_time))

    records = []
    for s in tqdm(range(subjects), desc="synthetic cohort", unit="subject", disable=not progress):
        subject = f"sub-{s + 1:03d}"
        mixing = shared + subject_strength * own[s] / np.sqrt(rois)
        interaction = state_interaction * task_generator.standard_normal((rois, rois)) / np.sqrt(rois)
        task_state = (mixing + task_change + interaction, amplitudes[s] * np.outer(maps[s], design))
        for session, modality, task_name in _scans(sessions, task):
            state = task_state if modality == "task" else (mixing, None)
            series = _draw_scan(generator, *state, rho, noise, frames)
            relative = _write_scan(out_dir, subject, session, task_name, labels, series)
            phenotypes = {"score": f"{scores[s]:.6f}"} if phenotype else {}
            records.append(
                ScanRecord(subject, session, modality, task_name, relative, repetition_time, phenotypes, len(records))
            )
    manifest = Manifest(records, ["score"] if phenotype else [], out_dir / "manifest.tsv")
    write_manifest(manifest, out_dir / "manifest.tsv")
    return manifest


def _checked_labels(subjects, sessions, rois, frames, modes, idiosyncratic, roi_labels, spreads: dict) -> list[str]:
    """The ROI names, once the cohort's settings are checked."""
    if subjects < 1 or sessions < 1 or rois < 2 or frames < 2:
        raise FmriInputError.for_source(
            "synthetic cohort",
            expected="subjects >= 1, sessions >= 1, rois >= 2 and frames >= 2 (--subjects, --sessions, --rois, --frames)",
            found=f"{subjects}, {sessions}, {rois} and {frames}",
        )
    if modes is not None and modes < 1:
        raise FmriInputError.for_source("--modes", expected="none, or 1 or more", found=f"{modes}")
    if not 0.0 <= idiosyncratic <= 1.0:
        raise FmriInputError.for_source("--idiosyncratic", expected="a weight in [0, 1]", found=f"{idiosyncratic}")
    labels = list(roi_labels) if roi_labels is not None else [f"roi_{i:03d}" for i in range(rois)]
    if len(labels) != rois:
        raise ValueError(f"roi_labels has {len(labels)} names for {rois} ROIs")
    for name, value in spreads.items():
        if value < 0:
            raise FmriInputError.for_source(f"--{name.replace('_', '-')}", expected=">= 0", found=f"{value}")
    return labels


def _draw_people(generator: np.random.Generator, subjects: int, rois: int, modes: int | None, idiosyncratic: float):
    """The shared mixing matrix, the task map, each subject's own connectivity `B_s` and their phenotype (standardised,
    plus noise), drawn in this order."""
    shared = generator.standard_normal((rois, rois)) / np.sqrt(rois)
    task_map = generator.standard_normal(rois)
    readout = generator.standard_normal((rois, rois))
    own, raw_scores = individual_differences(generator, subjects, rois, readout, modes, idiosyncratic)
    scores = (raw_scores - raw_scores.mean()) / (raw_scores.std() or 1.0) + 0.3 * generator.standard_normal(subjects)
    return shared, task_map, own, scores


def _draw_task_variation(task_generator, task_map: np.ndarray, subjects: int, task_amplitude: float, spreads: dict):
    """The task's connectivity change shared by everyone, each subject's task amplitude and each subject's task map
    (rescaled to the shared map's norm)."""
    rois = len(task_map)
    task_change = spreads["task_connectivity"] * task_generator.standard_normal((rois, rois)) / np.sqrt(rois)
    amplitude_spread = spreads["task_amplitude_spread"]
    amplitudes = task_amplitude * np.exp(amplitude_spread * task_generator.standard_normal(subjects))
    maps = task_map + spreads["task_map_spread"] * task_generator.standard_normal((subjects, rois))
    maps *= np.linalg.norm(task_map) / np.linalg.norm(maps, axis=1, keepdims=True)
    return task_change, amplitudes, maps


def _scans(sessions: int, task: bool):
    """A subject's scans in the order they are drawn: `(session, modality, task name)`."""
    for number in range(1, sessions + 1):
        for modality, task_name in (("rest", "rest"), ("task", "blocks")) if task else (("rest", "rest"),):
            yield f"ses-{number}", modality, task_name


def _draw_scan(generator, mixing: np.ndarray, response: np.ndarray | None, rho: float, noise: float, frames: int):
    """One scan `(V, T)`: `mixing` times a fresh AR(1) latent, plus the task `response` if any, plus noise."""
    rois = len(mixing)
    signal = mixing @ ar1(generator, rois, frames, rho)
    if response is not None:
        signal = signal + response
    return signal + noise * generator.standard_normal((rois, frames))


def _write_scan(out_dir: Path, subject: str, session: str, task_name: str, labels: list[str], series) -> str:
    """Write a `(V, T)` series as a TSV (a header of ROI names, one row per frame); returns its path in the
    manifest."""
    relative = Path(subject) / session / "func" / f"{subject}_{session}_task-{task_name}_timeseries.tsv"
    path = out_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(labels)] + ["\t".join(f"{v:.5f}" for v in frame) for frame in series.T]
    path.write_text("\n".join(lines) + "\n")
    return relative.as_posix()
