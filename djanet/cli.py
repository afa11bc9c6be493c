"""Command line mirroring the official repository's, so its README commands work.

    python -m djanet train --dataset sysu --gpu 0 [--data-root DIR --preset paper --trial T --resume PATH]
    python -m djanet test  --dataset sysu --mode all --resume PATH --gpu 0
    python -m djanet test  --dataset regdb --resume PATH --tvsearch True --gpu 0
    python -m djanet regdb-trials [--preset cpu-demo ...]      # all ten RegDB trials, mean and std
    python -m djanet translate --dataset sysu --data-root DIR --out DIR2 [--preset P --checkpoint PATH]
    python -m djanet study [--preset cpu-demo --seeds 0 1 2 --variants agw djanet ... --results DIR --jobs 2]

`test` rebuilds the model from the checkpoint's own configuration (no --preset needed) and
`train` re-run on an existing run folder continues it (see djanet.runs).  Expected errors
(bad paths, layouts, options) print one line, `djanet: error: ...`, and exit with status 2;
`--debug` shows the traceback.  Everything here only parses arguments and calls library functions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch

from .config import ARCHS, DATASETS, PRESETS, get_config, override

# CLI flag -> config key (the seed's spelling on the left).
FLAG_TO_KEY = {
    "dataset": "data.dataset", "data_root": "data.data_root", "translated_root": "data.translated_root",
    "trial": "data.trial", "mode": "data.mode", "workers": "data.workers", "batch_size": "data.ids_per_batch",
    "num_pos": "data.num_pos", "img_h": None, "img_w": None, "arch": "model.arch", "lr": "optim.lr",
    "optim": "optim.optimizer", "epochs": "optim.epochs", "margin": "loss.margin", "seed": "seed",
    "out_dir": "out_dir", "run_name": "run_name", "select_on": "select_on", "max_steps": "max_steps_per_epoch",
    "cache_dir": "data.cache_dir", "trials": "eval_trials", "pretrained": "model.pretrained",
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "y"):
        return True
    if text.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _pretrained(text: str) -> bool | str:
    """--pretrained true|false|PATH (a torchvision ResNet state dict)."""
    low = text.lower()
    if low in ("1", "true", "yes", "y", "0", "false", "no", "n"):
        return _bool(low)
    return text


def _device(gpu: str | None) -> str:
    """The seed's `--gpu 0` means cuda:0; without CUDA we say so and use the CPU."""
    if gpu is None or gpu == "auto":
        return "auto"
    if gpu == "cpu":
        return "cpu"
    if not torch.cuda.is_available():
        warnings.warn(f"--gpu {gpu} asked for CUDA, which is not available here; running on the CPU")
        return "cpu"
    return f"cuda:{int(gpu.split(',')[0])}"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="sysu", choices=DATASETS)
    p.add_argument("--data-root", "--data_path", dest="data_root", default=None,
                   help="dataset folder; omit to use the built-in synthetic data")
    p.add_argument("--translated-root", dest="translated_root", default=None,
                   help="a translated copy of the dataset (infrared in visible style)")
    p.add_argument("--preset", default="paper", choices=list(PRESETS))
    p.add_argument("--gpu", default=None, help="GPU index as in the seed ('0'), 'cpu' or 'auto'")
    p.add_argument("--trial", type=int, default=None, help="RegDB trial 1..10")
    p.add_argument("--mode", default=None, choices=["all", "indoor"], help="SYSU-MM01 search mode")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out-dir", dest="out_dir", default=None, help="runs go to OUT_DIR/<run-name> (default runs/)")
    p.add_argument("--run-name", dest="run_name", default=None)
    p.add_argument("--cache-dir", dest="cache_dir", default=None)
    p.add_argument("--img_h", type=int, default=None)
    p.add_argument("--img_w", type=int, default=None)
    p.add_argument("--arch", default=None, choices=ARCHS)
    p.add_argument("--pretrained", type=_pretrained, default=None,
                   help="ImageNet weights: true (torchvision; the paper preset's default), false, or a path")
    _debug(p)


