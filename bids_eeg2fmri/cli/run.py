"""``bids-eeg2fmri``: parse, check, record, then run the requested analysis level.

The order matters: everything that can be checked without writing (arguments, paths,
labels) is checked before any directory is created, and nothing is ever written inside
BIDS_DIR except under OUTPUT_DIR when the user put OUTPUT_DIR in BIDS_DIR/derivatives/.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bids_eeg2fmri import __version__
from bids_eeg2fmri.cli.parser import PROG, build_parser
from bids_eeg2fmri.errors import CannotCreateError, Eeg2FmriError, UsageError

LOGGER = logging.getLogger("bids_eeg2fmri")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bids-eeg2fmri``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(build_parser().parse_args(argv))  # exits 2 on usage errors
    verbose = int(args.get("verbose", 0))
    _setup_logging(verbose)
    try:
        config, origin = _configure(args)
        _run(config, command=[PROG, *argv], origin=origin)
    except Eeg2FmriError as err:
        return _fail(str(err), err.exit_code, verbose)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, verbose)
    except Exception as err:  # noqa: BLE001 - the last line of defence, one line unless -v
        return _fail(f"unexpected {type(err).__name__}: {err}", 1, verbose)
    finally:
        _teardown_logging()
    return 0


def _teardown_logging() -> None:
    """Detach (and close) the handlers this run added, so that nothing outlives it."""
    for name in ("bids_eeg2fmri", "nipype.workflow"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            if isinstance(handler, logging.FileHandler):
                handler.close()


def _fail(message: str, code: int, verbose: int) -> int:
    if verbose:
        LOGGER.debug("Traceback of the failure:", exc_info=True)
    LOGGER.log(logging.ERROR, message, extra={"cli_error": True})
    if not verbose and code == 1:
        message += " (rerun with -v for the traceback)"
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


class _NotCliErrors(logging.Filter):
    """The console gets errors from ``_fail`` directly; keep them out of the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "cli_error", False)


def _setup_logging(verbose: int) -> None:
    LOGGER.setLevel(logging.DEBUG)
    LOGGER.propagate = False
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(
        logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s", "%H:%M:%S")
    )
    console.addFilter(_NotCliErrors())
    LOGGER.addHandler(console)


