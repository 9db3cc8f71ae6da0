"""aselect: train DiTs under timestep policies, analyse which timesteps and layers carry semantics, compare.

The command line is a thin shell: each subcommand is a small function here, and the work it does lives in
(and is tested through) `aselect_core` and `analysis`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields
from typing import Any, Callable, Mapping

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]
COMMANDS: dict[str, Command] = {}


def command(name: str, help_: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated `run(args) -> exit code` and its `add_arguments(parser)` under `name`."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add_arguments, run, help_)
        return run
    return register


# -- datasets -------------------------------------------------------------------------------------------------
def _datasets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")


@command("datasets", "list the embedded datasets (size, image shape, classes, split sizes)", _datasets_args)
def _datasets(args: argparse.Namespace) -> int:
    from aselect_core.datasets import describe_datasets

    df = describe_datasets()
    out = {"table": lambda: df.to_string(index=False), "csv": lambda: df.to_csv(index=False),
           "json": lambda: df.to_json(orient="records", indent=2)}[args.format]()
    print(out)
    return 0


# -- train ----------------------------------------------------------------------------------------------------
def _train_args(p: argparse.ArgumentParser) -> None:
    from aselect_core.train.args import add_train_arguments

    add_train_arguments(p)
    p.add_argument("--nproc", type=int, default=1,
                   help="processes for DDP (re-launches itself under torchrun; gloo on CPU, nccl on CUDA)")


@command("train", "train a DiT with a timestep policy; writes a run dir", _train_args)
def _train(args: argparse.Namespace) -> int:
    from aselect_core.train import train
    from aselect_core.train.args import config_from_args

    config = config_from_args(args)
    if args.nproc > 1:  # hand the resolved config to torchrun's workers through a file in the run dir
        import yaml
        from pathlib import Path

        launch = Path(config.out) / "launch.yaml"
        launch.parent.mkdir(parents=True, exist_ok=True)
        launch.write_text(yaml.safe_dump({k: v for k, v in config.to_dict().items() if k != "resume"}))
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}", "--standalone",
               "-m", "aselect_core.train", "--config", str(launch)]
        cmd += ["--resume"] * config.resume + ["--no-progress"] * args.no_progress
        return subprocess.call(cmd)
    print(train(config, progress=not args.no_progress))
    return 0


def _int_list(text: str) -> list[int]:
    """`0,50,100` or `0:1000:50` (a range) to a list of ints."""
    if ":" in text:
        return list(range(*(int(v) for v in text.split(":"))))
    return [int(v) for v in text.split(",") if v]


def _time_list(text: str) -> list[int] | list[float]:
    """Timesteps as `_int_list` reads them, or flow times in [0, 1] such as `0.1,0.5,0.9`."""
    return _int_list(text) if ":" in text or "." not in text else [float(v) for v in text.split(",") if v]


def _name_list(text: str) -> list[str]:
    """`a,b` to ["a", "b"]."""
    return [v.strip() for v in text.split(",") if v.strip()]


def registered_options(registry: Mapping[str, Any]) -> str:
    """'name: field, field; ...' — each registry entry's option names (the fields of its `.options` dataclass), so
    `--option`'s help lists what the registries accept (a selection method's include its grid's)."""
    return "; ".join(f"{name}: {', '.join(f.name for f in fields(entry.options))}" for name, entry in registry.items())


# -- analyze --------------------------------------------------------------------------------------------------
def _analyze_args(p: argparse.ArgumentParser) -> None:
    from analysis.registry import ANALYSES
    from analysis.selection import METHODS

    p.add_argument("run", nargs="?", help="run dir (or give --model and --out instead)")
    p.add_argument("--model", help="a model file or folder to analyse without a run dir (official DiT .pt, "
                   "diffusers DiT / DiTPipeline folder, this project's checkpoint, sit:PATH for a SiT); "
                   "needs --data and --out")
    p.add_argument("--vae", help="diffusers AutoencoderKL folder: images are encoded to latents before noising")
    p.add_argument("--image-size", type=int, help="with --model: image side in pixels (default: the model's input)")
    p.add_argument("--out", help="with --model: output dir; artefacts go to OUT/analysis/")
    p.add_argument("--data", help="dataset spec (default: the run's)")
    p.add_argument("--timesteps", type=_time_list,
                   help="candidate timesteps, e.g. 0,100,200 or 0:1000:50; flow models (sit:PATH): 0.1,0.5,0.9")
    p.add_argument("--layers", type=_int_list, help="block indices, e.g. 0,3,5 (default: all)")
    p.add_argument("--n-images", type=int, default=1000, help="train images for the probes")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset and the per-image noise")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of a selection method or (for a RUN) an analysis (repeatable), routed to those "
                        f"that declare it; unknown ones are refused. Methods: {registered_options(METHODS)}. "
                        f"Analyses: {registered_options(ANALYSES)}. E.g. --option hfr_mode=min")
    p.add_argument("--generation", type=int, default=0, metavar="N",
                   help="also sample N images (DDIM, 50 steps) and score them: analysis/generation.json")
    p.add_argument("--attribution-images", type=int, default=0,
                   help="also integrated-gradients maps of this many test images (the attribution figure)")
    p.add_argument("--tasks", type=_name_list, metavar="TASK,...",
                   help="classification and/or segmentation (default: both where the dataset has masks, "
                        "else classification); segmentation: analysis/segmentation.parquet")


