"""The `tritemporal` command line. Subcommands call the same functions as `scripts/*.py`."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import get_args

from tritemporal.config import FrontCameraConfig, HighwayCamera, HighwayScenario, load_config

logger = logging.getLogger("tritemporal")
# eval.compare.PARTS and eval.anticipation.TTM_HORIZONS (a test keeps them equal): the parser
# does not import the evaluation stack
COMPARE_PARTS = ("eventually", "now", "soon", "rankme", "ttm")
COMPARE_TTM = (0.5, 1.0, 2.0, 3.0)
# every command that reads a trained model takes what TriTemporalModel.from_pretrained takes
SOURCE_HELP = "run dir, checkpoint folder, saved model folder or Hub repo id"

# The original scaffold's flags, kept as shortcuts for dotted overrides.
SHORTCUTS = {
    "data_root": "data.root",
    "steps": "train.steps",
    "batch_size": "train.batch_size",
    "device": "train.device",
    "run_dir": "train.run_dir",
    "seed": "train.seed",
    "lr": "optim.lr",
    "backbone": "backbone.name",
}


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="tritemporal", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a tri-temporal V-JEPA model")
    train.add_argument("--config", help="YAML config (see configs/); defaults when omitted")
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="dotted override, e.g. --set optim.lr=3e-4 (repeatable)",
    )  # fmt: skip
    train.add_argument(
        "--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
        help="continue from run_dir's last checkpoint, or from the one named "
        "(e.g. step_00000300; a damaged last checkpoint stops with the name to pass)",
    )  # fmt: skip
    shortcuts = train.add_argument_group("shortcuts for common --set keys")
    shortcuts.add_argument(
        "--data-root", "--data_root", dest="data_root", help="data.root (video folder)"
    )
    shortcuts.add_argument("--steps", type=int, help="train.steps")
    shortcuts.add_argument(
        "--batch-size", "--batch_size", dest="batch_size", type=int, help="train.batch_size"
    )
    shortcuts.add_argument("--device", help="train.device: auto, cpu, cuda, cuda:N")
    shortcuts.add_argument("--run-dir", "--run_dir", dest="run_dir", help="train.run_dir")
    shortcuts.add_argument("--seed", type=int, help="train.seed")
    shortcuts.add_argument("--lr", type=float, help="optim.lr")
    shortcuts.add_argument("--backbone", help="backbone.name (see the registry)")

    clips = sub.add_parser("make-clips", help="simulate labelled driving clips with highway-env")
    clips.add_argument("--out", required=True, help="output folder (videos/ + annotations/)")
    clips.add_argument("--num", type=int, default=24, help="number of videos")
    clips.add_argument(
        "--scenario", default="highway",
        help=f"one of {', '.join(get_args(HighwayScenario))}, or a mix: highway,merge (equal "
        "shares) or highway=0.7,merge=0.3; each video's scenario is fixed by its index",
    )  # fmt: skip
    clips.add_argument(
        "--workers", type=int, default=1,
        help="processes simulating at once (the same videos for the same --seed, whatever "
        "their number)",
    )  # fmt: skip
    clips.add_argument("--seed", type=int, default=0)
    clips.add_argument(
        "--zoom", type=float, default=1.0,
        help="camera zoom: 1 the default view, 1.5 the road 1.5 times larger (less of it in view)",
    )  # fmt: skip
    clips.add_argument(
        "--fps", type=float, default=8.0,
        help="video fps: frames per simulated second in the videos (the ego policy acts once per "
        "frame); the simulation speed, frames made per wall-clock second, is printed as it runs",
    )  # fmt: skip
    clips.add_argument(
        "--image-size", default="128x128",
        help="HEIGHTxWIDTH in pixels, e.g. 64x128 for a wide view (the order of clip.image_size)",
    )  # fmt: skip
    clips.add_argument(
        "--camera", choices=get_args(HighwayCamera), default="top",
        help="top: the map view; front: the ego's windshield camera, its geometry and look drawn "
        "per video from dash-cam ranges unless --fixed-camera / --fixed-look",
    )  # fmt: skip
    clips.add_argument(
        "--fixed-camera", action="store_true",
        help="front: every video with the geometry below (height, pitch, yaw, field of view)",
    )  # fmt: skip
    clips.add_argument(
        "--fixed-look", action="store_true",
        help="front: every video with the default look (its colours, noon light, mild noise)",
    )  # fmt: skip
    for flag, key, unit in (
        ("--camera-height", "height_m", "m above the road"),
        ("--camera-pitch", "pitch_deg", "degrees, > 0 looks down"),
        ("--camera-yaw", "yaw_deg", "degrees, > 0 looks right"),
        ("--hfov", "hfov_deg", "degrees of horizontal field of view"),
    ):
        default = getattr(FrontCameraConfig(), key)
        clips.add_argument(flag, type=float, default=default, help=f"front: {unit} ({default:g})")
    clips.add_argument("--size", help=argparse.SUPPRESS)  # the old WIDTHxHEIGHT flag: refused
    clips.add_argument("--seconds", type=float, default=20.0, help="length of each video")

    bench = sub.add_parser("bench", help="time the training step or the loader (JSON)")
    bench.add_argument("--data", action="store_true", help="time the data loader alone")
    bench.add_argument(
        "--render", choices=get_args(HighwayCamera),
        help="time a clip camera's renderer on one core (frames/s), apart from the simulator",
    )  # fmt: skip
    bench.add_argument(
        "--image-size", default="128x256", help="with --render: HEIGHTxWIDTH of the frames"
    )
    bench.add_argument("--frames", type=int, default=300, help="with --render: frames timed")
    bench.add_argument(
        "--parts", action="store_true",
        help="profile the real step and split its time by pass (teacher, student, predictor, "
        "heads, AdamW, EMA)",
    )  # fmt: skip
    bench.add_argument(
        "--mode", choices=["vjepa", "tri"], default="tri",
        help="vjepa: the two-mask V-JEPA 2 step alone; tri: all three objectives",
    )  # fmt: skip
    bench.add_argument("--steps", type=int, default=20, help="timed steps (after warm-up)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed steps (compile happens here)")
    bench.add_argument("--compile", action="store_true", help="torch.compile every block")
    bench.add_argument("--config", help="YAML config (see configs/)")
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    bench.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    bench.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    bench.add_argument(
        "--gpu-clips-per-s", type=float,
        help="with --data: a GPU step's clips/s (from bench --mode); reports the cores to feed it",
    )  # fmt: skip
    bench.add_argument("--out", help="also write the JSON here")

    ev = sub.add_parser("eval", help="probe NOW, SOON and EVENTUALLY on held-out clips")
    ev.add_argument("--checkpoint", required=True, help=SOURCE_HELP)
    ev.add_argument("--data", required=True, help="held-out videos folder (+ annotations/)")
    ev.add_argument(
        "--out", help="report folder (report.json, PNG plots, the EVENTUALLY probe for predict)"
    )
    ev.add_argument("--seed", type=int, default=0, help="probe folds and random-init baseline")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--max-samples", type=int, default=0, help="evaluate at most N windows")
    ev.add_argument("--device", default="auto")
    ev.add_argument(
        "--unconditioned", metavar="SOURCE",
        help="for an action-conditioned checkpoint: an unconditioned model trained on the same "
        "budget, whose SOON error the action report sets beside it",
    )  # fmt: skip
    ev.add_argument(
        "--plan-windows", type=int, default=64,
        help="windows the action report plans for (cross-entropy method; 0 skips planning)",
    )  # fmt: skip
    ev.add_argument(
        "--toward-windows", type=int, default=32,
        help="keep-lane windows the action report plans a lane change for, each side, replayed "
        "in the simulator for highway-env clips (0 skips it)",
    )  # fmt: skip

    cmp = sub.add_parser(
        "compare", help="several models side by side on held-out clips, with bootstrap intervals"
    )
    cmp.add_argument(
        "sources", nargs="+", metavar="SOURCE",
        help=f"{SOURCE_HELP}; random:SOURCE for a randomly initialised copy of its architecture; "
        "teacher:RUN for a run's EMA teacher as the encoder; ego-status for the ego-status guard "
        "(a probe on the NOW frames' own ego series from the annotations, no model: the EVENTUALLY "
        "outcome and time-to-maneuver columns; ./ego-status names a folder of that name)",
    )  # fmt: skip
    cmp.add_argument("--data", required=True, help="held-out videos folder (+ annotations/)")
    cmp.add_argument(
        "--out", required=True,
        help="folder for comparison.json, .md, .png and time_to_maneuver.png",
    )  # fmt: skip
    cmp.add_argument("--names", nargs="+", help="one row name per SOURCE (default: folder names)")
    cmp.add_argument(
        "--group", action="append", default=[], metavar="NAME=A,B,C",
        help="also summarise sources A, B, C (row names, e.g. 3 seeds) as one row (repeatable)",
    )  # fmt: skip
    cmp.add_argument("--bootstrap", type=int, default=1000, help="resamples of held-out videos")
    cmp.add_argument("--seed", type=int, default=0, help="probe folds, resamples, random init")
    cmp.add_argument(
        "--parts", nargs="+", default=list(COMPARE_PARTS), choices=COMPARE_PARTS,
        help="column families to compute (default: all; the NOW probes take most of the time)",
    )  # fmt: skip
    cmp.add_argument(
        "--ttm", type=parse_horizons, default=",".join(f"{d:g}" for d in COMPARE_TTM),
        metavar="D1,D2,...",
        help="time-to-maneuver horizons: seconds from the end of the NOW window to a maneuver's "
        "onset (default %(default)s; '' skips the ttm columns and time_to_maneuver.png)",
    )  # fmt: skip
    cmp.add_argument("--batch-size", type=int, default=16)
    cmp.add_argument("--device", default="auto")

    push = sub.add_parser("push", help="upload a run, checkpoint or saved model to the Hub")
    push.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    push.add_argument("--repo-id", required=True, help="USER/NAME or ORG/NAME")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--revision", help="branch to push to (created if needed)")

    curves = sub.add_parser("curves", help="plot logged metrics of a run over its steps (PNG)")
    curves.add_argument("run_dir", metavar="RUN_DIR", help="a training run (its metrics.jsonl)")
    curves.add_argument("--keys", nargs="+", default=["loss", "target_std"], help="metrics")
    curves.add_argument("--out", help="PNG path (default: RUN_DIR/curves.png)")
    curves.add_argument(
        "--smooth", type=int, default=1, metavar="N",
        help="also draw the mean of the last N logged values, the raw line faint behind it",
    )  # fmt: skip

    export = sub.add_parser("export", help="write a run or checkpoint as a saved-model folder")
    export.add_argument(
        "source", metavar="SOURCE", help=f"{SOURCE_HELP}; teacher:RUN exports its EMA teacher"
    )
    export.add_argument("--out", required=True, help="folder for config.json, weights, card")
    export.add_argument("--notes", help="Markdown file: the card's Evaluation section (results)")

    merge = sub.add_parser("merge", help="write LoRA-merged weights as a transformers VJEPA2Model")
    merge.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    merge.add_argument("out", help="output folder (VJEPA2Model.from_pretrained(OUT))")

    predict = sub.add_parser("predict", help="per-window EVENTUALLY embeddings over a video")
    predict.add_argument(
        "video", metavar="VIDEO",
        help="video file: any container PyAV reads (.mp4 .mov .mkv .avi .ts .m4v .webm ...) or a "
        "raw .h264/.hevc stream",
    )  # fmt: skip
    predict.add_argument("--checkpoint", required=True, metavar="SOURCE", help=SOURCE_HELP)
    predict.add_argument("--out", help="predictions .npz (default: ./VIDEO_NAME.predictions.npz)")
    predict.add_argument("--plot", metavar="FILE.png", help="also draw a timeline PNG here")
    predict.add_argument(
        "--probe", metavar="EVAL_DIR",
        help="add outcome probabilities from the EVENTUALLY probe `tritemporal eval` saved in "
        "its --out folder (fitted on the same checkpoint)",
    )  # fmt: skip
    predict.add_argument(
        "--stride-s", "--stride_s", dest="stride_s", type=float,
        help="seconds between window starts (default: the run's data.stride_s)",
    )  # fmt: skip
    predict.add_argument(
        "--raw-fps", "--raw_fps", dest="raw_fps", type=float,
        help="frame rate of a raw .h264/.hevc VIDEO (no timestamps; default: the run's "
        "data.raw_fps, else the rate the stream's headers state)",
    )  # fmt: skip
    predict.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=8)
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")

    plan = sub.add_parser(
        "plan", help="plan steering and acceleration toward a maneuver (action-conditioned SOON)"
    )
    plan.add_argument(
        "video", metavar="VIDEO",
        help="video file (its annotation, if any, gives the recorded state and actions)",
    )  # fmt: skip
    plan.add_argument("--checkpoint", required=True, metavar="SOURCE", help=SOURCE_HELP)
    plan.add_argument(
        "--toward", required=True, metavar="MANEUVER",
        help="the maneuver to plan toward, e.g. lane_change_left (one the scorer knows)",
    )  # fmt: skip
    plan.add_argument(
        "--at", type=float, metavar="SECONDS", help="start of the window (default: the first)"
    )
    plan.add_argument(
        "--scorer-data", metavar="DATA",
        help="annotated training videos the maneuver scorer is fitted on (not needed once --out "
        "holds a scorer fitted for this checkpoint)",
    )  # fmt: skip
    plan.add_argument(
        "--out", help="folder for plan.json, plan.png and the scorer (default: ./VIDEO_NAME.plan)"
    )
    plan.add_argument("--seed", type=int, default=0, help="the planner's random draws")
    plan.add_argument("--batch-size", type=int, default=16, help="windows per scorer batch")
    plan.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")

    convert = sub.add_parser(
        "convert-meta",
        help="convert a checkpoint of Meta's V-JEPA 2 training code into a backbone folder",
    )
    convert.add_argument("checkpoint", help="Meta's .pt with encoder/predictor/target_encoder")
    convert.add_argument("--out", required=True, help="output folder (use as backbone.pretrained)")
    convert.add_argument(
        "--encoder", default="target_encoder", choices=["target_encoder", "encoder"],
        help="which encoder to keep (default: the EMA target encoder, as Meta releases)",
    )  # fmt: skip
    convert.add_argument("--num-heads", type=int, help="encoder heads (inferred for L/H/g)")
    convert.add_argument("--pred-num-heads", type=int, help="predictor heads (12 for 384 wide)")
    convert.add_argument("--crop-size", type=int, default=256, help="pretraining crop size")
    _add_data_commands(sub)
    return parser


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """`import` (a downloaded dataset -> videos/ + annotations/) and `label --from-ego`."""
    from tritemporal.data.importers.base import IMPORTERS

    imp = sub.add_parser(
        "import", help="turn a downloaded driving dataset into videos/ + annotations/"
    )
    imp.add_argument("format", choices=sorted(IMPORTERS), help="the dataset's format")
    imp.add_argument("src", help="the dataset as downloaded (its root folder)")
    imp.add_argument("--out", required=True, help="output data folder (data.root for training)")
    imp.add_argument("--copy", action="store_true", help="copy videos instead of linking them")
    imp.add_argument("--split", help="bdd100k: import only this split (train, val or test)")
    imp.add_argument("--channel", help="frames: import only this nuScenes camera (CAM_FRONT)")
    imp.add_argument("--fps", type=float, help="frames: the frame rate of untimed image folders")
    imp.add_argument(
        "--encode", action="store_true",
        help="frames: write H.264 MP4 instead of reading the images where they are",
    )  # fmt: skip
    imp.add_argument(
        "--split-gap", type=float, default=1.0, metavar="S",
        help="frames: a longer hole between timestamps starts a new video",
    )  # fmt: skip
    for command in (imp, sub.add_parser("label", help="derive maneuver labels from ego series")):
        command.add_argument("--config", help="YAML config whose data.auto_labels to use")
        command.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="e.g. --set data.auto_labels.brake_drop=3",
        )  # fmt: skip
        command.add_argument(
            "--on-error", choices=["skip", "raise"], default="skip",
            help="bad files: skip them (counted and listed) or stop at the first",
        )  # fmt: skip
        command.add_argument("--json", help="also write the summary here")
    label = sub.choices["label"]
    label.add_argument("dir", help="data folder with annotations/ (hand events are kept)")
    label.add_argument(
        "--from-ego", action="store_true", required=True,
        help="derive brake, stop, turns and lane changes from the ego series",
    )  # fmt: skip
    label.add_argument(
        "--score", action="store_true",
        help="write nothing: score the derived events against the files' hand events "
        "(precision / recall per maneuver)",
    )  # fmt: skip


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """Dotted overrides from shortcut flags first, then explicit --set (which wins)."""
    overrides = []
    for flag, key in SHORTCUTS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    if getattr(args, "data_root", None) is not None:
        # A video folder means video data: never train on something else silently.
        overrides.append("data.source=videos")
    return overrides + list(args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    """`tritemporal train`: load and validate the config, then run the loop."""
    from tritemporal.train import train

    config = load_config(args.config, overrides_from_args(args))
    run_dir = train(config, resume=args.resume)
    logger.info("done: %s", run_dir)
    return 0


def cmd_convert_meta(args: argparse.Namespace) -> int:
    """`tritemporal convert-meta`: Meta's V-JEPA 2 .pt -> transformers folder."""
    from tritemporal.adapters.vjepa2_meta import convert_meta_checkpoint

    out = convert_meta_checkpoint(
        args.checkpoint, args.out, args.encoder, args.num_heads, args.pred_num_heads, args.crop_size
    )
    logger.info("wrote %s; train on it with --set backbone.name=vjepa2 "
                "--set backbone.pretrained=%s", out, out)  # fmt: skip
    return 0