def _debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m djanet", description="DJANet for VI-ReID")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (resumable)")
    _common(train)
    train.add_argument("--resume", default=None, help="checkpoint to continue from")
    train.add_argument("--overwrite", action="store_true",
                       help="delete the run folder's checkpoints and start over (default: continue the run)")
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--optim", default=None, choices=["sgd", "adam"])
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                       help="identities per batch (P), as in the seed")
    train.add_argument("--num_pos", type=int, default=None, help="images per identity and modality (K)")
    train.add_argument("--margin", type=float, default=None)
    train.add_argument("--select-on", dest="select_on", default=None, choices=["val", "test"],
                       help="model selection split; 'test' is peeking and labelled so")
    train.add_argument("--max-steps", dest="max_steps", type=int, default=None,
                       help="cap iterations per epoch (smoke runs)")
    train.add_argument("--no-eval", action="store_true", help="skip the final test evaluation")
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--use-cache", dest="use_cache", action="store_true",
                       help="read training images from a memory-mapped array cache (built once)")

    test = sub.add_parser("test", help="evaluate a checkpoint on the test protocol")
    _common(test)
    test.add_argument("--resume", required=True, help="checkpoint to evaluate")
    test.add_argument("--tvsearch", type=_bool, default=None,
                      help="RegDB: thermal->visible (True) or visible->thermal (False); default both")
    test.add_argument("--trials", type=int, default=None, help="gallery trials (SYSU/LLCM, default 10)")
    test.set_defaults(preset=None, dataset=None)   # from the checkpoint; --preset only double-checks it
    test.add_argument("--flip", action="store_true",
                      help="average each image's features with its horizontal flip's")
    test.add_argument("--rerank", action="store_true",
                      help="k-reciprocal re-ranking (Zhong et al., CVPR 2017) of each trial's distances")
    test.add_argument("--k1", type=int, default=None, help="re-ranking: k of the k-reciprocal sets (20)")
    test.add_argument("--k2", type=int, default=None,
                      help="re-ranking: ranking entries averaged by the local query expansion (6)")
    test.add_argument("--lambda", dest="lambda_value", type=float, default=None,
                      help="re-ranking: weight of the original distance against the Jaccard distance (0.3)")
    test.add_argument("--rerank-convention", dest="rerank_convention", default=None,
                      choices=("released", "paper"),
                      help="re-ranking: the authors' released code's conventions (default) or the paper's "
                           "equations taken literally")

    regdb = sub.add_parser("regdb-trials", help="train and test all ten RegDB trials; mean and std")
    _common(regdb)
    regdb.add_argument("--epochs", type=int, default=None)

    tr = sub.add_parser("translate", help="write an infrared->visible translated copy of a dataset")
    tr.add_argument("--dataset", default="sysu", choices=DATASETS)
    tr.add_argument("--data-root", dest="data_root", required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--preset", default="cpu-demo")
    tr.add_argument("--checkpoint", default=None, help="a trained translator; trains one when omitted")
    tr.add_argument("--external", default=None, help="a folder of externally produced translations")
    tr.add_argument("--gpu", default=None)
    tr.add_argument("--seed", type=int, default=0)
    _debug(tr)

    st = sub.add_parser("study", help="ablation: train and test variants x seeds, mean ± std and paired "
                                      "differences to AGW (study.csv, summary.csv, provenance.json)")
    st.add_argument("--dataset", default="sysu", choices=DATASETS)
    st.add_argument("--data-root", dest="data_root", default=None,
                    help="dataset folder; omit to use the built-in synthetic data")
    st.add_argument("--preset", default="cpu-demo", choices=list(PRESETS))
    st.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (>= 3 for intervals "
                    "that mean something)")
    st.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                    help="variants to train (default: all six; a wrong name is answered with the list)")
    st.add_argument("--out-dir", dest="out_dir", default=None,
                    help="run folders, one per variant and seed (default runs/study/DATASET-PRESET)")
    st.add_argument("--results", default=None, help="where study.csv, summary.csv and provenance.json go "
                    "(default: the --out-dir)")
    st.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    st.add_argument("--max-steps", dest="max_steps", type=int, default=None, help="cap iterations per epoch")
    st.add_argument("--translator-steps", dest="translator_steps", type=int, default=None,
                    help="training steps of the translator for djanet-translated (default: its preset's)")
    st.add_argument("--jobs", type=int, default=1, help="runs trained at once, in worker processes")
    st.add_argument("--cache-dir", dest="cache_dir", default=None)
    st.add_argument("--gpu", default=None, help="GPU index, 'cpu' or 'auto'")
    _debug(st)
    return parser