@command("analyze", "probe / HFR / MI / I-MMSE grids and timestep selections; writes RUN/analysis/", _analyze_args)
def _analyze(args: argparse.Namespace) -> int:
    from analysis.pipeline import analyze_run
    from aselect_core.train.args import parse_key_values

    if args.model is not None:
        from analysis.model_analysis import analyze_model

        if args.run is not None or args.data is None or args.out is None:
            raise ValueError("analyze: --model takes no RUN and needs --data and --out")
        if args.tasks is not None:
            raise ValueError("analyze: --tasks applies to a RUN dir, not to --model")
        paths = analyze_model(args.model, args.data, args.out, args.image_size, args.vae, args.timesteps,
                              args.layers, args.n_images, args.seed, device=args.device,
                              **parse_key_values(args.option, "--option"))
    elif args.run is None:
        raise ValueError("analyze: give a RUN dir, or --model PATH with --data and --out")
    else:
        paths = analyze_run(args.run, data=args.data, timesteps=args.timesteps, layers=args.layers,
                            n_images=args.n_images, seed=args.seed, device=args.device,
                            attribution_images=args.attribution_images, generation_samples=args.generation,
                            tasks=args.tasks,
                            **parse_key_values(args.option, "--option"))
    for name, path in paths.items():
        print(f"{name:10} {path}")
    return 0


# -- select ---------------------------------------------------------------------------------------------------
def _select_args(p: argparse.ArgumentParser) -> None:
    from analysis.selection import METHODS

    p.add_argument("run", help="run dir or checkpoint")
    p.add_argument("--method", nargs="+", default=["hfr"], choices=sorted(METHODS),
                   help="selection method(s); the oracle's grid (when computed) scores the others")
    p.add_argument("--data", help="dataset spec (default: the run's)")
    p.add_argument("--timesteps", type=_int_list, help="candidate timesteps")
    p.add_argument("--layer", help="restrict to one block (index or block.i)")
    p.add_argument("--n-images", type=int, default=1000, help="train images for the probes")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset and the per-image noise")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the methods (repeatable); unknown ones are refused. "
                        f"{registered_options(METHODS)}. E.g. --option hfr_mode=min")


@command("select", "pick the informative (timestep, layer) of a run; prints the selection table", _select_args)
def _select(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.selection import options_for, select_timestep
    from aselect_core.train.args import parse_key_values

    options = options_for(args.method, parse_key_values(args.option, "--option"))
    rows = [select_timestep(args.run, args.data, method=m, layer=args.layer, timesteps=args.timesteps,
                            n_images=args.n_images, seed=args.seed, device=args.device, progress=True,
                            **options[m]).row()
            for m in args.method]
    print(pd.DataFrame(rows).drop(columns=["details"]).to_string(index=False))
    return 0


# -- compare --------------------------------------------------------------------------------------------------
def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run dirs (broken ones are listed with the reason)")
    p.add_argument("--methods", nargs="+", default=["hfr"], help="selection methods to tabulate beside the oracle")
    p.add_argument("--out", help="write the table as CSV (.csv), LaTeX (.tex) or Markdown (.md, the README's table)")


@command("compare", "policies x datasets: accuracy at the oracle and selected cells, counted cost", _compare_args)
def _compare(args: argparse.Namespace) -> int:
    from analysis.compare import compare_runs, pareto_front, write_table

    table = compare_runs(args.runs, methods=args.methods)
    table["pareto"] = pareto_front(table)
    if args.out:
        write_table(table, args.out)
    print(table.drop(columns=["path"]).to_string(index=False))
    return 0


# -- sample ---------------------------------------------------------------------------------------------------
def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run dir or checkpoint")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (a strided subsequence of the schedule)")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim", help="DDIM (eta = 0) or DDPM ancestral")
    p.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale (conditional runs)")
    p.add_argument("--class", dest="class_", type=int, metavar="K",
                   help="class to sample (conditional runs; default: in turn)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (same seed -> same images)")
    p.add_argument("--no-clip", action="store_true",
                   help="keep each step's x0 estimate unclamped (default: clamped to [-1, 1], as guided-diffusion)")
    p.add_argument("--out", required=True, help="folder for samples.npz and samples.png")
    p.add_argument("--device", default="cpu", help="cpu or cuda")