def _image_size(text: str) -> tuple[int, int]:
    """--image-size HEIGHTxWIDTH as (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--image-size {text!r} must look like 64x128 (HEIGHTxWIDTH)") from None
    return height, width


def cmd_make_clips(args: argparse.Namespace) -> int:
    """`tritemporal make-clips`: highway-env videos + annotations, with class balance."""
    from tritemporal.data.front_camera import CameraGeometry
    from tritemporal.data.highway import format_summary, make_clips
    from tritemporal.data.highway_front import FrontSettings

    if args.size is not None:
        raise ValueError(
            f"--size {args.size} was WIDTHxHEIGHT; it is now --image-size HEIGHTxWIDTH, the order "
            "of clip.image_size: write --image-size " + "x".join(reversed(args.size.split("x")))
        )
    height, width = _image_size(args.image_size)
    geometry = CameraGeometry(
        height_m=args.camera_height, pitch_deg=args.camera_pitch, yaw_deg=args.camera_yaw,
        hfov_deg=args.hfov,
    )  # fmt: skip
    summary = make_clips(
        args.out, args.num, args.scenario, args.seed, args.fps, (height, width), args.seconds,
        progress=True, workers=args.workers, zoom=args.zoom, camera=args.camera,
        front=FrontSettings(geometry, not args.fixed_camera, not args.fixed_look),
    )  # fmt: skip
    print(format_summary(summary))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`tritemporal bench`: the training step's speed (or `--data`: the loader's; `--render`: a
    clip camera's renderer), as JSON."""
    import json

    from tritemporal.bench import bench_data, bench_parts, bench_step

    config = None if args.render else load_config(args.config, args.overrides)
    if args.render:
        from tritemporal.data.render_bench import bench_render

        report = bench_render(args.render, _image_size(args.image_size), args.frames)
    elif args.data:
        report = bench_data(config, args.workers, args.batches, args.gpu_clips_per_s)
    elif args.parts:
        report = bench_parts(config, args.mode, args.steps, args.warmup, args.compile)
    else:
        report = bench_step(config, args.mode, args.steps, args.warmup, args.compile)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


