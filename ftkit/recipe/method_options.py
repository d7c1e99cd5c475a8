"""Recipe options of preference tuning (`rl:`): TRL's DPO/KTO/ORPO/CPO trainers (ftkit/train/preference.py maps them)."""
from __future__ import annotations

from typing import Literal, Optional

from ftkit.recipe.base import Strict, option

RLMethod = Literal["dpo", "ipo", "kto", "orpo", "simpo"]


class RLOptions(Strict):
    """Each option names the methods that read it; a value set for another method is an error (schema.py)."""

    rl: Optional[RLMethod] = option(None, description="Preference tuning method: dpo, ipo, kto, orpo or simpo (empty = supervised fine-tuning).")
    rl_beta: Optional[float] = option(None, gt=0, methods=("dpo", "ipo", "kto", "simpo"), description="beta: how far the policy may move from the reference (dpo/kto default 0.1; ipo: tau, default 0.1; simpo default 2.0). Axolotl: also dpo_beta, trl.beta.")
    dpo_label_smoothing: float = option(0.0, ge=0, lt=0.5, methods=("dpo",), description="Assumed fraction of flipped preference labels; > 0 selects TRL's robust DPO loss (rDPO).")
    rpo_alpha: Optional[float] = option(None, ge=0, methods=("dpo", "ipo"), description="Weight of an NLL term on the chosen answer added to the dpo/ipo loss (RPO).")
    orpo_alpha: Optional[float] = option(None, gt=0, methods=("orpo",), description="ORPO's lambda: weight of the odds-ratio term next to the NLL loss (default 0.1).")
    kto_desirable_weight: float = option(1.0, gt=0, methods=("kto",), description="KTO: loss weight of desirable (label true) rows.")
    kto_undesirable_weight: float = option(1.0, gt=0, methods=("kto",), description="KTO: loss weight of undesirable (label false) rows.")
    simpo_gamma: float = option(0.5, ge=0, methods=("simpo",), description="SimPO: target reward margin gamma (TRL's simpo_gamma).")
    cpo_alpha: float = option(0.0, ge=0, methods=("simpo",), description="SimPO: weight of the NLL term on the chosen answer (0 = pure SimPO, 1 = CPO-SimPO, TRL's default).")
