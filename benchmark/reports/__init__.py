"""Paper-style tables and figures from stored per-image values: ``python -m benchmark report --results DIR``.

Reads a results folder through :func:`benchmark.store.load_study` and never
trains. Writes, under the results folder:

- ``summary.csv``: one row per finished run and test set (the image means);
- ``tables/main_<test>.{csv,md,tex}``: model x gradient arm, mean +- std over
  seeds of the per-seed image means, arrows for the better direction, best bold
  and second underlined within each model block;
- ``tables/paired_<test>.{csv,md,tex}``: each arm against ``magnitude`` per
  model, with the trained network as the unit: seed-level paired differences,
  t intervals, t-test and sign-flip p-values, Holm over the primary family;
  ``tables/power_<test>.*``: what those seeds can detect;
- ``tables/health.*``, ``convergence.*``, ``loss_scale.*``: failed runs, runs
  that reached their plateau and the step each scored, the gradient term's share of the objective;
- ``tables/runs.*``: each finished run's gradient weight, commit, seconds and the step each rule scored;
- ``tables/sensitivity.*``: each primary comparison under every declared selection rule, flagged where
  the conclusion depends on the rule; ``tables/scored_steps.*``: pairs whose networks were scored at
  steps more than a factor of two apart;
- ``tables/tuning.*``, ``tuning_budget.*`` and ``trials.*``: for a study with tuning trials, the validation
  criterion per arm and gradient scale (the selected scale marked once every trial has finished), the
  expected best criterion against the number of trials, and each finished trial with its run;
- ``tables/weights.*``: for a study that applies its tuning, each tuned arm's primary comparison at the
  recipe's weight (the ``reuse:`` profile that reported the same trials unapplied) beside the tuned one;
- ``tables/ablation_<name>_<test>.*``, ``paired_ablation_<name>_<test>.*`` and ``power_...``: the same per
  ablation, each setting against ``magnitude``; ``paired_ablation_<name>_vs_<default>_<test>.*`` and
  ``power_...``: each setting against the ablation's default (the main arm it varies, e.g. ``damgl``);
- ``tables/findings.md``: each primary comparison's sentence, worded from its numbers by fixed rules
  (:mod:`benchmark.reports.wording`);
- ``tables/crossed_<test>.*``: the interval that treats the test images as a sample too;
- ``summary.md``: all of it on one page with provenance;
- ``figures/``: see :mod:`benchmark.reports.figures`.

The numbers come from :mod:`benchmark.reports.stats` (one NaN rule: means
exclude NaN values, and every cell that excluded any carries a dagger with the
count in the CSV and a footnote), the formatting from
:mod:`benchmark.reports.tables`. The output depends only on the stored files
(no clock, no machine state), so a rerun regenerates the tables byte for byte.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.console import os_error, say
from benchmark.metrics import (
    DEFAULT_CONVENTION,
    column,
    column_info,
    get_convention,
    metric_names,
)
from benchmark.provenance import RESULTS
from benchmark.published import (
    Published,
    PublishedError,
    compare_gains,
    compare_means,
    load_published,
)
from benchmark.reports.figures import make_figures
from benchmark.reports.significance import family_holm, health_table, seed_comparisons
from benchmark.reports.stats import (
    convergence,
    display_labels,
    loss_scale,
    reached_plateau,
    run_summary,
    run_table,
    scored_steps,
    seed_means,
    setting_names,
    step_ratios,
    study_columns,
    study_metrics,
    summarise_arms,
)
from benchmark.reports.tables import (
    AGREEMENT_NOTE,
    budget_markup,
    convergence_markup,
    crossed_markup,
    gains_markup,
    health_markup,
    loss_scale_markup,
    main_table,
    power_markup,
    published_markup,
    runs_markup,
    seed_markup,
    sensitivity_markup,
    step_ratio_markup,
    to_csv,
    trials_markup,
    tuning_markup,
    write_table,
)
from benchmark.reports.wording import findings
from benchmark.store import (
    ResultsFolder,
    StoreError,
    Study,
    atomic_write_text,
    load_study,
)
from benchmark.tuning import at_edge, budget_table, planned_trials, trials, tuning_table


def _plan_order(study: Study) -> dict[str, list]:
    """Model, arm and test order of the study's plan."""
    grids = study.spec["grids"].values()
    return {"model": list(dict.fromkeys(m for grid in grids for m in grid["models"])),
            "arm": list(study.spec["arms"]), "test": list(dict.fromkeys(t for grid in grids for t in grid["test"]))}  # fmt: skip


def write_summary_csv(study: Study) -> Path:
    """``summary.csv`` from every finished run of the study, in plan order."""
    atomic_write_text(study.folder.summary_csv, to_csv(run_summary(study.values, study_columns(study), _plan_order(study))))
    return study.folder.summary_csv


def format_summary(study: Study) -> str:
    """Means over all finished seeds per (test, model, arm), two decimals, for the terminal, with the health of
    each arm's finished runs (``ok``, or how many are ``inverted``, ``collapsed``, ..., as ``inverted:1/6``); ``*`` marks means
    that exclude NaN values, with a note naming the run. (The report's comparisons use the healthy runs.)"""
    names = study_metrics(study)
    summary = summarise_arms(study.values, names)
    finished = study.values[["model", "arm", "seed", "run_id"]].drop_duplicates()
    health = health_table(study.values, {}, list(finished.itertuples(index=False, name=None)))
    flags = {key: ",".join(f"{h}:{n}/{len(g)}" for h, n in g.health[g.health != "ok"].value_counts().items()) or "ok"
             for key, g in health.groupby(["model", "arm"], sort=False)}  # fmt: skip
    header = ["test", "model", "arm", "seeds", "health", *names]
    body = [[r["test"], r["model"], r["arm"], str(r["seeds"]), flags.get((r["model"], r["arm"]), "ok")]
            + [("nan" if np.isnan(r[f"{m}_mean"]) else f"{r[f'{m}_mean']:.2f}") + ("*" if r[f"{m}_nan"] else "")
               for m in names] for r in summary.to_dict("records")]  # fmt: skip
    notes = [f"* {r['run_id']} on {r['test']}: NaN values excluded from the means ({r['nan_values']})"
             for r in run_summary(study.values, names, _plan_order(study)).to_dict("records") if r["nan_values"]]  # fmt: skip
    if any(f != "ok" for f in flags.values()):
        notes.append("health: runs whose fused images are not usable fusions (tables/health.md says which and why) "
                     "are left out of every comparison")  # fmt: skip
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 3 or i == 4 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *body]]  # fmt: skip
    return "\n".join(lines + notes)