def config_from_args(args: argparse.Namespace):
    """Resolve the preset, then apply every flag the user gave (and only those)."""
    overrides = {key: getattr(args, flag) for flag, key in FLAG_TO_KEY.items()
                 if key is not None and getattr(args, flag, None) is not None}
    overrides["device"] = _device(getattr(args, "gpu", None))
    if getattr(args, "quiet", False):
        overrides["quiet"] = True
    if getattr(args, "use_cache", False):
        overrides["data.use_cache"] = True
    cfg = get_config(args.preset, **overrides)
    if getattr(args, "img_h", None) or getattr(args, "img_w", None):
        h, w = cfg.data.img_size
        cfg = override(cfg, **{"data.img_size": (args.img_h or h, args.img_w or w)})
    return cfg


def config_for_test_from_args(args: argparse.Namespace):
    """The checkpoint's own config with the test choices applied; disagreeing model options refused."""
    from .saved_config import check_same_model, config_for_test, saved_config
    saved = saved_config(args.resume)
    if args.preset is not None:
        check_same_model(saved, get_config(args.preset), args.resume, f"--preset {args.preset}")
    asked = {"--arch": ("model.arch", args.arch, saved.model.arch),
             "--pretrained": ("model.pretrained", args.pretrained, saved.model.pretrained),
             "--img_h": ("data.img_size[0]", args.img_h, saved.data.img_size[0]),
             "--img_w": ("data.img_size[1]", args.img_w, saved.data.img_size[1])}
    diffs = [f"{flag} {given!r} vs the checkpoint's {key}={value!r}"
             for flag, (key, given, value) in asked.items() if given is not None and given != value]
    if diffs:
        raise ValueError(f"checkpoint {args.resume} holds a different model: {'; '.join(diffs)}. A test builds "
                         "the model from the checkpoint's own configuration: drop these options")
    flags = {"dataset": "data.dataset", "data_root": "data.data_root", "translated_root": "data.translated_root",
             "trial": "data.trial", "mode": "data.mode", "workers": "data.workers", "cache_dir": "data.cache_dir",
             "trials": "eval_trials"}
    choices = {key: getattr(args, flag) for flag, key in flags.items() if getattr(args, flag, None) is not None}
    return config_for_test(saved, device=_device(args.gpu), **choices)


def _raised_by_djanet(exc: BaseException) -> bool:
    """True when the innermost frame of `exc` is djanet's own code (one of its checks)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    package = str(Path(__file__).resolve().parent)
    return tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(package)


def _expected(exc: BaseException) -> bool:
    """An error one of djanet's checks raised about the user's input (not a bug)."""
    from .train import NonFiniteLossError
    return isinstance(exc, (ValueError, KeyError, FileNotFoundError, NotADirectoryError, FileExistsError,
                            NonFiniteLossError)) and _raised_by_djanet(exc)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv   # the study records the command it ran
    try:
        return _run(args)
    except Exception as exc:
        if getattr(args, "debug", False) or not _expected(exc):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"djanet: error: {_one_line(str(message))}", file=sys.stderr)
        return 2


def _one_line(message: str) -> str:
    """'head:\n  a\n  b' (a list of differences) -> 'head: a; b'."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:1] + ["; ".join(lines[1:])] if len(lines) > 1 else lines)


