"""Fault injection: a checkpoint write that fails or is killed, SIGTERM and SIGKILL mid-training (then resume), and NaN
losses or gradients."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rlhf.callbacks import AtomicCheckpointIO
from rlhf.errors import NonFiniteError
from rlhf.methods.mlm import MaskedLMModule
from rlhf.train import run
from rlhf.utils.run import resolve_ckpt_path

REPO = Path(__file__).resolve().parents[1]


def _run_with_callback(cfg, callback, monkeypatch):
    """``run(cfg)`` with one more Lightning callback (a fault injector), removed again afterwards."""
    import rlhf.utils.builders as train_module

    real = train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda *a, **k: [*real(*a, **k), callback])
    try:
        return run(cfg)
    finally:
        monkeypatch.setattr(train_module, "build_callbacks", real)


# ---- atomic checkpoints ------------------------------------------------------------------------------------------
def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1  # the previous one, intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left


def test_a_process_killed_while_writing_never_leaves_a_broken_checkpoint(tmp_path):
    script = textwrap.dedent(f"""
        import torch
        from rlhf.callbacks import AtomicCheckpointIO
        io, step = AtomicCheckpointIO(), 0
        print("ready", flush=True)
        while True:
            step += 1
            io.save_checkpoint({{"global_step": step, "state_dict": {{}}, "w": torch.full((4_000_000,), float(step))}},
                               "{tmp_path}/checkpoints/last.ckpt")
    """)
    for delay in (0.4, 0.9, 1.3):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)  # complete, loadable
        assert state["global_step"] >= 1 and bool((state["w"] == float(state["global_step"])).all())
    assert resolve_ckpt_path("auto", tmp_path, tmp_path, None) == tmp_path / "checkpoints" / "last.ckpt"


def test_ckpt_path_auto_resumes_only_its_own_run_dir(tmp_path):
    assert resolve_ckpt_path("auto", tmp_path / "fresh", tmp_path, "mlm") is None  # nothing yet: start fresh


# ---- non-finite guard ----------------------------------------------------------------------------------------------
def _inject(monkeypatch, steps: set[int], where: str) -> None:
    original = MaskedLMModule.training_step

    def training_step(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        if self.global_step in steps:
            if where == "loss":
                return loss * float("nan")
            weight = self.model.get_input_embeddings().weight
            handles = []

            def poison(grad):  # this backward only
                handles.pop().remove()
                return grad * float("inf")

            handles.append(weight.register_hook(poison))
        return loss

    monkeypatch.setattr(MaskedLMModule, "training_step", training_step)


def test_nan_loss_aborts_naming_the_step_and_saves_the_state_before_it(make_cfg, monkeypatch):
    _inject(monkeypatch, {3}, "loss")
    cfg = make_cfg("trainer.max_steps=6", "trainer.val_check_interval=6")
    with pytest.raises(NonFiniteError, match=r"non-finite value at step 3: train/loss=nan") as err:
        run(cfg)
    assert "callbacks.nonfinite.policy=skip" in str(err.value)
    saved = Path(cfg.paths.output_dir) / "checkpoints" / "nonfinite-step000003.ckpt"
    state = torch.load(saved, weights_only=True)
    assert state["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_skip_policy_leaves_parameters_and_optimizer_unchanged_then_aborts_after_k_in_a_row(make_cfg, monkeypatch):
    _inject(monkeypatch, {2, 3}, "grad")
    snapshots = {}

    from lightning.pytorch.callbacks import Callback

    class Record(Callback):  # parameters and optimizer state at the start of steps 2, 3, 4
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step in (2, 3, 4):
                opt = trainer.optimizers[0]
                snapshots[trainer.global_step] = (
                    [p.detach().clone() for p in module.parameters()],
                    [s["exp_avg"].clone() for s in opt.state.values() if "exp_avg" in s])

    import rlhf.utils.builders as train_module

    real = train_module.build_callbacks
    monkeypatch.setattr(train_module, "build_callbacks", lambda *a, **k: [*real(*a, **k), Record()])
    cfg = make_cfg("trainer.max_steps=6", "trainer.val_check_interval=6", "callbacks.nonfinite.policy=skip",
                   "callbacks.nonfinite.max_consecutive=3")
    metrics = run(cfg)
    params2, adam2 = snapshots[2]
    params4, adam4 = snapshots[4]
    assert all(torch.equal(a, b) for a, b in zip(params2, params4))  # steps 2 and 3 skipped: nothing moved
    assert all(torch.equal(a, b) for a, b in zip(adam2, adam4))
    assert metrics["trainer/global_step"] == 6.0 and math.isfinite(metrics["test/loss"])
    assert metrics["train/nonfinite_skipped"] == 2.0

    _inject(monkeypatch, {1, 2, 3, 4}, "grad")
    cfg = make_cfg("trainer.max_steps=6", "trainer.val_check_interval=6", "callbacks.nonfinite.policy=skip",
                   "callbacks.nonfinite.max_consecutive=3", subdir="again")
    with pytest.raises(NonFiniteError, match=r"step 3: the gradient of model\..*embeddings.*3 non-finite steps in a row"):
        run(cfg)


# ---- preemption and kill, per method (subprocesses) ----------------------------------------------------------------
TINY = ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2", "model.intermediate_size=64",
        "model.tokenizer.vocab_size=512", "logger=csv", "callbacks.progress_bar=null",
        "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1", "trainer.max_steps=12",
        "trainer.val_check_interval=12", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "callbacks=[default,sample_ledger]", "callbacks.checkpoint.every_n_train_steps=1"]
METHODS = {
    "mlm": ["data.source.max_documents=120", "data.block_size=32", "data.loader.batch_size=8", "method.warmup_steps=2"],
    "reward": ["experiment=reward_tiny", "data.source.max_articles=60", "data.max_length=48",
               "data.loader.batch_size=8"],
    "pwp": ["experiment=pwp_tiny", "method.objective=unlikelihood", "data.source.max_documents=40",
            "data.block_size=32", "data.loader.batch_size=8", "method.evaluation.num_samples=4",
            "method.evaluation.num_prompts=4"],
    "ppo": ["experiment=ppo_tiny", "data.source.max_documents=60", "data.loader.batch_size=4",
            "method.max_new_tokens=4", "method.num_minibatches=2"],
    "sft": ["experiment=sft_tiny", "data.source.max_articles=60", "data.loader.batch_size=8"],
    "dpo": ["experiment=dpo_tiny", "data.source.max_articles=60", "data.loader.batch_size=8",
            "method.evaluation.enabled=false", "method.precompute_reference=true"],
    "kto": ["experiment=kto_tiny", "data.source.max_articles=60", "data.loader.batch_size=8"],
    "classify": ["experiment=classify_bbc", "data.source.max_documents=120", "data.max_length=64",
                 "data.loader.batch_size=8"],
}
FINAL = {"mlm": "test/loss", "reward": "test/loss", "pwp": "test/lm_loss", "ppo": "test/reward", "sft": "test/loss",
         "dpo": "test/loss", "kto": "test/loss", "classify": "test/loss"}


def _start(tmp_path: Path, method: str, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RLHF_CACHE_DIR": str(tmp_path.parent / "rlhf-cli-cache"), "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, "-m", "rlhf.train", f"paths.root_dir={tmp_path}", *METHODS[method], *TINY,
                             f"hydra.run.dir={tmp_path}/{name}", *extra], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(run_dir: Path, step: int, child: subprocess.Popen, timeout: float = 240) -> None:
    ledger = run_dir / "samples_seen.rank0.jsonl"
    start = time.time()
    while time.time() - start < timeout:
        if ledger.exists() and sum(1 for _ in open(ledger)) >= step:
            return
        if child.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {child.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def _ledger(run_dir: Path) -> dict[int, list[int]]:
    return {json.loads(line)["step"]: json.loads(line)["index"] for line in open(run_dir / "samples_seen.rank0.jsonl")}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_sigterm_and_sigkill_mid_training_then_resume_give_the_uninterrupted_run(tmp_path, method):
    reference = _start(tmp_path, method, "reference")
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    seen = _ledger(tmp_path / "reference")
    assert sorted(seen) == list(range(1, 13))

    # SIGTERM: stop at a step boundary, save last.ckpt, exit 143
    child = _start(tmp_path, method, "term")
    _wait_for_step(tmp_path / "term", 4, child)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 143, err[-3000:]
    assert "Stopped: preempted (SIGTERM) at step" in err
    stopped = torch.load(tmp_path / "term" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert 4 <= stopped < 12

    # SIGKILL at another step: nothing saved at the kill; resume from the newest per-step checkpoint
    child = _start(tmp_path, method, "kill")
    _wait_for_step(tmp_path / "kill", 6 if method != "ppo" else 5, child)
    child.send_signal(signal.SIGKILL)
    child.wait()

    for name in ("term", "kill"):
        resumed = _start(tmp_path, method, name, "ckpt_path=auto")
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err[-3000:]
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics[FINAL[method]] == pytest.approx(expected[FINAL[method]], rel=1e-5, abs=1e-6), name
        # every step's batch, by dataset index, is the uninterrupted run's (steps redone after a kill included)
        assert _ledger(tmp_path / name) == seen, name
        # and it resumed from a checkpoint (at most the killed step is redone) rather than starting afresh
        assert sum(1 for _ in open(tmp_path / name / "samples_seen.rank0.jsonl")) <= 13, name


def test_resume_exactly_at_an_epoch_boundary(make_cfg):
    small = ["data.source.max_documents=16", "data.split.val_fraction=0.25", "data.split.test_fraction=0.25", "trainer.max_steps=20", "trainer.val_check_interval=20",
             "callbacks=[default,sample_ledger]"]
    cfg = make_cfg(*small, subdir="reference")
    reference = run(cfg)
    seen = [json.loads(line) for line in open(Path(cfg.paths.output_dir) / "samples_seen.rank0.jsonl")]
    first_epoch_end = max(row["step"] for row in seen if row["epoch"] == 0)
    assert 2 <= first_epoch_end < 20 and any(row["epoch"] == 2 for row in seen)  # several epochs in 20 steps
    stopped = make_cfg(*small, "callbacks=[default,sample_ledger,stop_at_step]",
                       f"callbacks.stop_at_step.step={first_epoch_end}", subdir="stopped")
    run(stopped)
    assert torch.load(Path(stopped.paths.output_dir) / "checkpoints" / "last.ckpt",
                      weights_only=True)["global_step"] == first_epoch_end
    resumed = run(make_cfg(*small, "ckpt_path=auto", subdir="stopped"))
    assert resumed["test/loss"] == pytest.approx(reference["test/loss"], rel=1e-6)
    stopped_dir = Path(stopped.paths.output_dir)
    again = {json.loads(line)["step"]: json.loads(line) for line in open(stopped_dir / "samples_seen.rank0.jsonl")}
    assert [again[row["step"]] for row in seen] == seen  # same batches, same epochs, nothing repeated or skipped


@pytest.mark.parametrize("stop_after", ["last_batch_of_epoch", "mid_epoch"])
def test_sigterm_at_an_epoch_boundary_or_mid_epoch_resumes_exactly(make_cfg, monkeypatch, stop_after):
    from lightning.pytorch.callbacks import Callback

    from rlhf.errors import Preempted

    small = ["data.source.max_documents=16", "data.split.val_fraction=0.25", "data.split.test_fraction=0.25",
             "trainer.max_steps=20", "trainer.val_check_interval=20", "callbacks=[default,sample_ledger]"]
    cfg = make_cfg(*small, subdir="reference")
    reference = run(cfg)
    seen = {json.loads(line)["step"]: json.loads(line) for line in open(Path(cfg.paths.output_dir) /
                                                                       "samples_seen.rank0.jsonl")}
    epoch_end = max(step for step, row in seen.items() if row["epoch"] == 0)
    stop = epoch_end if stop_after == "last_batch_of_epoch" else epoch_end + 2

    class Signal(Callback):  # SIGTERM arrives during this step
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == stop:
                os.kill(os.getpid(), signal.SIGTERM)

    stopped = make_cfg(*small, subdir="stopped")
    with pytest.raises(Preempted, match=f"at step {stop + 1 if stop_after == 'last_batch_of_epoch' else stop}"):
        _run_with_callback(stopped, Signal(), monkeypatch)  # at an epoch end, the next epoch's first step runs first
    resumed = run(make_cfg(*small, "ckpt_path=auto", subdir="stopped"))
    again = {json.loads(line)["step"]: json.loads(line) for line in open(Path(stopped.paths.output_dir) /
                                                                        "samples_seen.rank0.jsonl")}
    assert again == seen
    assert resumed["test/loss"] == pytest.approx(reference["test/loss"], rel=1e-6)


@pytest.mark.parametrize("signame", ["SIGUSR1", "SIGUSR2", "SIGTERM"])
def test_each_cluster_signal_stops_at_a_step_with_a_checkpoint_then_hands_over_to_the_launcher(
        make_cfg, monkeypatch, signame):
    """SLURM's warning (SIGUSR1), submitit's (SIGUSR2) and SIGTERM sent to a running job: it stops at the next step
    boundary with last.ckpt; for SIGUSR1/2 the handler installed before (the launcher's requeue, here a recorder)
    runs after the checkpoint is on disk; the resumed run ends where the uninterrupted one does."""
    from lightning.pytorch.callbacks import Callback

    from rlhf.errors import Preempted

    small = ["data.source.max_documents=16", "data.split.val_fraction=0.25", "data.split.test_fraction=0.25",
             "trainer.max_steps=12", "trainer.val_check_interval=12"]
    reference = run(make_cfg(*small, subdir="reference"))
    signum = getattr(signal, signame)
    stopped = make_cfg(*small, subdir="stopped")
    last = Path(stopped.paths.output_dir) / "checkpoints" / "last.ckpt"
    requeued = []

    def launcher(number, frame):  # what submitit / Lightning's SLURM connector would do: requeue the job
        requeued.append((number, last.exists()))

    previous = signal.signal(signum, launcher)

    class Signal(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 5:
                os.kill(os.getpid(), signum)

    try:
        with pytest.raises(Preempted, match=rf"preempted \({signame}\) at step 5"):
            _run_with_callback(stopped, Signal(), monkeypatch)
        assert signal.getsignal(signum) is launcher  # given back after the run
    finally:
        signal.signal(signum, previous)
    assert torch.load(last, weights_only=False)["global_step"] == 5
    assert requeued == ([] if signame == "SIGTERM" else [(signum, True)])  # after the checkpoint, once
    resumed = run(make_cfg(*small, "ckpt_path=auto", subdir="stopped"))
    assert resumed["test/loss"] == pytest.approx(reference["test/loss"], rel=1e-6)


# ---- step checkpoints from the first step, and the fallback past an unreadable checkpoint -------------------------
def test_step_checkpoints_are_written_before_the_first_validation_and_resume_skips_a_corrupt_last(
        make_cfg, monkeypatch, caplog):
    """every_n_train_steps=3 on a run that validates only at its end: a crash at step 7 leaves step 3 and 6 (and
    last.ckpt = step 6); with last.ckpt corrupted, ckpt_path=auto resumes from step000006.ckpt, says so, and ends
    where the uninterrupted run ends, with the same batches."""
    from lightning.pytorch.callbacks import Callback


    small = ["trainer.max_steps=12", "trainer.val_check_interval=12", "callbacks=[default,sample_ledger]",
             "callbacks.checkpoint.every_n_train_steps=3"]
    reference_cfg = make_cfg(*small, subdir="reference")
    reference = run(reference_cfg)
    seen = _ledger(Path(reference_cfg.paths.output_dir))

    class Crash(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 7:
                raise RuntimeError("simulated crash at step 7")

    crashed = make_cfg(*small, subdir="crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run_with_callback(crashed, Crash(), monkeypatch)
    checkpoints = Path(crashed.paths.output_dir) / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.ckpt")) == ["last.ckpt", "step000003.ckpt", "step000006.ckpt"]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 6

    data = (checkpoints / "last.ckpt").read_bytes()
    (checkpoints / "last.ckpt").unlink()  # a new file: the hard-linked step000006.ckpt stays intact
    (checkpoints / "last.ckpt").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="rlhf"):
        resumed = run(make_cfg(*small, "ckpt_path=auto", subdir="crashed"))
    assert "skipped last.ckpt (not readable" in caplog.text and "resuming from" in caplog.text
    assert str(checkpoints / "step000006.ckpt") in caplog.text
    lines = (Path(crashed.paths.output_dir) / "samples_seen.rank0.jsonl").read_text().splitlines()
    assert len(lines) == 7 + 6  # steps 1-7 before the crash, 7-12 after: resumed at 6, not started afresh
    assert _ledger(Path(crashed.paths.output_dir)) == seen
    assert resumed["test/loss"] == pytest.approx(reference["test/loss"], rel=1e-6)


def test_resume_reports_every_unreadable_checkpoint_when_none_is_left(tmp_path):
    from rlhf.errors import ResumeError

    directory = tmp_path / "checkpoints"
    directory.mkdir()
    for name in ("last.ckpt", "step000004.ckpt", "nonfinite-step000005.ckpt"):
        (directory / name).write_bytes(b"torn")
    with pytest.raises(ResumeError, match=r"no readable checkpoint in .*checkpoints: (last.ckpt|step000004.ckpt) "
                                          r"\(not readable.*; (last.ckpt|step000004.ckpt) \(not readable"):
        resolve_ckpt_path("auto", tmp_path, tmp_path, None)
    assert resolve_ckpt_path("auto", tmp_path / "fresh", tmp_path, None) is None  # nothing there: start afresh


def test_a_resume_after_sigterm_validates_on_the_uninterrupted_schedule(make_cfg, monkeypatch):
    """SIGTERM at step 27 of a 30-step run validating every 10: train and test metrics matched after resume, but the
    final val/loss did not (Lightning's counters said the step about to start was 'ready', so the resumed run
    validated after step 29 instead of 30). Every metric now matches, and validation is logged at the same steps."""
    import csv

    from lightning.pytorch.callbacks import Callback

    from rlhf.errors import Preempted

    small = ["trainer.max_steps=30", "trainer.val_check_interval=10"]
    reference = run(make_cfg(*small, subdir="reference"))

    class Signal(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 27:
                os.kill(os.getpid(), signal.SIGTERM)

    stopped = make_cfg(*small, subdir="stopped")
    with pytest.raises(Preempted, match="at step 27"):
        _run_with_callback(stopped, Signal(), monkeypatch)
    resumed = run(make_cfg(*small, "ckpt_path=auto", subdir="stopped"))
    for key in ("val/loss", "val/perplexity", "val/masked_accuracy", "test/loss", "trainer/global_step"):
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6), key
    rows = csv.DictReader(open(Path(stopped.paths.output_dir) / "csv" / "version_1" / "metrics.csv"))
    assert [int(r["step"]) for r in rows if r.get("val/loss")] == [29]  # the step the uninterrupted run logs it at
