"""HuBERT's recipe from one config file: iteration-1 labels (MFCC k-means) -> `train hubert` ->
iteration-2 labels (k-means of that model's layer) -> `train hubert` -> `train ctc` -> `eval asr`.

    python examples/hubert_recipe.py examples/hubert_recipe.yaml [--device cuda] [--dry-run]

Each step is a `speechtok` command (printed before it runs) writing under the config's `work`
directory; every one of them resumes, so re-running the recipe after a crash or a stop goes on
where it was (finished steps return at once). Under torchrun, run the `train` commands it prints
with `torchrun --nproc-per-node N -m speechtok.cli ...` instead (see --dry-run).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml


def flags(options: dict) -> list[str]:
    """{max_steps: 10} -> ["--max-steps", "10"]; one-letter keys as -k; True as a bare flag."""
    out = []
    for key, value in options.items():
        flag = f"-{key}" if len(key) == 1 else f"--{key.replace('_', '-')}"
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


def steps(config: dict, base: Path, device: str) -> list[list[str]]:
    """The speechtok commands of the recipe, in order."""
    def path(value: str) -> str:
        return str((base / value).resolve()) if value is not None else None

    if not config.get("iterations"):
        sys.exit("the recipe has no `iterations`: give at least one (labels + train), see examples/hubert_recipe.yaml")
    work = Path(path(config["work"]))
    train, valid = path(config["train"]), path(config.get("valid"))
    commands, previous = [], None
    for number, iteration in enumerate(config["iterations"], 1):
        labels = dict(iteration["labels"])
        if labels.get("encoder") == "previous":
            if previous is None:
                sys.exit("iteration 1 cannot take its targets from a previous model: give `encoder: mfcc`")
            labels["encoder"] = str(previous)
        label_dir, run = work / f"labels-it{number}", work / f"hubert-it{number}"
        commands.append(["hubert-labels", "--train", train, *(["--valid", valid] if valid else []), *flags(labels),
                         "-o", str(label_dir), "--device", device])
        commands.append(["train", "hubert", "--train", train, *(["--valid", valid] if valid else []), "--labels",
                         str(label_dir), *flags(iteration.get("train", {})), "-o", str(run), "--device", device])
        previous = run
    ctc = config.get("ctc")
    if ctc:
        out = work / "ctc"
        commands.append(["train", "ctc", "--train", path(ctc["train"]), *(["--valid", path(ctc["valid"])] if ctc.get("valid")
                                                                           else []), "--init", str(previous),
                         *flags(ctc.get("options", {})), "-o", str(out), "--device", device])
        test = config.get("test")
        if test:
            commands.append(["eval", "asr", str(out / "final"), path(test["tsv"]), path(test["text"]), "--device", device])
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="The recipe (YAML): see examples/hubert_recipe.yaml.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--dry-run", action="store_true", help="Print the commands, run nothing.")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    for command in steps(config, args.config.parent, args.device):
        print("speechtok " + shlex.join(command), flush=True)
        if not args.dry_run:
            done = subprocess.run([sys.executable, "-m", "speechtok.cli", *command])
            if done.returncode != 0:
                sys.exit(f"the step failed (exit {done.returncode}); fix it and re-run the recipe to go on")


if __name__ == "__main__":
    main()