@command("sample", "sample images from a run's EMA DiT (DDIM / DDPM); writes OUT/samples.npz and a PNG grid",
         _sample_args)
def _sample(args: argparse.Namespace) -> int:
    import torch

    from analysis.generation import load_generator, sample, write_samples

    gen = load_generator(args.run)
    if args.class_ is not None and not gen.conditional:
        raise ValueError(f"--class: {args.run} is an unconditional run (trained on the null class only)")
    y = (torch.arange(args.n) % gen.num_classes if args.class_ is None else args.class_) if gen.conditional else None
    images = sample(gen.model, args.n, args.steps, args.sampler, gen.schedule, y, args.cfg_scale, args.seed,
                    device=args.device, progress=True, clip_denoised=not args.no_clip)
    for path in write_samples(images, args.out):
        print(path)
    return 0


# -- figures --------------------------------------------------------------------------------------------------
def _figures_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", default=[], help="run dirs")
    p.add_argument("--out", required=True, help="folder for the figures, their CSV data and the LaTeX table")
    p.add_argument("--seed-table", help="also the seed table's figure and LaTeX from this CSV "
                                        "(bench/seed_table.py writes bench/results/seed_table.csv)")
    p.add_argument("--format", default="pdf,svg,png", help="comma-separated: pdf, svg, png")


@command("figures", "paper figures (PDF/SVG/PNG + CSV) of runs and their comparison table (CSV + LaTeX)",
         _figures_args)
def _figures(args: argparse.Namespace) -> int:
    import logging

    from analysis.figures import write_figures

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    paths = write_figures(args.runs, args.out, formats=tuple(args.format.split(",")), progress=True,
                          seed_table=args.seed_table)
    print(f"wrote {len(paths)} files under {args.out}")
    return 0


# -- app ------------------------------------------------------------------------------------------------------
def _app_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", help="runs root (default: $ASELECT_RUNS, else ./runs when it holds runs, "
                                  "else the shipped data/demo_runs)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")


@command("app", "serve the Streamlit workbench over a runs root", _app_args)
def _app(args: argparse.Namespace) -> int:
    from app.serve import serve

    return serve(args.runs, args.port, args.host)


# -- demo -----------------------------------------------------------------------------------------------------
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a tiny budget (a few minutes on 2 CPU cores)")
    p.add_argument("--out", help="runs root to fill (default: the shipped data/demo_runs when complete, "
                                 "else runs/demo or runs/demo-quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of every demo run")
    p.add_argument("--no-app", action="store_true", help="train and analyse only")
    p.add_argument("--slim", action="store_true", help="keep half-precision EMA weights only (for shipping runs)")
    p.add_argument("--port", type=int, default=8501, help="port of the app")


@command("demo", "train -> analyse -> app on embedded data (skips what already exists)", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from app.demo import is_complete, run_demo
    from app.serve import DEMO_RUNS, serve

    plan = "quick" if args.quick else "full"
    if args.out:
        out = Path(args.out)
    elif plan == "full" and is_complete(DEMO_RUNS, plan):
        out = DEMO_RUNS
    else:
        out = Path("runs") / ("demo" if plan == "full" else "demo-quick")
    t0 = time.perf_counter()
    run_demo(out, plan, seed=args.seed, slim=args.slim)
    print(f"demo runs ready under {out} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0 if args.no_app else serve(out, args.port)


# -- entry point ----------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aselect", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, _, help_) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # library errors carry one-line messages
        print(f"aselect {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
