"""Every error a user is meant to read. Each message names the config key, file, row or checkpoint at fault and says
what to change; the entry points print it without a traceback (``USER_ERRORS``)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that composes but cannot be right. The message names the full key and what is allowed."""


class DataError(ValueError):
    """Bad input data. The message names the file (or dataset), the row and the column, and says how to fix it."""


class ModelError(ValueError):
    """A model that cannot be built or does not fit its tokenizer; the message says which key to change."""


class ScorerError(RuntimeError):
    """A scorer raised, or returned something other than one finite float per text. The message names the scorer,
    where it was called (e.g. the PPO step) and the first offending text."""


class ResumeError(FileNotFoundError):
    """``ckpt_path`` names nothing that can be resumed."""


class RunDirError(RuntimeError):
    """The run directory cannot be used: another live run holds it, or it cannot be written."""


class NonFiniteError(RuntimeError):
    """A NaN/Inf loss or gradient with ``nonfinite.policy=abort`` (or too many skipped in a row)."""


class Preempted(RuntimeError):
    """The run stopped on SIGTERM, SIGUSR1 or SIGUSR2 after saving a resumable checkpoint (exit status 143)."""


class PushError(RuntimeError):
    """The export could not be uploaded to the Hugging Face Hub (``push_to_hub``): the message says why and how to
    push the export, which is complete on disk, by hand."""


class OutputError(OSError):
    """An answers file that cannot be opened or written: the message names it; the answer in hand is not saved."""


class PipelineError(RuntimeError):
    """A stage is misconfigured or failed: the message names the stage and what to do."""


class JobFailed(RuntimeError):
    """A sweep job stopped on a user error (config, data, checkpoint): raised instead of ``SystemExit`` so that
    Hydra records the job as failed and launches the next one."""


# What `rlhf-train` reports as one message (exit status 1) instead of a traceback.
USER_ERRORS = (ConfigError, DataError, ModelError, ResumeError, NonFiniteError, RunDirError, ScorerError, PushError)