def budget(study: Study) -> str:
    """The training budget of the study's runs: steps, epochs and images' worth of pixels seen, and the schedule."""
    configs = [r["config"] for r in study.runs.values()]
    steps = ", ".join(str(s) for s in sorted({c["steps"] for c in configs}))
    if not all("epochs" in c for c in configs):
        return f"{steps} steps (epochs and schedule not recorded by these runs)"
    count = configs[0]["train"].get("images") or configs[0]["train"]["synthetic"]["count"]
    epochs = sorted({c["epochs"] for c in configs})
    seen = ", ".join(f"{e:.3g} epochs (about {e * count:.0f} of its {count} images' worth of pixels)" for e in epochs)
    return f"{steps} steps = {seen}, schedule {', '.join(sorted({c['schedule'] for c in configs}))}"


def provenance(study: Study) -> list[str]:
    """Lines saying where the numbers come from, read from the run files only."""
    envs = [r["env"] for r in study.runs.values()]
    done = [r["done"] for r in study.runs.values()]
    config = next(iter(study.runs.values()))["config"]

    def values(key: str) -> str:
        return ", ".join(sorted({str(e.get(key)) for e in envs}))

    planned = len(study.runs) + len(study.missing) + len(study.failed)
    return [
        f"- profile: `{study.spec['profile']}`; train set `{study.spec['train']}`, {budget(study)}, "
        f"batch {config['batch_size']}, patches {config['patch_size']} px, output normalisation `{config['normalisation']}`",
        f"- runs: {len(study.runs)} of {planned} complete, {len(study.failed)} failed, {len(study.missing)} missing",
        f"- finished: {min(d['finished'] for d in done)} to {max(d['finished'] for d in done)}",
        f"- code: commit(s) {values('git_commit')}",
        f"- device: {values('device')} (torch threads per run: {values('torch_threads')}); host {values('platform')}",
        f"- versions: python {values('python')}, torch {values('torch')}, numpy {values('numpy')}, "
        f"numba {values('numba')}, piq {values('piq')}",
        f"- metrics: `{DEFAULT_CONVENTION}` convention, {get_convention().description} (docs/metrics.md)"
        + "".join(f"; also `{c}`, {get_convention(c).description}" for c in study.spec.get("conventions", []))
        + "; every value is traceable to `runs/<run>/metrics.csv` with that run's `config.yaml` (hash), `env.json` and seed",
    ]  # fmt: skip


def _study_settings(study: Study) -> tuple[str, list[str], dict[str, str]]:
    """The base arm, the primary metrics and the display labels (:func:`~benchmark.reports.stats.display_labels`)."""
    spec = study.spec
    return spec["base_arm"], list(spec["primary_metrics"]), display_labels(spec)


def _planned_family(study: Study, arms: Mapping[str, str], base: str, primary: Sequence[str]) -> dict[str, int]:
    """Per compared arm (display name -> arm id in ``arms``): the primary comparisons the study plans
    against ``base``, its models and test sets shared with the base arm's grid x ``primary``; none where the
    profile does not plan the base arm (a study of DAMGL alone compares nothing)."""
    grids = study.spec["grids"]
    if base not in grids:
        return {}
    return {name: len(set(grids[arm]["models"]) & set(grids[base]["models"]))
            * len(set(grids[arm]["test"]) & set(grids[base]["test"])) * len(primary)
            for name, arm in arms.items() if arm != base}  # fmt: skip


def _planned(study: Study) -> list[tuple[str, str, int, str]]:
    return [(model, arm, seed, study.run_id_of(model, arm, seed))
            for arm, grid in study.spec["grids"].items() for model in grid["models"] for seed in grid["seeds"]]  # fmt: skip


def _healthy_summary(values: pd.DataFrame, healthy: set[str], metrics: list[str], arms: list[str]) -> pd.DataFrame:
    """:func:`summarise_arms` over the healthy runs, with ``runs`` (all finished seeds) beside ``seeds`` and a
    row of NaN means for an arm none of whose runs is healthy."""
    keys = ["model", "arm", "test"]
    runs = values.groupby(keys, sort=False)["seed"].nunique().rename("runs").reset_index()
    good = summarise_arms(values[values.run_id.isin(healthy)], metrics) if values.run_id.isin(healthy).any() else None
    summary = runs.merge(good, on=keys, how="left") if good is not None else runs
    summary["seeds"] = summary.get("seeds", pd.Series(0, index=summary.index)).fillna(0).astype(int)
    for m in metrics:
        for suffix in ("mean", "std"):
            summary[f"{m}_{suffix}"] = summary.get(f"{m}_{suffix}", pd.Series(math.nan, index=summary.index))
        summary[f"{m}_nan"] = summary.get(f"{m}_nan", pd.Series(0, index=summary.index)).fillna(0).astype(int)
    summary["model"] = pd.Categorical(summary["model"], categories=list(dict.fromkeys(values.model)), ordered=True)
    summary["arm"] = pd.Categorical(summary["arm"], categories=arms, ordered=True)
    summary = summary.sort_values(["model", "arm"], kind="stable")
    summary = summary.assign(model=summary["model"].astype(str), arm=summary["arm"].astype(str))
    return summary[["model", "arm", "test", "seeds", "runs", *[c for c in summary.columns if c.split("_")[0] in metrics]]]


