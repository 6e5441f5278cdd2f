"""The attack suites, as data: which attacks run on which model (S, R, E), with their settings, in the order
they cascade, and how a stochastic engine is attacked and scored per suite."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attack:
    name: str  # what verify.json calls it
    on: str  # "S" (white-box on the twin), "R" (transfer), "E" (black-box on the engine),
    # "S:members i+j" (the twin of a majority of an ensemble's members)
    method: str  # the registered attack that runs it (verify.attacks.WHITE_BOX / BLACK_BOX)
    params: dict[str, Any]

    @property
    def white_box(self) -> bool:
        return self.on != "E"


@dataclass(frozen=True)
class Randomness:
    """How a stochastic engine is attacked and scored: EOT draws per gradient, score draws per
    Square query, and scoring passes per candidate (a point counts as robust only if E is right
    in every pass). A deterministic engine uses 1, 1, 1."""

    eot: int = 1
    square_draws: int = 1
    passes: int = 1


@dataclass(frozen=True)
class Suite:
    name: str
    attacks: tuple[Attack, ...]  # in cascade order
    stochastic: Randomness  # how a stochastic engine is attacked and scored (a deterministic one: 1, 1, 1)
    autoattack: str | None = None  # what it runs, as AutoAttack's users know it (docs/verify.md, `verify --help`)


# Every suite is a cascade, as AutoAttack runs: each attack runs only on the points every earlier one left
# robust on E, so the strongest attacks come first and the rest spend their steps on the hard points. FGSM
# comes after the iterative attacks: breaking points they all missed is a masking symptom (see verify.flags).
# Stochastic engines get EOT over tens of draws (Athalye et al. 2018).
SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "quick",
            (
                Attack("pgd-ce", "S", "pgd", {"steps": 20, "restarts": 1, "loss": "ce"}),
                Attack("pgd-margin", "S", "pgd", {"steps": 20, "restarts": 1, "loss": "margin"}),
                Attack("fgsm", "S", "fgsm", {}),
                Attack("transfer-pgd-ce", "R", "pgd", {"steps": 20, "restarts": 1, "loss": "ce"}),
                Attack("square", "E", "square", {"queries": 300}),
            ),
            Randomness(eot=4, square_draws=2, passes=20),
        ),
        # The default, designed from where AutoAttack's time goes (docs/verify.md, benchmarks/malt_targets.py and
        # benchmarks/autoattack_referee.py): APGD-CE breaks most points; targeted APGD toward the 3 classes MALT's
        # Jacobian estimate puts nearest (not 9 by logit rank) breaks the rest, with 4 more random starts for the
        # few points whose margin came within a tenth of crossing (the one point of ResNet-18 at 1/255 that
        # AutoAttack broke and 3 targets missed was such a point, broken by half of the new starts); FAB-T, APGD-DLR
        # and the PGD variants found nothing AutoAttack's four attacks did not on the referee models. FGSM and Square stay for what they
        # detect (masked gradients: a one-step or score-based attack beating the iterative ones); Square spends
        # AutoAttack's 5,000 queries only where its first 1,000 broke points the gradient attacks missed.
        Suite(
            "standard",
            (
                Attack("apgd-ce", "S", "apgd", {"steps": 100, "restarts": 1, "loss": "ce"}),
                Attack(
                    "apgd-t-malt",
                    "S",
                    "apgd-t",
                    {"steps": 100, "targets": 3, "ranking": "malt", "rescue_restarts": 4, "rescue_below": 0.1},
                ),
                Attack("fgsm", "S", "fgsm", {}),
                Attack("transfer-apgd-ce", "R", "apgd", {"steps": 100, "restarts": 1, "loss": "ce"}),
                Attack("square", "E", "square", {"queries": 1000, "escalate": 5000}),
            ),
            Randomness(eot=10, square_draws=4, passes=20),
        ),
        Suite(
            "thorough",
            (
                Attack("apgd-ce", "S", "apgd", {"steps": 200, "restarts": 3, "loss": "ce"}),
                Attack("apgd-t", "S", "apgd-t", {"steps": 200, "targets": 9}),
                Attack("apgd-dlr", "S", "apgd", {"steps": 200, "restarts": 3, "loss": "dlr"}),
                Attack("fab-t", "S", "fab", {"steps": 100, "targets": 9}),
                Attack("pgd-ce", "S", "pgd", {"steps": 100, "restarts": 5, "loss": "ce"}),
                Attack("pgd-margin", "S", "pgd", {"steps": 100, "restarts": 3, "loss": "margin"}),
                Attack("pgd-ce-2x-steps", "S", "pgd", {"steps": 200, "restarts": 1, "loss": "ce"}),
                Attack("fgsm", "S", "fgsm", {}),
                Attack("transfer-apgd-ce", "R", "apgd", {"steps": 200, "restarts": 1, "loss": "ce"}),
                Attack("square", "E", "square", {"queries": 10000}),
            ),
            Randomness(eot=20, square_draws=8, passes=20),
        ),
        # AutoAttack by its own name (Croce and Hein 2020; the settings of its versions "standard", "plus" and
        # "rand"), with our protocol's placement: the gradient attacks on the twin S, Square on the engine E.
        # "standard" adds one thing to AutoAttack's recipe, so it is at least as strong and never a seed's luck
        # weaker: APGD-T's rescue restarts on points whose margin came within a tenth of crossing. Without them
        # one such point of the pyautoattack ResNet-18 at 1/255 is broken by AutoAttack's APGD-T with 1 seed in 6
        # and by ours with 2 in 6 (benchmarks/autoattack_seed_spread.py), which is the whole 1 pt at n=100.
        Suite(
            "autoattack-standard",
            (
                Attack("apgd-ce", "S", "apgd", {"steps": 100, "restarts": 1, "loss": "ce"}),
                Attack(
                    "apgd-t", "S", "apgd-t", {"steps": 100, "targets": 9, "rescue_restarts": 4, "rescue_below": 0.1}
                ),
                Attack("fab-t", "S", "fab", {"steps": 100, "targets": 9}),
                Attack("square", "E", "square", {"queries": 5000}),
            ),
            Randomness(eot=10, square_draws=4, passes=20),
            "APGD-CE, APGD-T (9 targets, rescue restarts), FAB-T (9 targets), Square (5,000 queries)",
        ),
        Suite(
            "autoattack-plus",
            (
                Attack("apgd-ce", "S", "apgd", {"steps": 100, "restarts": 5, "loss": "ce"}),
                Attack("apgd-dlr", "S", "apgd", {"steps": 100, "restarts": 5, "loss": "dlr"}),
                Attack("fab", "S", "fab", {"steps": 100, "restarts": 5}),
                Attack("square", "E", "square", {"queries": 5000, "restarts": 5}),
                Attack("apgd-t", "S", "apgd-t", {"steps": 100, "targets": 9}),
                Attack("fab-t", "S", "fab", {"steps": 100, "targets": 9}),
            ),
            Randomness(eot=20, square_draws=8, passes=20),
            "APGD-CE, APGD-DLR, FAB, Square (5 restarts each), APGD-T, FAB-T",
        ),
        Suite(
            "autoattack-rand",
            (
                Attack("apgd-ce", "S", "apgd", {"steps": 100, "restarts": 1, "loss": "ce"}),
                Attack("apgd-dlr", "S", "apgd", {"steps": 100, "restarts": 1, "loss": "dlr"}),
            ),
            Randomness(eot=20, square_draws=1, passes=20),
            "APGD-CE, APGD-DLR with EOT over 20 draws",
        ),  # for randomized defenses: one restart each
    )
}
