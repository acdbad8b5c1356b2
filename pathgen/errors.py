"""Exception tree for pathgen.

Every error a user can cause or meet derives from :class:`PathgenError` and
carries the data needed to say what went wrong and what to do about it::

    PathgenError
    ├── ConfigError           invalid pathgen.toml or environment override
    │   ├── CannotStart       a preflight check failed (key, model, template, manifest, probe)
    │   └── ConfigDrift       a run's settings changed in a way that alters its outputs
    ├── SlideError            a slide cannot be opened, has no µm/px, no tissue, ...
    │   └── ReaderRefused     one slide reader cannot read a file (the next one is tried)
    ├── ModelLoadError        a CLIP checkpoint or config cannot be loaded
    ├── LLMError              a provider call failed; ``transient``: another attempt may work
    │   ├── RateLimited       429 / quota, with an optional retry delay (transient)
    │   ├── ProviderError     5xx, timeout, connection error (transient unless said)
    │   │   └── ProviderRejected  400/401/403/404/422: permanent; 401/403/404 pause the stage
    │   └── BadOutput         the model answered, but not with usable text (permanent)
    ├── StoreError            database problems
    │   └── ImmutableRevisionError   an attempt to change or delete a stored revision
    ├── ExportError           an export cannot be written
    └── TrainError            a CLIP training cannot start, resume or finish
"""

from __future__ import annotations


class PathgenError(Exception):
    """Root of every pathgen error; ``str(err)`` is a one-line user message."""


class ConfigError(PathgenError):
    """The configuration file or an environment override is invalid."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ""
        if path:
            where += f"{path}: "
        if key:
            where += f"{key}: "
        super().__init__(f"{where}{message}")


class CannotStart(ConfigError):
    """``pathgen run``/``worker``/``check`` found problems before claiming any work.

    ``problems`` are ``(stage, setting, message)``; ``stage`` is ``""`` for run-wide ones.
    """

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        lines = [
            f"  {stage + ': ' if stage else ''}{setting}: {message}"
            for stage, setting, message in problems
        ]
        super().__init__(f"cannot start ({len(problems)} problem(s)):\n" + "\n".join(lines))


class ConfigDrift(ConfigError):
    """An existing run was started with settings that would change what its stages make.

    ``changes`` are ``(key, stored value, new value)``; ``advice`` says what to do.
    """

    def __init__(self, run_id: str, changes: list[tuple[str, object, object]], advice: str):
        self.run_id = run_id
        self.changes = changes
        lines = [f"  {key}: {old!r} -> {new!r}" for key, old, new in changes]
        super().__init__(
            f"run {run_id!r} was made with other settings; changed:\n"
            + "\n".join(lines)
            + f"\n{advice}"
        )


class SlideError(PathgenError):
    """A slide cannot be used; ``reason`` is a short machine-readable code.

    ``reader`` names the slide reader that opened the file, when one did.
    """

    def __init__(self, slide: str, reason: str, message: str, *, reader: str | None = None) -> None:
        self.slide = slide
        self.reason = reason
        self.reader = reader
        super().__init__(f"{slide}: {message}")


class ReaderRefused(SlideError):
    """The reader ``reader`` cannot read this file; ``why`` says why in a few words."""

    def __init__(self, slide: str, reader: str, why: str) -> None:
        self.why = why
        super().__init__(slide, "unsupported", f"{reader}: {why}", reader=reader)


class ModelLoadError(PathgenError):
    """A CLIP model, checkpoint or model config could not be loaded."""


class LLMError(PathgenError):
    """A call to an LLM or VLM provider failed.

    The class says what to do, from where the error is raised: ``transient`` errors may
    succeed on another attempt, the others never will; ``pauses_stage`` errors (bad key,
    unknown model or URL) fail every call of the stage until the configuration is fixed.
    ``attempts`` is the number of requests the failed call made.
    """

    transient: bool = False
    pauses_stage: bool = False
    attempts: int = 1


class RateLimited(LLMError):
    """The provider throttled the call; ``retry_after`` is seconds, if it said."""

    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ProviderError(LLMError):
    """Server error, timeout or connection error (``retryable``), or a rejected request."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)

    @property  # type: ignore[override]
    def transient(self) -> bool:
        return self.retryable


class ProviderRejected(ProviderError):
    """The provider refused the request with a 4xx status: no retry will help.

    401/403/404 (bad key, no access, unknown model or URL) fail every call alike, so they
    pause the stage; 400/422 concern one request. Carries ``status``, ``provider``,
    ``base_url``, ``model`` and the server's ``detail``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        provider: str,
        base_url: str | None = None,
        model: str | None = None,
        detail: str = "",
    ) -> None:
        self.status = status
        self.provider = provider
        self.base_url = base_url
        self.model = model
        self.detail = detail
        super().__init__(message, retryable=False)

    @property  # type: ignore[override]
    def pauses_stage(self) -> bool:
        return self.status in (401, 403, 404)


class BadOutput(LLMError):
    """The provider answered but the output is unusable (empty, refusal, unparsable).

    Permanent: a retry for empty output happens inside the call (see
    :mod:`pathgen.llm.resilient`); once raised here, the item does not try again.
    """

    def __init__(self, message: str, raw: str | None = None) -> None:
        self.raw = raw
        super().__init__(message)


class StoreError(PathgenError):
    """A database operation failed."""


class ImmutableRevisionError(StoreError):
    """Stored caption revisions are append-only: write a new revision instead."""


class ExportError(PathgenError):
    """An export could not be written."""


class TrainError(PathgenError):
    """A CLIP training cannot start, resume or finish; ``out_dir`` is its folder."""

    def __init__(self, message: str, *, out_dir: str | None = None) -> None:
        self.out_dir = out_dir
        super().__init__(f"{out_dir}: {message}" if out_dir else message)