def _comparison_sections(comparisons: pd.DataFrame, test: str, stem: str, what: str, primary: list[str],
                         metrics: list[str], labels: dict[str, str], tables: Path) -> tuple[list[str], list[Path]]:  # fmt: skip
    """The seed-level tables of one test set: primary and exploratory, healthy and all runs, and power."""
    here = comparisons[comparisons.test == test]
    exploratory = [m for m in metrics if m not in primary]
    sections, written = [], []
    md, tex = [], []
    for runs in ("healthy", "all"):
        for family, chosen in (("primary", [m for m in metrics if m in primary]), ("exploratory", exploratory)):
            rows = here[(here.runs == runs) & here.metric.isin(chosen)]
            if rows.empty or not chosen:
                continue
            title = f"{what}, seed-level paired differences, {runs} runs, {family} metrics"
            table = seed_markup(rows, chosen, title, family, labels)
            md.append(table.markdown())
            tex.append(table)
    power = power_markup(here[(here.runs == "healthy") & here.metric.isin(primary)], [m for m in metrics if m in primary],
                         f"{what}: power of the seed-level comparison (healthy runs, primary metrics)", labels)  # fmt: skip
    primary_healthy = here[(here.runs == "healthy") & here.metric.isin(primary)]
    crossed = crossed_markup(primary_healthy, [m for m in metrics if m in primary],
                             f"{what}: generalising to new images (healthy runs, primary metrics)", labels)  # fmt: skip
    written += write_table(tables, f"paired_{stem}", here, tex[0], extra_markdown=md[1:])
    written += write_table(tables, f"power_{stem}", here[here.runs == "healthy"], power)
    written += write_table(tables, f"crossed_{stem}", primary_healthy, crossed)
    sections += md + [power.markdown(), crossed.markdown()]
    return sections, written


def _main_comparisons(study: Study, values: pd.DataFrame, metrics: list[str], primary: list[str], healthy: set[str],
                      plateau: dict[str, bool | None]) -> pd.DataFrame:  # fmt: skip
    """Each main arm against the base arm over ``metrics``, every model and test set: one family per arm."""
    base, main_arms = study.spec["base_arm"], [a for a in study.spec["loss_arms"] if a in set(values.arm)]
    planned = _planned_family(study, {a: a for a in main_arms}, base, [m for m in metrics if m in primary])
    comparisons = seed_comparisons(values, metrics, healthy, base, primary, plateau, planned)
    return comparisons.assign(arm_id=comparisons.get("arm"), base_id=base) if not comparisons.empty else comparisons


def _tuned_caption(study: Study) -> str:
    """``", tuned, equal budget of K trials per arm"`` for a study whose arms train at tuned weights."""
    tune = study.spec.get("tune")
    if not tune or not study.spec.get("scales"):
        return ""
    return f", tuned, equal budget of {len(tune['gradient_scale']) * len(tune['seeds'])} trials per arm"


def _main_sections(study: Study, values: pd.DataFrame, comparisons: pd.DataFrame, metrics: list[str], primary: list[str],
                   healthy: set[str], labels: dict[str, str], tables: Path,
                   convention: str | None = None) -> tuple[list[str], list[Path]]:  # fmt: skip
    """Per test set, the main table and the seed-level comparisons of the main arms, over ``metrics`` (one
    convention's; ``convention`` names a further one in titles and file names)."""
    base, main_arms = study.spec["base_arm"], [a for a in study.spec["loss_arms"] if a in set(values.arm)]
    suffix = f"_{convention}" if convention else ""
    sections, written = [], []
    for test in study.tests(main_arms):
        summary = _healthy_summary(values[values.test == test], healthy, metrics, main_arms)
        name = labels.get(test, test) + (f", {convention} convention" if convention else "")
        table = main_table(summary, metrics, f"{name}: mean ± std over healthy seeds (training on "
                           f"{labels.get(study.spec['train'], study.spec['train'])})", labels=labels)  # fmt: skip
        written += write_table(tables, f"main_{test}{suffix}", summary, table)
        sections += [f"## {name}", "", table.markdown()]
        if not comparisons.empty and test in set(comparisons.test):
            more, files = _comparison_sections(comparisons, test, f"{test}{suffix}", f"{name}: each arm against {base}"
                                               + _tuned_caption(study), primary, metrics, labels, tables)  # fmt: skip
            sections += more
            written += files
    return sections, written


def _tuning_sections(study: Study, labels: dict[str, str], tables: Path) -> tuple[list[str], list[Path]]:
    """The tuning table, its budget curve and warnings, for a study with ``tune``; a note while it is incomplete."""
    tune = study.spec.get("tune")
    if not tune:
        return [], []
    planned = planned_trials(tune)
    done = trials(study.folder, tune, study.spec["train"], finished=True, base=study.spec["base_arm"])
    if done.empty:
        return ["## Tuning", "", f"Tuning: none of the {planned} trials has finished; no arm's gradient scale is "
                "selected yet.", ""], []  # fmt: skip
    complete = len(done) == planned  # nothing is selected, and no budget curve drawn, until every trial has finished
    table = tuning_table(done, select=complete)
    budget = budget_table(done) if complete else pd.DataFrame()
    title = ("Tuning: each arm's gradient weight, chosen on validation with an equal budget" if complete
             else f"Tuning, incomplete: {len(done)} of {planned} trials finished, no scale selected yet")  # fmt: skip
    markup = tuning_markup(table, budget, title, at_edge(table) if complete else [], labels, study.spec["base_arm"])
    written = write_table(tables, "tuning", table, markup)
    if complete:
        written += write_table(tables, "tuning_budget", budget, budget_markup(budget, labels))
    kept = [] if tune.get("apply", True) or not complete else [
        "These selections are not applied here (`tune.apply: false`): this study's runs train at the recipe's "
        "weight, and a profile with the same `tune` block that applies them (reusing these trials) trains the "
        "tuned arms.", ""]  # fmt: skip
    commits = ", ".join(sorted({str(c) for c in done.git_commit}))
    each = trials_markup(done, f"Tuning trials: {len(done)} of {planned} finished", labels)
    written += write_table(tables, "trials", done, each)
    return ["## Tuning", "", *kept, markup.markdown(), f"The {len(done)} {'' if complete else 'finished '}trials were "
            f"trained from commit(s) {commits} (each trial run's `env.json`); `tables/trials.md` lists each.", ""], written  # fmt: skip