def _add_log_file(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(name)s | %(levelname)s | %(message)s"))
    LOGGER.addHandler(handler)


def _configure(args: dict):
    """Merge ``--config-file`` and the command line into a validated RunConfig."""
    from bids_eeg2fmri.config import make_config, read_config_file

    options: dict = {}
    origin: dict[str, str] = {}
    config_file = args.pop("config_file", None)
    if config_file is not None:
        for key, value in read_config_file(config_file).items():
            options[key] = value
            origin[key] = f"{config_file}: {key}"
    for key, value in args.items():
        options[key] = value
        origin[key] = "--" + key.replace("_", "-") if key not in _POSITIONALS else key.upper()
    if "mem_gb" in args:
        origin["mem_gb"] = "--mem"
    run_uuid = f"{_dt.datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4().hex[:8]}"
    return make_config(options, origin=origin, run_uuid=run_uuid), origin


_POSITIONALS = ("bids_dir", "output_dir", "analysis_level")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_locations(config) -> None:
    """BIDS_DIR is a dataset; OUTPUT_DIR, the work dir and the index stay out of it."""
    from bids_eeg2fmri.bidsio.derivatives import check_eeg_derivatives, check_existing_output
    from bids_eeg2fmri.errors import BIDSValidationError

    bids_dir = config.run.bids_dir
    if not bids_dir.exists():
        raise UsageError(f"BIDS_DIR {bids_dir} does not exist (in a container, is it mounted?)")
    if not bids_dir.is_dir():
        raise UsageError(f"BIDS_DIR {bids_dir} is not a directory")
    if not (bids_dir / "dataset_description.json").is_file():
        raise BIDSValidationError(
            f"{bids_dir} is not a BIDS dataset: dataset_description.json is missing"
        )
    from bids_eeg2fmri.bidsio.reading import read_json_object

    description = read_json_object(bids_dir / "dataset_description.json", error=BIDSValidationError)
    missing = [key for key in ("Name", "BIDSVersion") if key not in description]
    if missing:  # REQUIRED by BIDS, and pybids stops without them
        raise BIDSValidationError(
            f"{bids_dir / 'dataset_description.json'}: no {' and no '.join(missing)} "
            '(REQUIRED: e.g. "Name": "My study", "BIDSVersion": "1.10.0")'
        )
    root = bids_dir.resolve()
    suggestion = root / "derivatives" / "bids-eeg2fmri"
    output = config.run.output_dir.resolve()
    if output == root:
        raise UsageError(
            f"OUTPUT_DIR is BIDS_DIR ({root}); the input is never written to: use e.g. {suggestion}"
        )
    if _is_within(output, root) and (root / "derivatives") not in output.parents:
        raise UsageError(
            f"OUTPUT_DIR {output} is inside BIDS_DIR; the input is never written to: "
            f"use a folder under {root / 'derivatives'} (e.g. {suggestion}) or outside it"
        )
    for flag, path in (
        ("--work-dir", config.execution.work_dir),
        ("--bids-database-dir", config.execution.bids_database_dir),
    ):
        if path is not None and _is_within(path.resolve(), root):
            raise UsageError(
                f"{flag} {path} is inside BIDS_DIR {root}; caches never go into the input: "
                f"pass {flag} DIR outside it"
            )
    check_existing_output(output)
    check_eeg_derivatives(config.selection.eeg_derivatives)


def _make_dirs(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise CannotCreateError(
                f"cannot create or write {folder}: {err.strerror or err}"
            ) from None


def _run(config, *, command: list[str], origin: dict[str, str] | None = None) -> None:
    from bids_eeg2fmri.bidsio.files import write_text_atomic
    from bids_eeg2fmri.bidsio.layout import check_participant_labels
    from bids_eeg2fmri.config import to_toml_dict

    check_locations(config)
    if config.workflow.model is not None and config.run.analysis_level == "participant":
        from bids_eeg2fmri.models.cards import check_model

        model, where = config.workflow.model, (origin or {}).get("model", "--model")
        config_file = where.rsplit(": ", 1)[0]  # "<config file>: model" when it came from one
        named = f"--model {model}" if where == "--model" else f"{model} (model in {config_file})"
        check_model(model, named=named)  # a bad --model fails before anything is written
    if config.selection.participant_label:
        check_participant_labels(config.run.bids_dir, config.selection.participant_label)
    for option in ("holdout_label", "validation_label"):  # absent ones: a usage error first
        if labels := getattr(config.workflow, option):
            flag = "--" + option.replace("_", "-")
            check_participant_labels(config.run.bids_dir, labels, option=f"{flag}: ")

    output, work = config.run.output_dir, config.execution.work_dir
    logs = output / "logs"
    _make_dirs(output, logs, work)
    _add_log_file(logs / f"{PROG}-{config.run_uuid}.log")
    LOGGER.info("%s v%s, run %s", PROG, __version__, config.run_uuid)

    import tomli_w

    document = {
        "environment": {
            "version": __version__,
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(command),
            "python": sys.version.split()[0],
            "run_uuid": config.run_uuid,
        },
        **to_toml_dict(config),
    }
    config_path = logs / f"config-{config.run_uuid}.toml"
    try:
        write_text_atomic(config_path, tomli_w.dumps(document))
    except OSError as err:
        raise CannotCreateError(f"cannot write {config_path}: {err.strerror or err}") from None
    LOGGER.info("Configuration recorded in %s", config_path)

    _set_threads(config.execution.omp_nthreads, config.execution.nprocs)
    if config.run.analysis_level == "participant":
        _participant(config)
    else:
        _group(config)


def _participant(config) -> None:
    from bids_eeg2fmri.bidsio.layout import index_dataset, select_eeg_recordings
    from bids_eeg2fmri.bidsio.validator import validate_dataset

    bids_dir, output, work = config.run.bids_dir, config.run.output_dir, config.execution.work_dir
    if config.execution.skip_bids_validation:
        LOGGER.info("BIDS validation skipped (--skip-bids-validation)")
    else:
        LOGGER.info("Validating %s with bids-validator-deno", bids_dir)
        validate_dataset(
            bids_dir,
            cache_dir=work / "deno",
            report_path=output / "logs" / f"bids-validator-{config.run_uuid}.json",
        )

    database = config.execution.bids_database_dir
    layout = index_dataset(
        bids_dir,
        database or work / config.run_uuid / "bids_db",
        reset=database is None,
    )
    selection = select_eeg_recordings(
        layout,
        participant_label=config.selection.participant_label,
        session_label=config.selection.session_label,
        task_label=config.selection.task_label,
        bids_filters=config.selection.bids_filters,
    )
    LOGGER.info(
        "Selected %d EEG recording(s) of %d participant(s): %s",
        len(selection.eeg_files),
        len(selection.participants),
        ", ".join(f.name for f in selection.eeg_files),
    )
    from bids_eeg2fmri.workflows.locks import hold_participants

    with hold_participants(work, selection.participants):  # one run per participant and -w
        _preprocess(config, layout, selection)


def _preprocess(config, layout, selection) -> None:
    """Pair the runs and run the participant workflow; one failing run fails the level."""
    from bids_eeg2fmri.bidsio.derivatives import write_derivative_description
    from bids_eeg2fmri.bidsio.pairing import pair_runs
    from bids_eeg2fmri.bidsio.sidecars import check_run_inputs
    from bids_eeg2fmri.errors import DataError
    from bids_eeg2fmri.workflows.participant import (
        init_participant_wf,
        remove_run_outputs,
        restore_mr_outputs,
        restore_volume_events,
    )
    from bids_eeg2fmri.workflows.runner import run_workflow

    pairs = pair_runs(
        layout,
        selection.eeg_files,
        bold_filters=config.selection.bids_filters.get("bold"),
        eeg_derivatives=config.selection.eeg_derivatives,
    )
    check_run_inputs(pairs, config.run.bids_dir, dummy_scans=config.workflow.dummy_scans)
    write_derivative_description(config.run.output_dir, config.run.bids_dir, os.environ)
    for pair in pairs:
        LOGGER.info(
            "Run %s: EEG %s%s",
            pair.name,
            pair.eeg.name,
            f", BOLD {pair.bold.name}" if pair.bold else " (EEG only)",
        )
    settings = config.workflow
    model_positions = None
    if settings.model is not None:  # the model decides channels, windows, frequencies, grid
        from bids_eeg2fmri.models.cards import check_runs_fit_model, read_card

        card = read_card(settings.model)
        check_runs_fit_model(pairs, card, model=settings.model)  # before any step runs
        settings = dataclasses.replace(
            settings,
            channels=tuple(card["channels"]),
            n_windows=int(card["n_windows"]),
            max_freq=float(card["max_freq"]),
            model_grid=tuple(card["grid"]),
        )
        model_positions = card.get("channel_positions")
        if settings.eeg_only_tr is None and any(p.bold is None for p in pairs):
            LOGGER.info(
                "EEG-only runs without volume markers are cut on the model's TR grid "
                "(%g s, from its card; --eeg-only-tr sets another)",
                float(card["tr"]),
            )
            settings = dataclasses.replace(settings, eeg_only_tr=float(card["tr"]))
    channels = list(settings.channels)
    if not channels:  # default: those common to every selected recording
        from bids_eeg2fmri.bidsio.model_channels import default_model_channels

        channels = default_model_channels(pairs)
    wf = init_participant_wf(
        pairs=pairs,
        bids_dir=config.run.bids_dir,
        output_dir=config.run.output_dir,
        run_uuid=config.run_uuid,
        workflow=settings,
        channels=channels,
        model_positions=model_positions,
        omp_nthreads=config.execution.omp_nthreads,
    )
    started = time.time_ns() - 1_000_000_000  # file times lag the clock by a tick or two
    failures = run_workflow(
        wf,
        base_dir=config.execution.work_dir,
        crash_root=config.run.output_dir,
        nprocs=config.execution.nprocs,
        mem_gb=config.execution.mem_gb,
        stop_on_first_crash=config.execution.stop_on_first_crash,
        log_handlers=[h for h in LOGGER.handlers if isinstance(h, logging.FileHandler)],
        verbose=config.execution.verbose > 0,
    )
    if failures:
        # the first failure is the error line; the others are logged (each once)
        for failure in failures[1:]:
            LOGGER.error("%s (crash report: %s)", failure.message, failure.crash_file)
        first = failures[0]
        error = DataError if all(f.data_error for f in failures) else Eeg2FmriError
        others = f" ({len(failures) - 1} more step(s) failed: above)" if failures[1:] else ""
        raise error(f"{first.message} (crash report: {first.crash_file}){others}")
    restore_volume_events(
        pairs,
        work_dir=config.execution.work_dir,
        output_dir=config.run.output_dir,
        bids_dir=config.run.bids_dir,
    )
    restore_mr_outputs(pairs, work_dir=config.execution.work_dir)
    _eeg_views(config, pairs)
    if settings.train or settings.model is not None:
        try:
            _model_steps(config, pairs)
        except BaseException:  # its runs failed: nothing of theirs this run wrote is left
            removed = remove_run_outputs(
                pairs,
                config.run.output_dir,
                since_ns=started,
                model_name=settings.model_name if settings.train else None,
            )
            LOGGER.info("Removed the %d output(s) of the failed run(s)", len(removed))
            raise
    _reports(config, sorted({p.subject for p in pairs}))
    _manifest(config.run.output_dir)
    LOGGER.info(
        "Participant level done: %d run(s); outputs in %s", len(pairs), config.run.output_dir
    )


def _eeg_views(config, pairs) -> None:
    """Each run's EEG feature sets for classification (workflows.views)."""
    from bids_eeg2fmri.workflows.modeling import collect_runs
    from bids_eeg2fmri.workflows.views import write_eeg_views

    runs = collect_runs(pairs, config.execution.work_dir)
    write_eeg_views(runs, pairs, output_dir=config.run.output_dir, bids_dir=config.run.bids_dir)


def _model_steps(config, pairs) -> None:
    """Train and/or apply the synthesizer (workflows.modeling; TensorFlow from here on)."""
    from bids_eeg2fmri.models.runtime import load_tensorflow

    load_tensorflow(verbose=bool(config.execution.verbose))  # its C++ lines only with -v
    from bids_eeg2fmri.workflows import modeling

    modeling.run_model_steps(config, pairs)


def _reports(config, subjects: list[str]) -> None:
    """One HTML report per participant, built from the outputs on disk (--nprocs at a
    time)."""
    from bids_eeg2fmri.reports.html.batch import write_participant_reports

    for path in write_participant_reports(
        config.run.output_dir,
        subjects,
        bids_dir=config.run.bids_dir,
        nprocs=config.execution.nprocs,
        mem_gb=config.execution.mem_gb,
    ):
        LOGGER.info("Report: %s", path)


def _set_threads(omp_nthreads: int, nprocs: int) -> None:
    """``--omp-nthreads`` threads for BLAS/OpenMP in each worker process (they inherit the
    environment); TensorFlow, which runs alone in this process once the workflow is done,
    gets the ``--nprocs`` CPUs (its pool size is read when it is first imported)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(omp_nthreads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(nprocs)
    LOGGER.info(
        "Threads: %d per worker process (--omp-nthreads), %d for the model (--nprocs)",
        omp_nthreads,
        nprocs,
    )


def _manifest(output_dir: Path) -> None:
    from bids_eeg2fmri.bidsio.derivatives import write_manifest

    LOGGER.info("Checksums of the outputs: %s", write_manifest(output_dir))


def _group(config) -> None:
    from bids_eeg2fmri.errors import DataError, NoInputError
    from bids_eeg2fmri.workflows.group import metrics_tables, write_group_metrics

    output = config.run.output_dir
    paths = metrics_tables(output, config.selection.participant_label)
    if not paths and not config.group.classify:
        raise NoInputError(
            f"nothing to gather in {output}: no sub-*/func/*_desc-synth_metrics.tsv "
            "(run the participant level with --train or --model first)"
        )
    if paths:
        try:
            write_group_metrics(output, paths)
        except ValueError as err:
            raise DataError(str(err)) from None
    if config.group.classify:
        from bids_eeg2fmri.workflows.classify import run_classification

        if config.group.classifier != "logistic":  # a Keras head: TensorFlow, quietly
            from bids_eeg2fmri.models.runtime import load_tensorflow

            load_tensorflow(verbose=bool(config.execution.verbose))
            if config.execution.deterministic:
                import tensorflow as tf

                tf.config.experimental.enable_op_determinism()

        run_classification(
            output,
            config.run.bids_dir,
            config.group,
            seed=config.workflow.seed,
            participants=config.selection.participant_label,
            n_jobs=config.execution.nprocs,
        )
    from bids_eeg2fmri.reports.html import write_group_report

    report = write_group_report(output)
    _manifest(output)
    LOGGER.info("Group level done: %d run table(s); report %s", len(paths), report)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
