"""Errors a user can cause. The CLI prints these as one clear line, never a traceback."""


class T1jaxError(Exception):
    """Base class for mistakes in user input (config, data files, checkpoints)."""


class ConfigError(T1jaxError):
    """A config file, override or combination of values is invalid."""


class DataError(T1jaxError):
    """A data file is missing or malformed (the message names the file and line)."""


class CheckpointError(T1jaxError):
    """A checkpoint directory is missing, not a checkpoint, or does not fit the model."""


class SamplingError(T1jaxError, ValueError):
    """Bad arguments to the sampler (empty or too long prompts, K < 1, filter values)."""


class TrainingError(T1jaxError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class Stopped(T1jaxError):
    """A run stopped on SIGTERM (a preempted TPU VM) or SIGINT after saving the step it finished."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number  # what a shell reports for a process the signal ended