def _write_summary(summary: dict, path: str | None) -> None:
    if path:
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps(summary, indent=1))


def cmd_import(args: argparse.Namespace) -> int:
    """`tritemporal import`: one dataset format -> the videos/ + annotations/ layout."""
    from tqdm import tqdm

    from tritemporal.data.importers.base import ImportOptions, run_import

    labels = load_config(args.config, args.overrides).data.auto_labels
    options = ImportOptions(
        copy=args.copy, fps=args.fps, encode=args.encode, split_gap_s=args.split_gap,
        split=args.split, channel=args.channel, labels=labels,
    )  # fmt: skip
    progress = lambda items: tqdm(items, desc=f"import {args.format}", unit="video")  # noqa: E731
    summary = run_import(args.format, args.src, args.out, options, args.on_error, progress)
    print(summary.format_lines())
    _write_summary(summary.to_dict(), args.json)
    return 0 if summary.imported + summary.resumed else 2


def cmd_label(args: argparse.Namespace) -> int:
    """`tritemporal label --from-ego`: auto maneuver events from every annotation's ego series."""
    from tritemporal.data.ego_labels import format_scores, relabel, score_folder
    from tritemporal.data.videos import label_vocabulary

    data = load_config(args.config, args.overrides).data
    vocabulary = label_vocabulary(data.extra_maneuvers)
    if args.score:
        scores = score_folder(args.dir, data.auto_labels, vocabulary)
        print(format_scores(scores))
        _write_summary(scores, args.json)
        return 0
    summary = relabel(args.dir, data.auto_labels, vocabulary, args.on_error)
    print(summary.format())
    _write_summary(summary.to_dict(), args.json)
    return 0 if summary.labelled else 2