def _concluded(c: pd.DataFrame, keys: list[str], tag: str) -> pd.DataFrame:
    """``keys`` of comparison rows with their seeds, difference, Holm p and conclusion (improvement, worsening
    or none) in columns suffixed ``_<tag>``, to merge with the same comparisons made another way."""
    better = np.array([column_info(m).higher_is_better for m in c.metric])
    sign = np.where(better, 1, -1) * np.sign(c["diff"].to_numpy(float))
    conclusion = np.where(c["survives_holm"], np.where(sign > 0, "improvement", "worsening"), "none")
    conclusion = np.where(c["p_holm"].isna(), "not tested", conclusion)
    return c[keys].assign(**{f"seeds_{tag}": c["seeds"].to_numpy(), f"diff_{tag}": c["diff"].to_numpy(),
                             f"p_holm_{tag}": c["p_holm"].to_numpy(), f"conclusion_{tag}": conclusion})  # fmt: skip


def _agreement(merged: pd.DataFrame, tags: list[str]) -> list[str]:
    """Per row of comparisons made several ways (columns ``conclusion_<tag>``): 'differ' where two tested ways
    conclude differently, 'agree' where every way is tested and concludes the same, 'not tested' where none is,
    and 'incomplete' where the tested ways agree but another is untested or has no comparison yet."""
    out = []
    for row in merged[[f"conclusion_{t}" for t in tags]].itertuples(index=False):
        tested = [c for c in row if c in ("improvement", "worsening", "none")]
        out.append("differ" if len(set(tested)) > 1 else "agree" if len(tested) == len(tags) else "incomplete"
                   if tested else "not tested")  # fmt: skip
    return out


def _selection_sections(study: Study, metrics: list[str], primary: list[str], plateau: dict[str, bool | None],
                        labels: dict[str, str], tables: Path) -> tuple[list[str], list[Path]]:  # fmt: skip
    """How much the main comparisons depend on the selection rule: each primary comparison under every declared
    rule (when there are several), and the pairs scored at steps more than a factor of two apart."""
    base, rules = study.spec["base_arm"], study.rules
    main_arms = [a for a in study.spec["loss_arms"] if a in set(study.values.arm)]
    family = [m for m in metrics if m in primary]
    sections, written = [], []
    steps = scored_steps(study)
    ratios = step_ratios(steps[steps.arm.isin(main_arms)], base) if not steps.empty else pd.DataFrame()
    if len(rules) > 1 and base in main_arms:
        planned = _planned_family(study, {a: a for a in main_arms}, base, family)
        merged = None
        for rule in rules:
            values = study.values_of(rule)
            values = values[values.arm.isin(main_arms)]
            health = health_table(values, study.failed, _planned(study))
            healthy = set(health.run_id[health.health == "ok"])
            c = seed_comparisons(values, family, healthy, base, primary, plateau, planned)
            if c.empty:
                return [], []
            part = _concluded(c[(c.runs == "healthy") & (c.family == "primary")], ["model", "test", "arm", "base", "metric"], rule)
            merged = part if merged is None else merged.merge(part, on=["model", "test", "arm", "base", "metric"], how="outer", sort=False)
        merged["conclusions"] = _agreement(merged, rules)
        table = sensitivity_markup(merged, rules, f"Sensitivity to the selection rule: each arm against {base}, primary "
                                   "metrics, healthy runs", labels)  # fmt: skip
        written += write_table(tables, "sensitivity", merged, table)
        sections += ["## Selection rule", "", table.markdown()]
    if not ratios.empty:
        table = step_ratio_markup(ratios, "Pairs scored at steps more than a factor of two apart", labels)
        written += write_table(tables, "scored_steps", ratios, table)
        sections += [table.markdown()]
    return sections, written


def ablated_loss(spec: Mapping[str, Any], arms: list[str]) -> str:
    """``" (base: LABEL)"`` for an ablation whose arms share one loss type, else ``""`` (the switch is the type)."""
    types = {spec["arms"][arm]["type"] for arm in arms}
    if len(types) != 1:
        return ""
    (kind,) = types
    return f" (base: {spec['labels'].get(kind, kind)})"


def _ablation_comparisons(study: Study, name: str, arm_of: Mapping[str, str], metrics: list[str], primary: list[str],
                          healthy: set[str], plateau: dict[str, bool | None]) -> list[tuple[str, str, pd.DataFrame]]:  # fmt: skip
    """An ablation's comparisons: each setting against the study's base arm, and each setting against the
    ablation's default, the setting that is a main arm of the study (DAMGL as the recipe sets it), so that the
    switch itself is tested. Each is computed over every model and test set of the study, in the family of its
    arm and base, so a test that another table also prints (the default against the base) has the same Holm p
    there; ``(what, file suffix, comparisons)`` with display names in ``arm`` and ids in ``arm_id``/``base_id``."""
    base, main_arms = study.spec["base_arm"], [a for a in study.spec["loss_arms"] if a in set(study.values.arm)]
    arms = list(dict.fromkeys(arm_of.values()))
    vals = study.values[study.values.arm.isin([*arms, base])]
    names = setting_names(name, arm_of)
    shown_arms = {names[a]: a for a in arms}  # display name -> arm id
    family = [m for m in metrics if m in primary]
    shown = vals.assign(arm=vals.arm.map(lambda a: names.get(a, a)))

    def compared(frame: pd.DataFrame, against: str) -> pd.DataFrame:
        c = seed_comparisons(frame, metrics, healthy, names.get(against, against), primary, plateau,
                             _planned_family(study, shown_arms, against, family))  # fmt: skip
        return c.assign(arm_id=c.arm.map(lambda a: shown_arms.get(a, a)), base_id=against) if not c.empty else c

    out = [(f"each setting against {base}", "", compared(shown, base))]
    default = next((a for a in arms if a in main_arms and a != base), None)
    if default is not None:
        out.append((f"each setting against {names[default]} ({study.spec['labels'].get(default, default)} as the "
                    "recipe sets it)", f"_vs_{default}", compared(shown[shown.arm.isin(shown_arms)], default)))  # fmt: skip
    return out


