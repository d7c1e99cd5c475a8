"""Why a hub model did not load, said with the fix: a gated repo, a wrong name, the hub switched off, no network.

transformers wraps huggingface_hub's errors in an OSError whose text names none of ftkit's fixes; the hub's own
exception (GatedRepoError, RepositoryNotFoundError, ...) is in its chain, and the commands it names (`hf
download`, `hf auth login`) are those of the `hf` CLI that huggingface_hub installs.
"""
from __future__ import annotations

from ftkit.env import offline_switch
from ftkit.errors import Problem


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and all(error is not s for s in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def hub_problem(name: str, what: str, error: BaseException, file: str | None, key: str, line: int | None) -> Problem:
    """The Problem for `name` (an org/name on the hub) that `what` (tokenizer, model...) could not be loaded from."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    chain = _chain(error)
    found = lambda cls: next((e for e in chain if isinstance(e, cls)), None)  # noqa: E731
    here = lambda problem, fix: Problem(problem, file, key, line, fix)  # noqa: E731
    if found(GatedRepoError):
        return here(f"{name} is a gated model: the hub gives its files only to accounts that were granted access",
                    f"request access at {constants.ENDPOINT}/{name} (log in, accept the license; approval can take a "
                    "while), then run `hf auth login` here (or set HF_TOKEN) and run again")
    if found(RevisionNotFoundError):
        return here(f"{name} has no such revision (revision_of_model)",
                    "set revision_of_model to a branch, tag or commit of the repo, or remove it for main")
    if found(RepositoryNotFoundError) or found(HFValidationError):
        return here(f"no model {name!r} on the hub (or it is private and this machine is not logged in to an "
                    "account that can read it)",
                    f"check the spelling (as in the model page's address, {constants.ENDPOINT}/ORG/NAME); a private "
                    "model needs `hf auth login`; a local folder must exist")
    if var := offline_switch():
        return here(f"{name} is not in the local hub cache, and {var}=1 switches downloads off",
                    f"unset {var} (`unset {var}`) to download it; or, where there is network, `hf download {name}` "
                    "first")
    return here(f"cannot reach the hub to download {what} {name} ({str(chain[-1]).splitlines()[0][:160]}), and it is "
                "not in the local hub cache",
                f"check the network (a proxy: HTTPS_PROXY); without one here, run `hf download {name}` on a machine "
                "that has it, copy its hub cache (~/.cache/huggingface/hub, or $HF_HOME/hub) here and set "
                "HF_HUB_OFFLINE=1")