def cmd_eval(args: argparse.Namespace) -> int:
    """`tritemporal eval`: report.json, plots and a probe for a checkpoint on held-out clips;
    prints the headline numbers."""
    from pathlib import Path

    from tritemporal.eval.report import evaluate, summary_table
    from tritemporal.heads.probe import PROBE_WEIGHTS
    from tritemporal.hub import locate
    from tritemporal.model import TriTemporalModel
    from tritemporal.runtime import resolve_device

    device = resolve_device(args.device)
    if args.unconditioned:  # a wrong path fails now, not after the evaluation
        locate(args.unconditioned)
    source = Path(args.checkpoint)
    model = TriTemporalModel.from_pretrained(args.checkpoint)  # the text: `./runs/x` stays a path
    out = args.out or str(source / "eval")
    report = evaluate(
        model.to(device), args.data, out, args.seed, args.batch_size, args.max_samples
    )
    print(summary_table(report))
    logger.info("wrote %s/report.json and plots", out)
    if model.action is not None:  # controllable forecasting: does SOON follow the actions?
        from tritemporal.eval.actions import action_lines, action_report, write_action_report

        baseline = None
        if args.unconditioned:
            baseline = TriTemporalModel.from_pretrained(args.unconditioned).to(device)
        actions = action_report(
            model, args.data, baseline, args.batch_size, args.seed,
            plan_windows=args.plan_windows, toward_windows=args.toward_windows,
        )  # fmt: skip
        write_action_report(actions, out)
        print("\n" + "\n".join(action_lines(actions)))
    elif args.unconditioned:
        raise ValueError(
            f"--unconditioned: {args.checkpoint} is not action-conditioned, so there is no "
            "action report to set it beside"
        )
    if (Path(out) / PROBE_WEIGHTS).is_file():
        logger.info("wrote %s/%s: use it with `tritemporal predict VIDEO --checkpoint %s "
                    "--probe %s`", out, PROBE_WEIGHTS, args.checkpoint, out)  # fmt: skip
    return 0