def _ablation_sections(study: Study, name: str, arm_of: Mapping[str, str], against: list[tuple[str, str, pd.DataFrame]],
                       metrics: list[str], primary: list[str], healthy: set[str], labels: dict[str, str],
                       tables: Path) -> tuple[list[str], list[Path]]:  # fmt: skip
    """One ablation per test set: its table and its comparisons (:func:`_ablation_comparisons`), on the
    ablation's grid."""
    base = study.spec["base_arm"]
    arms = list(dict.fromkeys(arm_of.values()))
    grid = study.ablation_grid(arms)
    vals = study.values[study.values.arm.isin([*arms, base])]
    if grid is not None:
        vals = vals[vals.model.isin(grid["models"]) & vals.test.isin(grid["test"]) & vals.seed.isin(grid["seeds"])]
    if vals.empty:
        return [], []
    names = setting_names(name, arm_of)
    sections, written, of_loss = [], [], ablated_loss(study.spec, arms)
    for test in list(dict.fromkeys(vals.test)):
        here = vals[vals.test == test]
        if not here.arm.isin(arms).any():  # only the base rows so far
            continue
        summary = _healthy_summary(here[here.arm.isin(arms)], healthy, metrics, arms)
        stem = f"ablation_{name}_{test}"
        table = main_table(summary, metrics, f"Ablation '{name}' on {labels.get(test, test)}{of_loss}, healthy seeds",
                           label=name, labels={**labels, **names})  # fmt: skip
        written += write_table(tables, stem, summary, table)
        sections += [f"## Ablation: {name} ({labels.get(test, test)})", "", table.markdown()]
        for what, suffix, comparisons in against:
            if not comparisons.empty and grid is not None:
                comparisons = comparisons[comparisons.model.isin(grid["models"])]
            if not comparisons.empty and test in set(comparisons.test):
                more, files = _comparison_sections(comparisons, test, f"ablation_{name}{suffix}_{test}",
                                                   f"Ablation '{name}' on {labels.get(test, test)}: {what}", primary,
                                                   metrics, labels, tables)  # fmt: skip
                sections += more
                written += files
    return sections, written


def _planned_tests(study: Study, primary: Sequence[str]) -> int:
    """How many distinct primary tests the study plans in all: each main arm against the base, and each
    ablation setting (other than a main arm) against the base and against its ablation's default, over the
    models and test sets both grids share; a setting listed by two ablations counts once, and a run not
    finished yet still counts."""
    base, loss_arms = study.spec["base_arm"], list(study.spec["loss_arms"])
    pairs = {(arm, base) for arm in loss_arms if arm != base}
    for arm_of in study.spec["ablations"].values():
        settings = list(dict.fromkeys(arm_of.values()))
        default = next((a for a in settings if a in loss_arms and a != base), None)
        for arm in (a for a in settings if a not in loss_arms):
            pairs |= {(arm, base), *([(arm, default)] if default else [])}
    return sum(_planned_family(study, {arm: arm}, against, primary).get(arm, 0) for arm, against in pairs)


