"""``rlhf-loop``: rounds of human feedback on the policy's own outputs: sample -> label -> train -> measure.

    rlhf-loop --policy logs/pipeline/sft/export --prompts prompts.jsonl --out runs/loop --rounds 3
    rlhf-loop ... --annotator human --name ana            # you compare the pairs of each round in the terminal

Each round ``r`` (under ``--out``/``round<r>/``):
  1. ``candidates.jsonl``: two responses to each of the round's ``--prompts-per-round`` prompts, sampled from the
     current policy (``rlhf-sample --mode compare``);
  2. ``labels.jsonl``: the comparisons, from a person (``rlhf-label --mode compare``) or from the simulated
     annotator: a gold scorer (``--gold``, VADER by default) with Bradley-Terry noise, P(a > b) =
     sigmoid((g(a) - g(b)) / ``--noise``), and a tie when the gold scores are equal (ties are not trained on);
  3. ``train/``: an ordinary ``rlhf-train experiment=dpo_tiny`` run on every label of rounds 0..r
     (``train_labels.jsonl``), ``--epochs`` passes over them, plus any ``--train`` overrides, from ``--train-from``:
     ``start`` (the default: from the starting policy, always the reference; the labels come from ever newer
     policies, the anchor stays) or ``previous`` (iterative DPO: from the current policy, which is also its
     reference); its export is the next round's policy;
  4. ``summary.jsonl``: the new policy's held-out gold score (the first ``--eval-prompts`` prompts, never used for
     training) and its KL to the starting policy, with the label counts; ``loop_summary.jsonl`` holds every round and
     ``start.jsonl`` the starting policy's.

Run the same command again after a crash or Ctrl-C: finished steps are skipped, labelling continues at the first
unlabelled pair (every label is appended and fsynced as it is made, keyed by the pair's id, so none is lost or
counted twice), and a training interrupted mid-way resumes from its last checkpoint (``ckpt_path=auto``). With
``--wandb-project`` each round's summary is logged to one W&B run (resumed on a rerun).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

from rlhf.errors import DataError


def simulated_labels(candidates: Path, output: Path, gold: str, noise: float, seed: int) -> int:
    """Label every not yet labelled pair of ``candidates`` as a simulated annotator would; returns how many were
    labelled now. Each label is appended and fsynced at once, as rlhf-label does."""
    from rlhf.data.answers import answered_ids, append_answer, open_for_answers, repair_tail
    from rlhf.data.readers import read_records
    from rlhf.data.simulated_feedback import bradley_terry_choice
    from rlhf.scoring.gold import gold_scorer

    repair_tail(output)
    done = answered_ids(output)
    todo = [r for _, r in read_records(candidates) if str(r["id"]) not in done]
    if not todo:
        return 0
    scorer = gold_scorer(gold)
    score_a = scorer.score([r["prompt"] for r in todo], [r["a"] for r in todo]).tolist()
    score_b = scorer.score([r["prompt"] for r in todo], [r["b"] for r in todo]).tolist()
    handle = open_for_answers(output)
    try:
        for record, ga, gb in zip(todo, score_a, score_b):
            base = {"id": record["id"], "annotator": f"simulated-{gold}-T{noise:g}"}
            if ga == gb:  # no difference to the gold scorer (e.g. both score 0): a tie, as a person would say
                append_answer(handle, {"prompt": record["prompt"], "a": record["a"], "b": record["b"], "tie": True,
                                       **base})
                continue
            rng = random.Random(f"{seed}/{record['id']}")  # the same answer on a rerun
            a_wins = bradley_terry_choice(ga, gb, noise, rng)
            chosen, rejected = (record["a"], record["b"]) if a_wins else (record["b"], record["a"])
            append_answer(handle, {"prompt": record["prompt"], "chosen": chosen, "rejected": rejected, **base,
                                   "gold_chosen": ga if a_wins else gb, "gold_rejected": gb if a_wins else ga})
    finally:
        handle.close()
    return len(todo)


def _labelled(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.exists() else []


def train_command(args: argparse.Namespace, start: str, train_labels: Path, train_dir: Path, r: int) -> list[str]:
    """Round ``r``'s ``rlhf-train`` command: DPO from ``start`` on ``train_labels``, for ``--epochs`` passes over
    them (more labels, more steps; 0: experiment=dpo_tiny's fixed steps), then the ``--train`` overrides."""
    budget = [] if not args.epochs else [
        "trainer.max_steps=-1", f"trainer.max_epochs={args.epochs}", "trainer.val_check_interval=1.0",
        "trainer.check_val_every_n_epoch=1"]
    return [sys.executable, "-m", "rlhf.train", "experiment=dpo_tiny", "model=pretrained",
            f"model.name_or_path={start}", "data.source.kind=file", f"data.source.path={train_labels}",
            f"seed={args.seed * 1000 + r}", "ckpt_path=auto", f"hydra.run.dir={train_dir}", *budget, *args.train]


def run_round(r: int, args: argparse.Namespace, policy: str, prompts: list, held_out: list) -> dict | None:
    """One round; returns its summary, or None when a person stopped labelling before the round's last pair."""
    from rlhf.data.readers import write_jsonl
    from rlhf.sample import candidate_rows, gold_and_kl, revision_of

    here = args.out / f"round{r}"
    candidates, labels = here / "candidates.jsonl", here / "labels.jsonl"
    if not candidates.exists():
        from rlhf.sample import generate

        responses, revision = generate(policy, prompts, 2, args.max_new_tokens, args.temperature, 1.0, 0,
                                       args.seed * 1000 + r, args.batch_size)
        sampling = {"k": 2, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": 1.0,
                    "top_k": 0, "seed": args.seed * 1000 + r}
        write_jsonl(candidates, candidate_rows(prompts, responses, "compare", {
            "mode": "compare", "policy": policy, "revision": revision, "sampling": sampling, "round": r}))
    total = len(_labelled(candidates))
    if args.annotator == "simulated":
        simulated_labels(candidates, labels, args.gold, args.noise, args.seed)
    else:
        from rlhf.label import Labeller

        Labeller("compare", candidates, labels, args.name, args.seed).run()
    answered = {str(r_["id"]) for r_ in _labelled(labels)}
    skipped_path = labels.with_name(labels.name + ".skipped")
    skipped = {str(r_["id"]) for r_ in _labelled(skipped_path)}
    if len(answered | skipped) < total:
        print(f"round {r}: {len(answered | skipped)} of {total} pairs labelled; run the same command to continue")
        return None
    every = [row for k in range(r + 1) for row in _labelled(args.out / f"round{k}" / "labels.jsonl")]
    train_labels = here / "train_labels.jsonl"
    write_jsonl(train_labels, every)
    train_dir = here / "train"
    if not (train_dir / "export" / "config.json").exists():
        command = train_command(args, args.policy if args.train_from == "start" else policy, train_labels,
                                train_dir, r)
        print(f"round {r}: training on {len(every)} labels: {' '.join(command[2:])}", flush=True)
        done = subprocess.run(command)
        if done.returncode:
            raise SystemExit(f"round {r}: the training run failed (exit {done.returncode}); see {train_dir}/train.log, "
                             f"fix it, and run the same command to resume")
    new_policy = str(train_dir / "export")
    summary = {"round": r, "policy": new_policy, "revision": revision_of(new_policy),
               "labels_this_round": len(answered), "skipped_this_round": len(skipped), "labels_total": len(every),
               "ties_total": sum(1 for row in every if row.get("tie"))}
    if held_out:
        summary.update(gold_and_kl(new_policy, args.policy, held_out, args.eval_samples, args.max_new_tokens,
                                   args.seed, {"kind": "gold", "name": args.gold}))
    write_jsonl(here / "summary.jsonl", [summary])
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="the starting causal-LM export (e.g. an SFT run's export)")
    parser.add_argument("--prompts", required=True, type=Path, help="jsonl/csv/parquet with a 'prompt' column, or txt")
    parser.add_argument("--out", required=True, type=Path, help="the loop's directory (rerun to continue)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompts-per-round", type=int, default=128)
    parser.add_argument("--eval-prompts", type=int, default=32, help="held-out prompts (the first N of the file; "
                                                                     "never trained on); 0: no evaluation")
    parser.add_argument("--eval-samples", type=int, default=16, help="samples per held-out prompt")
    parser.add_argument("--annotator", choices=["simulated", "human"], default="simulated")
    parser.add_argument("--name", default="human", help="--annotator human: your name on every label")
    parser.add_argument("--gold", default="vader", choices=["vader", "offensive"], help="the simulated annotator's "
                                                                                       "and the evaluation's scorer")
    parser.add_argument("--noise", type=float, default=0.1, help="Bradley-Terry temperature of the simulated "
                                                                 "annotator (scorer units)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", nargs="*", default=[], metavar="OVERRIDE",
                        help="extra rlhf-train overrides of every round's DPO run (e.g. method.lr=1e-3 "
                             "trainer.max_steps=100)")
    parser.add_argument("--epochs", type=int, default=3, help="each round's DPO makes this many passes over every "
                                                               "label so far; 0: experiment=dpo_tiny's 300 steps")
    parser.add_argument("--train-from", choices=["start", "previous"], default="start",
                        help="each round's DPO starts from (and is anchored to) the starting policy, or the previous "
                             "round's policy (iterative DPO: drifted to KL 72-365 in experiments/feedback_loop)")
    parser.add_argument("--wandb-project", default=None, help="log each round's summary to this W&B project")
    args = parser.parse_args(argv)
    from rlhf.data.readers import write_jsonl
    from rlhf.sample import read_prompts

    try:
        every_prompt = read_prompts(args.prompts, None)
    except DataError as err:
        raise SystemExit(f"Error: {err}") from err
    held_out, pool = every_prompt[:args.eval_prompts], every_prompt[args.eval_prompts:]
    needed = args.rounds * args.prompts_per_round
    if len(pool) < needed:
        raise SystemExit(f"Error: {args.prompts} has {len(pool)} prompts after the {len(held_out)} held out; "
                         f"{args.rounds} rounds x {args.prompts_per_round} need {needed}: add prompts or lower "
                         f"--prompts-per-round")
    random.Random(args.seed).shuffle(pool)
    args.out.mkdir(parents=True, exist_ok=True)
    logger = _wandb(args)
    history, policy = [], args.policy
    if held_out and not (args.out / "start.jsonl").exists():
        from rlhf.sample import gold_and_kl

        start = gold_and_kl(args.policy, args.policy, held_out, args.eval_samples, args.max_new_tokens, args.seed,
                            {"kind": "gold", "name": args.gold})
        write_jsonl(args.out / "start.jsonl", [start])
        print(f"start: held-out gold {start['gold']:.3f} ± {start['gold_se']:.3f}", flush=True)
    for r in range(args.rounds):
        summary_path = args.out / f"round{r}" / "summary.jsonl"
        if summary_path.exists():
            summary = _labelled(summary_path)[0]
        else:
            summary = run_round(r, args, policy, pool[r * args.prompts_per_round:(r + 1) * args.prompts_per_round],
                                held_out)
            if summary is None:
                raise SystemExit(0)
            if logger is not None:
                logger.log({k: v for k, v in summary.items() if isinstance(v, (int, float))}, step=r)
        history.append(summary)
        policy = summary["policy"]
        line = f"round {r}: {summary['labels_total']} labels"
        if "gold" in summary:
            line += f"; held-out gold {summary['gold']:.3f} ± {summary['gold_se']:.3f}, KL to start {summary['kl']:.2f}"
        print(line, flush=True)
    write_jsonl(args.out / "loop_summary.jsonl", history)
    if logger is not None:
        logger.finish()
    print(f"done: the policy after {args.rounds} rounds is {policy}")


def _wandb(args: argparse.Namespace):
    """One W&B run for the whole loop (its id kept in the loop's directory, so a rerun resumes it), or None."""
    if not args.wandb_project:
        return None
    import wandb

    id_file = args.out / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    return wandb.init(project=args.wandb_project, id=run_id, resume="allow", dir=str(args.out),
                      config={k: str(v) for k, v in vars(args).items()})


if __name__ == "__main__":
    main()