def _run(args: argparse.Namespace) -> int:
    if args.command == "translate":
        from .translate import translate_command
        out = translate_command(args.dataset, args.data_root, args.out, preset=args.preset,
                                checkpoint=args.checkpoint, external=args.external,
                                device=_device(args.gpu), seed=args.seed)
        print(f"translated copy written to {out}")
        return 0

    if args.command == "study":
        _study(args)
        return 0

    from . import evaluate as ev
    from . import train as tr_mod

    if args.command == "test":
        rerank = _rerank_from_args(args)
        cfg = config_for_test_from_args(args)
        directions = None
        if cfg.data.dataset == "regdb" and args.tvsearch is not None:
            directions = ("t2v",) if args.tvsearch else ("v2t",)
        results = ev.evaluate(cfg, args.resume, directions=directions, flip=args.flip, rerank=rerank)
        _print_results(results)
        written = ev.metrics_path(Path(args.resume).resolve().parent.parent, args.flip, rerank)
        official = json.loads(written.read_text()).get("official_checkpoint")
        if official is not None:   # an official DJANet checkpoint: the numbers are the community protocol's
            from .official import official_note
            print(f"note: {official_note(official)}")
        print(f"metrics written to {written}")
        return 0

    cfg = config_from_args(args)
    if args.command == "train":
        out = tr_mod.run_dir(cfg)
        if args.resume is not None or args.overwrite:
            tr_mod.fit(cfg, resume=args.resume, overwrite=args.overwrite)
        else:
            from .runs import plan_run
            plan = plan_run(cfg, out)
            if plan.action == "finished":       # a finished run of other data is not passed off as this one
                from .data import prepare_data
                tr_mod.check_same_data(plan.data, prepare_data(cfg), plan.resume)
            if int(os.environ.get("RANK", "0")) == 0 and plan.action != "fresh":
                print(plan.message)
            if plan.action != "finished":
                tr_mod.fit(cfg, resume=plan.resume)
            elif int(os.environ.get("RANK", "0")) == 0:   # a kill after the last checkpoint, before the logs
                from .runs import complete_finished
                complete_finished(out, plan)
        print(f"checkpoints: {out / 'checkpoints'}; logs: {out / 'history.csv'}")
        if not args.no_eval and int(os.environ.get("RANK", "0")) == 0:
            best = out / "checkpoints" / "best.pt"
            results = ev.evaluate(cfg, best if best.is_file() else out / "checkpoints" / "last.pt")
            _print_results(results)
        return 0
    if args.command == "regdb-trials":
        cfg = override(cfg, **{"data.dataset": "regdb"})
        _print_results(tr_mod.regdb_all_trials(cfg))
        return 0
    return 2


def study_config_from_args(args: argparse.Namespace):
    """The study's base config: the preset with the flags given; runs under runs/study/DATASET-PRESET."""
    overrides = {"data.dataset": args.dataset, "data.data_root": args.data_root, "device": _device(args.gpu),
                 "out_dir": args.out_dir or str(Path("runs") / "study" / f"{args.dataset}-{args.preset}")}
    for flag, key in (("epochs", "optim.epochs"), ("max_steps", "max_steps_per_epoch"),
                      ("cache_dir", "data.cache_dir")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    return get_config(args.preset, **overrides)


def _study(args: argparse.Namespace) -> None:
    import shlex

    import pandas as pd

    from . import report
    from .study import VARIANTS, get_variant, run_study

    for name in args.variants or ():
        get_variant(name)   # an unknown name fails before anything is trained
    cfg = study_config_from_args(args)
    command = "python -m djanet " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    results = args.results or cfg.out_dir
    _, summary = run_study(cfg, variants=args.variants or tuple(VARIANTS), seeds=args.seeds, out=results,
                           jobs=args.jobs, translator_steps=args.translator_steps, command=command)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(report.mean_std_table(summary).to_string())
        diffs = report.difference_table(summary)
        if len(diffs):
            print("\ndifference to AGW [95% interval over seeds]; * where the interval excludes zero")
            print(diffs.to_string())
    print(f"\nwritten: {Path(results) / 'study.csv'}, summary.csv, provenance.json")


def _rerank_from_args(args: argparse.Namespace):
    from .rerank import RerankConfig
    given = {k: v for k, v in (("k1", args.k1), ("k2", args.k2), ("lambda_value", args.lambda_value),
                               ("convention", args.rerank_convention)) if v is not None}
    if not args.rerank:
        if given:
            raise ValueError("--k1, --k2, --lambda and --rerank-convention set the re-ranking; "
                             "add --rerank to use it")
        return None
    return RerankConfig(**given)


def _print_results(results) -> None:
    for key, res in results.items():
        print(f"== {key} ==")
        print(res)


if __name__ == "__main__":
    sys.exit(main())