def _study_wide(main: pd.DataFrame, ablations: dict[str, list[tuple[str, str, pd.DataFrame]]], planned: int
                ) -> tuple[pd.DataFrame, dict[str, list[tuple[str, str, pd.DataFrame]]]]:  # fmt: skip
    """``p_holm_study``: Holm over every primary test of the study at once (each arm against the base and each
    ablation setting against its default, every model, test set and primary metric, per run population), a
    test printed by several tables counted once; the family is the ``planned`` tests (:func:`_planned_tests`),
    never fewer than those with rows, and those not tested yet, or without a row because no run of theirs has
    finished, count with p = 1."""
    frames = [main, *(c for listed in ablations.values() for _, _, c in listed)]
    key = ["model", "test", "arm_id", "base_id", "metric", "runs"]
    primary = [f[f.family == "primary"] for f in frames if not f.empty]
    tests = pd.concat(primary, ignore_index=True) if primary else pd.DataFrame()
    if tests.empty:
        return main, ablations
    tests = tests.drop_duplicates(key)
    adjusted = []
    for _, group in tests.groupby("runs", sort=False):
        sizes = max(int(group.drop_duplicates(["arm_id", "base_id"])["family_size"].sum()), planned)
        adjusted.append(group[key].assign(p_holm_study=family_holm(group["p_t"].tolist(), group["tested"].tolist(),
                                                                    sizes)))  # fmt: skip
    table = pd.concat(adjusted, ignore_index=True)

    def add(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.merge(table, on=key, how="left", sort=False) if not frame.empty else frame

    return add(main), {name: [(what, suffix, add(c)) for what, suffix, c in listed] for name, listed in ablations.items()}


def _model_test_facts(study: Study) -> dict[tuple[str, str], tuple[str, dict]]:
    """(model, test) -> the model's type (or class) and the test images' identity, from the run configs."""
    facts = {}
    for run in study.runs.values():
        config = run["config"]
        kind = str(config["model"].get("type") or config["model"].get("class"))
        for test, identity in config["test"].items():
            facts[(config["model"]["name"], test)] = (kind, identity)
    return facts


def _published_sections(study: Study, rows: dict[str, Published], healthy: set[str], comparisons: pd.DataFrame,
                        labels: dict[str, str], tables: Path) -> tuple[list[str], list[Path]]:  # fmt: skip
    """Reproduced against published numbers: each published row that applies to a model and test set of the study."""
    sections, written = [], []
    values = study.values[study.values.run_id.isin(healthy)]
    metrics = study_metrics(study)
    per_seed = seed_means(values, metrics) if not values.empty else pd.DataFrame()
    for (model, test), (kind, identity) in _model_test_facts(study).items():
        for row in rows.values():
            if not row.applies_to(kind, identity, None if row.kind == "gains" else DEFAULT_CONVENTION):
                continue
            where = f"{labels.get(model, model)} on {labels.get(test, test)}"
            source = [f"Published: {row.method}, {row.test_name}; {row.source} (row '{row.key}' of the published file)."]
            if row.stems_sha256 is None:
                source.append("Matched on the number of test pairs: the published image list is not recorded.")
            if row.kind == "means":
                here = per_seed[(per_seed.model == model) & (per_seed.test == test)] if not per_seed.empty else per_seed
                frame = pd.concat([compare_means(row, {m: g[m].tolist() for m in metrics}).assign(model=model, arm=arm)
                                   for arm, g in here.groupby("arm", sort=False)], ignore_index=True) if len(here) else None  # fmt: skip
                if frame is None or frame.empty:
                    continue
                table = published_markup(frame, dict(row.values), f"{where}: reproduced vs published "
                                         f"({row.convention} convention)", source, labels)  # fmt: skip
            else:
                mine = comparisons[(comparisons.model == model) & (comparisons.test == test)] if not comparisons.empty else comparisons
                frame = compare_gains(row, mine) if not mine.empty else pd.DataFrame()
                if frame.empty:
                    continue
                if row.convention is None:
                    source.append(f"The published convention is not stated; the reproduction uses {DEFAULT_CONVENTION}.")
                table = gains_markup(frame, *row.percent, f"{where}: {row.arm} against {row.base}, reproduced vs "
                                     "published relative change", source)  # fmt: skip
            written += write_table(tables, f"published_{row.key}_{model}_{test}", frame, table)
            sections.append(table.markdown())
    return (["## Reproduced vs published", "", *sections] if sections else []), written


@dataclasses.dataclass
class Report:
    """What the sections of one report read: the study (in its staging folder), its settings, and the
    comparisons, computed once for every table that shows them."""

    study: Study
    published: dict[str, Published]
    labels: dict[str, str]
    base: str
    metrics: list[str]
    primary: list[str]
    health: pd.DataFrame
    healthy: set[str]
    main_values: pd.DataFrame
    plateau: dict[str, bool | None]
    comparisons: pd.DataFrame
    ablations: dict[str, list[tuple[str, str, pd.DataFrame]]]
    worded: list[str]

    @property
    def tables(self) -> Path:
        return self.study.folder.tables


Section = Callable[[Report], tuple[list[str], list[Path]]]  # -> (summary.md lines, files written)


def _report(study: Study, published: dict[str, Published]) -> Report:
    """The settings and the comparisons of a report: every primary comparison once, study-wide Holm, findings."""
    base, primary, labels = _study_settings(study)
    metrics = study_metrics(study)
    health = health_table(study.values, study.failed, _planned(study))
    healthy = set(health.run_id[health.health == "ok"])
    main_arms = [a for a in study.spec["loss_arms"] if a in set(study.values.arm)]
    main_values = study.values[study.values.arm.isin(main_arms)]
    plateau = reached_plateau(study)
    comparisons = _main_comparisons(study, main_values, metrics, primary, healthy, plateau)
    ablations = {name: _ablation_comparisons(study, name, arm_of, metrics, primary, healthy, plateau)
                 for name, arm_of in study.spec["ablations"].items()}  # fmt: skip
    comparisons, ablations = _study_wide(comparisons, ablations, _planned_tests(study, [m for m in metrics if m in primary]))
    defaults = {name: next((a for a in dict.fromkeys(arm_of.values()) if a in main_arms and a != base), None)
                for name, arm_of in study.spec["ablations"].items()}  # fmt: skip
    worded = findings(comparisons, ablations, defaults, labels)
    return Report(study, published, labels, base, metrics, primary, health, healthy, main_values, plateau,
                  comparisons, ablations, worded)  # fmt: skip


def _health_section(r: Report) -> tuple[list[str], list[Path]]:
    table = health_markup(r.health, "Run health: failed runs out of seeds", r.labels)
    return ["## Run health", "", table.markdown()], write_table(r.tables, "health", r.health, table)


def _convergence_section(r: Report) -> tuple[list[str], list[Path]]:
    converged = convergence(r.study)
    if converged.empty:
        return [], []
    table = convergence_markup(converged, "Convergence: runs that reached their validation plateau", r.labels)
    return ["## Convergence", "", table.markdown()], write_table(r.tables, "convergence", converged, table)


def _runs_section(r: Report) -> tuple[list[str], list[Path]]:
    runs = run_table(r.study, _plan_order(r.study))
    table = runs_markup(runs, "Runs: what each trained network cost and which steps were scored", r.labels)
    return ["## Runs", "", table.markdown()], write_table(r.tables, "runs", runs, table)


def _loss_scale_section(r: Report) -> tuple[list[str], list[Path]]:
    scale = loss_scale(r.study, list(r.study.spec["arms"]), r.base)
    if scale.empty:
        return [], []
    table = loss_scale_markup(scale, "Loss scale: the gradient term's share of the objective", r.labels.get(r.base, r.base),
                              r.labels)  # fmt: skip
    return ["## Loss scale", "", table.markdown()], write_table(r.tables, "loss_scale", scale, table)


def _findings_file(r: Report) -> tuple[list[str], list[Path]]:
    atomic_write_text(r.tables / "findings.md", "\n".join(r.worded))
    return [], [r.tables / "findings.md"]


def _main_section(r: Report) -> tuple[list[str], list[Path]]:
    return _main_sections(r.study, r.main_values, r.comparisons, r.metrics, r.primary, r.healthy, r.labels, r.tables)


def _convention_sections(r: Report) -> tuple[list[str], list[Path]]:
    lines: list[str] = []
    files: list[Path] = []
    for convention in r.study.spec.get("conventions", []):
        columns = [column(convention, m) for m in metric_names(convention) if column(convention, m) in r.study.values.columns]
        family = [column(convention, m) for m in r.primary if column(convention, m) in columns]
        if columns:
            further = _main_comparisons(r.study, r.main_values, columns, family, r.healthy, r.plateau)
            more, made = _main_sections(r.study, r.main_values, further, columns, family, r.healthy, r.labels, r.tables,
                                        convention)  # fmt: skip
            lines, files = lines + more, files + made
    return lines, files


def _ablation_section(r: Report) -> tuple[list[str], list[Path]]:
    lines: list[str] = []
    files: list[Path] = []
    for name, arm_of in r.study.spec["ablations"].items():
        more, made = _ablation_sections(r.study, name, arm_of, r.ablations[name], r.metrics, r.primary, r.healthy,
                                        r.labels, r.tables)  # fmt: skip
        lines, files = lines + more, files + made
    return lines, files


def _tuning_section(r: Report) -> tuple[list[str], list[Path]]:
    return _tuning_sections(r.study, r.labels, r.tables)


def _selection_section(r: Report) -> tuple[list[str], list[Path]]:
    return _selection_sections(r.study, r.metrics, r.primary, r.plateau, r.labels, r.tables)


def _against_base(r: Report) -> pd.DataFrame:
    """Every primary comparison of healthy runs against the study's base arm, main arms and ablation settings,
    each arm once (the main arm's row where an ablation lists it too)."""
    frames = [f for f in [r.comparisons, *[c for parts in r.ablations.values() for _, _, c in parts]] if not f.empty]
    if not frames:
        return pd.DataFrame()
    c = pd.concat(frames, ignore_index=True)
    c = c[(c.base_id == r.base) & (c.runs == "healthy") & (c.family == "primary")]
    return c.drop_duplicates(["model", "test", "arm_id", "metric"])


def _recipe_report(study: Study) -> Report | None:
    """For a study that applies its tuning: the report of the profile in its ``reuse:`` that trained the same
    tuning trials without applying them, so whose runs are this study's arms at the recipe's weight; else
    ``None``. That profile's folder is looked for beside the study, then in the project's ``results/`` (a copy
    of a committed study made elsewhere reports as the committed one does)."""
    tune = study.spec.get("tune")
    if not tune or not study.spec.get("scales"):
        return None
    for other in study.spec.get("reuse", []):
        for folder in dict.fromkeys([study.folder.root.parent / other, RESULTS / other]):
            try:
                recipe = load_study(folder)
            except StoreError:  # not run yet
                continue
            if recipe.spec.get("tune") == {**tune, "apply": False}:
                return _report(recipe, {})
    return None


def _weight_section(r: Report) -> tuple[list[str], list[Path]]:
    """Each tuned arm against the base arm at the recipe's weight (the profile that reported the trials without
    applying them) and at the tuned weights (this study), flagged where the conclusion changes with the weight."""
    recipe = _recipe_report(r.study)
    if recipe is None:
        return [], []
    tune, keys = r.study.spec["tune"], ["model", "test", "arm", "arm_id", "base", "metric"]
    parts = []
    for tag, report in (("recipe", recipe), ("tuned", r)):
        c = _against_base(report)
        if c.empty:  # no comparison on this side yet: its cells stay empty beside the other's
            c = pd.DataFrame(columns=[*keys, "seeds", "diff", "p_holm", "survives_holm"])
        parts.append(_concluded(c[c.model.isin(tune["models"]) & c.arm_id.isin(tune["arms"])], keys, tag))
    merged = parts[0].merge(parts[1], on=keys, how="outer", sort=False)
    if merged.empty:
        return [], []
    scales = r.study.spec["scales"]
    merged["conclusions"] = _agreement(merged, ["recipe", "tuned"])
    merged["arm_scale"] = [scales[a][m] for a, m in zip(merged.arm_id, merged.model)]
    merged["base_scale"] = [scales.get(r.base, {}).get(m, 1.0) for m in merged.model]  # 1: the base is not tuned
    shown = merged.assign(arm=[f"{r.labels.get(a, a)} (x{s:g})" for a, s in zip(merged.arm, merged.arm_scale)])
    other = recipe.study.spec["profile"]
    base_scales = ", ".join(f"x{s:g} ({r.labels.get(m, m)})" for m, s in dict(zip(merged.model, merged.base_scale)).items())
    note = (f"Each cell: the mean paired difference arm - {r.base} over the healthy seeds and its Holm-adjusted t test "
            f"p ('not tested': fewer than 6 seeds), at the recipe's gradient weight (profile {other}, in its primary "
            f"family there) and with every arm at the multiple of it that its tuning trials selected (this study; "
            f"tuning.md): the arm's in its row, {r.base}'s {base_scales}. Bold: an improvement, italic: a worsening, "
            "with Holm p < 0.05; 'no runs yet': no finished runs on that side. 'differ': the conclusion "
            "(improvement, worsening or none) changes with the weight, so at the recipe's weight it may come from the "
            f"weight the term carries. {AGREEMENT_NOTE}")  # fmt: skip
    table = sensitivity_markup(shown, ["recipe", "tuned"], f"Recipe weight and tuned weights: each tuned arm against "
                               f"{r.base}, primary metrics, healthy runs", r.labels,
                               [f"recipe's weight ({other})", "tuned weights"], note)  # fmt: skip
    return ["## Recipe weight and tuned weights", "", table.markdown()], write_table(r.tables, "weights", merged, table)


def _published_section(r: Report) -> tuple[list[str], list[Path]]:
    return _published_sections(r.study, r.published, r.healthy, r.comparisons, r.labels, r.tables)


def _findings_section(r: Report) -> tuple[list[str], list[Path]]:
    return r.worded, []


def _incomplete_section(r: Report) -> tuple[list[str], list[Path]]:
    if not (r.study.failed or r.study.missing):
        return [], []
    lines = ["## Incomplete runs", ""] + [f"- failed: {k}: {v}" for k, v in r.study.failed.items()]
    return lines + [f"- missing: {k}" for k in r.study.missing] + [""], []


# The report's sections, in the order summary.md shows them: a new table is one function and one entry here.
SECTIONS: tuple[Section, ...] = (
    _health_section,
    _convergence_section,
    _runs_section,
    _loss_scale_section,
    _tuning_section,
    _selection_section,
    _weight_section,
    _findings_file,
    _main_section,
    _convention_sections,
    _ablation_section,
    _published_section,
    _findings_section,
    _incomplete_section,
)


def build_report(root: str | Path, figures: bool = True, published: str | Path | None = None) -> list[Path]:
    """Write ``summary.csv``, the tables (:data:`SECTIONS`), ``summary.md`` and (optionally) the figures;
    returns every file written. The report is built in a staging folder and replaces the old one in one step.

    ``published`` is a published-results file (default: the package's ``published.yaml``).
    """
    study = load_study(root)
    final, study = study.folder, dataclasses.replace(study, folder=study.folder.staged())
    study.folder.tables.mkdir(exist_ok=True)
    r = _report(study, load_published(published))
    sections = ["# Results: " + study.spec["profile"], "", "## Provenance", "", *provenance(study), ""]
    written = [write_summary_csv(study)]
    for section in SECTIONS:
        more, files = section(r)
        sections += more
        written += files
    if figures:
        made = make_figures(study, r.healthy)
        written += made
        sections += ["## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in made if p.suffix == ".png"] + [""]
    atomic_write_text(study.folder.summary_md, "\n".join(sections))
    final.publish(study.folder)
    staging = study.folder.summary_md.parent
    return [final.root / p.relative_to(staging) if p.is_relative_to(staging) else p for p in [study.folder.summary_md, *written]]


QUOTE = re.compile(r"(<!-- quote: tables/(?P<name>[\w.-]+\.md) -->\n)(?P<body>.*?)(<!-- end quote -->)", re.DOTALL)


def quoted_table(path: Path) -> str:
    """A table file's first table as a write-up quotes it: its bold title line, a blank line and its rows."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    title = [lines[start - 2], ""] if start >= 2 and lines[start - 2].startswith("**") else []
    return "\n".join([*title, *lines[start:end]]) + "\n"


def refresh_write_up(folder: ResultsFolder) -> list[str]:
    """Replace every table a study's hand-written ``README.md`` quotes between ``<!-- quote: tables/NAME.md -->``
    and ``<!-- end quote -->`` with that table as the report now prints it; returns the quoted names (none
    without a write-up). Only the quoted blocks change, and the file only when one of them does.

    Raises:
        StoreError: a quoted table is not one the report wrote, naming the write-up and the table.
    """
    if not folder.write_up.is_file():
        return []
    text = folder.write_up.read_text()
    names = [m["name"] for m in QUOTE.finditer(text)]
    missing = [n for n in names if not (folder.tables / n).is_file()]
    if missing:
        raise StoreError(f"{folder.write_up}: quotes tables/{missing[0]}, which this report did not write (its tables: "
                         f"{', '.join(sorted(p.name for p in folder.tables.glob('*.md')))})")  # fmt: skip
    new = QUOTE.sub(lambda m: m[1] + quoted_table(folder.tables / m["name"]) + m[4], text)
    if new != text:
        atomic_write_text(folder.write_up, new)
    return names


def closing_lines(study: Study, written: Sequence[Path]) -> list[str]:
    """What a study's command prints at its end: where the paper-style tables are, the reproduced gains beside
    the published ones, and what the seeds can and cannot show."""
    tables = {p.name: p for p in written if p.suffix == ".md" and p.parent == study.folder.tables}
    mains = [tables[f"main_{t}.md"] for t in _plan_order(study)["test"] if f"main_{t}.md" in tables]
    lines = [f"paper-style tables (mean ± std over seeds of each arm, {', '.join(study.spec['primary_metrics'])} "
             "marked as the primary family): " + ", ".join(str(p) for p in mains)] if mains else []  # fmt: skip
    for name in sorted(n for n in tables if n.startswith("published_")):
        lines += ["", *tables[name].read_text().splitlines()[:-1]]
    paired = [p for p in written if p.suffix == ".csv" and p.name.startswith("paired_") and "ablation" not in p.name]
    if paired:
        frame = pd.concat([pd.read_csv(p) for p in paired], ignore_index=True)
        frame = frame[(frame.runs == "all") & (frame.family == "primary")]
        seeds, size, tested = int(frame.seeds.min()), int(frame.family_size.max()), frame.tested.astype(bool)
        if tested.any() and not tested.all():
            fewer = int((~tested).sum())
            lines.append(f"seeds: {seeds}-{int(frame.seeds.max())} per compared arm; {int(tested.sum())} primary "
                         f"comparisons have 6 or more and are tested (paired t over seeds, Holm over families of up to "
                         f"{size}), {fewer} {'has' if fewer == 1 else 'have'} fewer and {'is' if fewer == 1 else 'are'} "
                         f"not (their intervals show size and uncertainty only); {study.folder.tables / 'findings.md'} "
                         "words each")  # fmt: skip
        elif seeds < 6:
            lines.append(f"seeds: {seeds} per compared arm, fewer than the 6 a test needs, so no comparison is tested: "
                         "the intervals show the size and the uncertainty of each difference, and no difference can be "
                         "called an improvement (rerun with 6 seeds or more)")  # fmt: skip
        else:
            lines.append(f"seeds: {seeds} per compared arm; every comparison is tested (paired t over seeds, Holm over its "
                         f"family of {size}); {study.folder.tables / 'findings.md'} words each result, and differences "
                         "below the MDD of tables/power_<test>.md are not detectable with these seeds")  # fmt: skip
    return lines


def report_command(args: argparse.Namespace) -> int:
    """``damgl-bench report`` (arguments in :mod:`benchmark.cli`): rebuild a profile's report from its runs."""
    folder = ResultsFolder(args.results)
    try:
        if not folder.study.is_file():
            load_study(folder.root)  # raises, naming the missing file
        with folder.report_lock():
            files = build_report(folder.root, figures=not args.no_figures, published=args.published)
            lines = closing_lines(load_study(folder.root), files)
            quoted = refresh_write_up(folder)
    except (StoreError, PublishedError) as exc:
        say(f"error: {exc}")
        return 2
    except OSError as exc:
        say(f"error: {os_error(exc)}")
        return 2
    print(f"report: {len(files)} files written under {Path(args.results)} (summary.csv, summary.md, tables/, figures/, examples/)")
    print("\n".join(lines))
    if quoted:
        print(f"write-up: {folder.write_up} quotes {len(quoted)} tables, each now as this report prints it")
    return 0