def parse_horizons(text: str) -> list[float]:
    """`--ttm 0.5,1,2,3` as seconds ('' gives none)."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: write seconds like 0.5,1,2,3") from exc


def parse_groups(specs: list[str]) -> dict[str, list[str]]:
    """`--group NAME=A,B,C` flags as {NAME: [A, B, C]}."""
    groups = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        if not sep or not name or not members:
            raise ValueError(f"--group {spec!r} must look like NAME=A,B,C (names of sources)")
        groups[name] = [m for m in members.split(",") if m]
    return groups


def cmd_compare(args: argparse.Namespace) -> int:
    """`tritemporal compare`: comparison.json/.md/.png for several sources; prints the table."""
    from tritemporal.eval.compare import COMPARISON_JSON, compare, markdown_table, write_comparison
    from tritemporal.runtime import resolve_device

    groups = parse_groups(args.group)
    result = compare(
        args.sources, args.data, args.names, groups, args.bootstrap, args.seed, args.batch_size,
        resolve_device(args.device), args.parts, args.ttm,
    )  # fmt: skip
    out = write_comparison(result, args.out)
    print(markdown_table(result))
    plots = "comparison.png" + (" and time_to_maneuver.png" if result["ttm"] else "")
    logger.info("wrote %s/%s, comparison.md, %s", out, COMPARISON_JSON, plots)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """`tritemporal push`: one commit with config, weights, adapter and model card."""
    from tritemporal.hub import check_push_target, locate, run_card_extras
    from tritemporal.model import TriTemporalModel

    check_push_target(args.repo_id, None)  # before loading anything
    found = locate(args.source)  # once: a Hub id is downloaded here, a run dir resolved
    model = TriTemporalModel.from_pretrained(found.path)
    extras = run_card_extras(found.path) if found.is_checkpoint else None
    url = model.push_to_hub(
        args.repo_id, private=args.private, revision=args.revision, model_card_kwargs=extras
    )
    logger.info("pushed %s to %s", args.source, url)
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    """`tritemporal curves`: the run's metrics.jsonl drawn, one panel per logged key."""
    from pathlib import Path

    from tritemporal.eval.plots import plot_curves
    from tritemporal.metrics import METRICS_FILE, read_metrics

    run = Path(args.run_dir)
    if not (run / METRICS_FILE).is_file():
        raise FileNotFoundError(f"{run / METRICS_FILE} not found: pass a training run directory")
    records = read_metrics(run)
    out = plot_curves(records, args.keys, args.out or run / "curves.png", str(run), args.smooth)
    logger.info("wrote %s", out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`tritemporal export`: the folder `push` would upload, written locally (no teacher)."""
    from pathlib import Path

    from tritemporal.eval.compare import RANDOM_PREFIX, load_source, locate_source
    from tritemporal.hub import MODEL_CARD, run_card_extras

    if args.source.startswith(RANDOM_PREFIX):
        raise ValueError(f"export {args.source!r}: export takes SOURCE or teacher:RUN")
    notes = Path(args.notes).read_text() if args.notes else None  # a wrong path fails first
    prefix, found = locate_source(args.source)
    model = load_source(args.source, located=(prefix, found))
    extras = run_card_extras(found.path) if found.is_checkpoint else {}
    if notes:
        extras["evaluation"] = notes
    # the mixin writes a card only where none exists: an export replaces the folder's card
    (Path(args.out) / MODEL_CARD).unlink(missing_ok=True)
    model.save_pretrained(args.out, model_card_kwargs=extras)
    logger.info("wrote %s: load it with TriTemporalModel.from_pretrained(%r)", args.out, args.out)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """`tritemporal merge`: fold LoRA into the base and save in transformers' format."""
    from tritemporal.hub import merge_to_transformers
    from tritemporal.model import TriTemporalModel

    model = TriTemporalModel.from_pretrained(args.source)
    logger.info("wrote %s", merge_to_transformers(model, model.config, args.out))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """`tritemporal predict`: slide a trained model over a video, save .npz (and a PNG)."""
    from pathlib import Path

    from tritemporal.heads.probe import LinearProbe
    from tritemporal.model import TriTemporalModel
    from tritemporal.predict import plot_timeline, predict_video, save_predictions
    from tritemporal.runtime import resolve_device

    probe = LinearProbe.load(args.probe) if args.probe else None
    device = resolve_device(args.device)
    model = TriTemporalModel.from_pretrained(args.checkpoint).to(device)
    result = predict_video(
        model, args.video, args.stride_s, args.batch_size, device, probe, raw_fps=args.raw_fps
    )
    out = save_predictions(result, args.out or f"{Path(args.video).stem}.predictions.npz")
    classes = f", outcome probabilities of {', '.join(probe.label_names)}" if probe else ""
    print(f"wrote {out} ({len(result['time'])} windows{classes})")
    if args.plot:
        print(f"wrote {plot_timeline(result, args.plot)}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """`tritemporal plan`: CEM toward a maneuver from one window of a video; prints the planned
    controls, writes plan.json and plan.png."""
    from pathlib import Path

    from tritemporal.data.videos import label_vocabulary
    from tritemporal.eval.maneuver_scorer import load_or_fit_scorer
    from tritemporal.eval.planning import open_window, plan_lines, plan_video, write_plan
    from tritemporal.model import TriTemporalModel
    from tritemporal.runtime import resolve_device

    device = resolve_device(args.device)
    model = TriTemporalModel.from_pretrained(args.checkpoint).to(device).eval()
    if model.action is None:
        raise ValueError(
            f"--checkpoint {args.checkpoint} is not action-conditioned: planning needs a model "
            "trained with predictor.action_conditioning=true"
        )
    known = label_vocabulary(model.config.data.extra_maneuvers)
    if args.toward not in known:
        raise ValueError(f"--toward {args.toward!r}: unknown maneuver; one of {', '.join(known)}")
    windows = open_window(model, args.video, args.at)  # a bad VIDEO or --at fails before fitting
    out = Path(args.out or f"{Path(args.video).stem}.plan")
    scorer, fitted = load_or_fit_scorer(model, out, args.scorer_data, args.seed, args.batch_size)
    logger.info("maneuver scorer %s %s", "fitted and saved in" if fitted else "loaded from", out)
    if args.toward not in scorer.label_names:
        raise ValueError(
            f"--toward {args.toward}: the maneuver scorer in {out} knows only "
            f"{', '.join(scorer.label_names)} (the maneuvers its windows show in their SOON part)"
        )
    result = plan_video(model, windows, scorer, args.toward, args.seed)
    print("\n".join(plan_lines(result)))
    for path in write_plan(result, out):
        print(f"wrote {path}")
    return 0


COMMANDS = {
    "train": cmd_train,
    "make-clips": cmd_make_clips,
    "bench": cmd_bench,
    "convert-meta": cmd_convert_meta,
    "push": cmd_push,
    "export": cmd_export,
    "curves": cmd_curves,
    "eval": cmd_eval,
    "compare": cmd_compare,
    "merge": cmd_merge,
    "predict": cmd_predict,
    "plan": cmd_plan,
    "import": cmd_import,
    "label": cmd_label,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tritemporal` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: one line (train's says how to resume), 128 + SIGINT
        again = "; run it again to continue where it stopped" if args.command == "import" else ""
        logger.warning("%s", str(exc) or f"{args.command} interrupted (Ctrl-C){again}")
        return 130
    except RuntimeError as exc:
        from tritemporal.train import TrainingDivergedError

        if isinstance(exc, TrainingDivergedError):
            logger.error("%s", exc)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
