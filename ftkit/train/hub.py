"""`hub_model_id`: pushing the model to the Hugging Face hub, checked before training starts.

transformers' Trainer does the upload (TrainingArguments push_to_hub, hub_model_id, hub_strategy: at each
save and at the end, into a private repo, as Axolotl sets it). ftkit only checks up front what would
make it fail after hours of training: the hub switched off (HF_HUB_OFFLINE=1, as the Makefile and the tests
set it), no token, or a token the hub rejects.
"""
from __future__ import annotations

from ftkit.env import offline_switch
from ftkit.errors import ConfigError, Problem
from ftkit.log import log


def pushes(recipe) -> bool:
    return bool(recipe.hub_model_id) and recipe.push_to_hub is not False


def trainer_kwargs(recipe) -> dict:
    """TrainingArguments for the push (empty when nothing is pushed)."""
    if not pushes(recipe):
        return {}
    out = {"push_to_hub": True, "hub_model_id": recipe.hub_model_id, "hub_private_repo": True, "hub_always_push": True}
    if recipe.hub_strategy:
        out["hub_strategy"] = recipe.hub_strategy
    if recipe.hub_revision:
        out["hub_revision"] = recipe.hub_revision
    return out


def check(recipe, verify: bool = True) -> None:
    """Raise a ConfigError now when the push could not work (offline, no token, rejected token). `verify`: ask
    the hub whether it takes the token (`ftkit check` reads no network, so it only says it did not)."""
    if not pushes(recipe):
        return
    where, file = "hub_model_id", recipe.source
    if var := offline_switch():
        raise ConfigError(Problem(f"pushing to {recipe.hub_model_id} needs the hub, but it is switched off ({var}=1)",
                                  file, where, fix=f"unset {var} (`unset {var}`) and log in (`hf auth login`, or set "
                                                   "HF_TOKEN), or set push_to_hub: false"))
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise ConfigError(Problem(f"pushing to {recipe.hub_model_id} needs a hub token, and none is set", file, where,
                                  fix="run `hf auth login` (or set HF_TOKEN); or set push_to_hub: false"))
    if not verify:
        log.info(f"hub_model_id: a hub token is set; ftkit train asks the hub whether it takes the push to "
                 f"{recipe.hub_model_id} before training starts")
        return
    try:
        user = HfApi().whoami(token=token)
    except Exception as e:  # network down or token rejected: either way the push would fail later  # noqa: BLE001
        raise ConfigError(Problem(f"the hub does not accept the push ({str(e).splitlines()[0][:120]})", file, where,
                                  fix="check the network and the token (`hf auth whoami`)")) from None
    log.info(f"hub_model_id: pushing to {recipe.hub_model_id} as {user.get('name', '?')} (private repo)")
