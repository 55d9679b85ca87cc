"""Which positions enter the pooled, frequency and tangent statistics: two shared options.

Padding never enters. Special tokens and the first position of each sequence enter unless
these options leave them out; every statistic that pools positions declares both, so they are
one flag each (``--exclude-special``, ``--exclude-first``) read by all of them.
"""

from __future__ import annotations

from tgo_analysis.statistics.base import Context, Option
from tgo_store.store.validity import PositionChoice

EXCLUDE_SPECIAL = Option("exclude_special", False, "pooled/frequency/tangent: leave special tokens "
                         "(BOS, CLS, SEP...) out", bool)
EXCLUDE_FIRST = Option("exclude_first", False, "pooled/frequency/tangent: leave the first position of each "
                       "sequence out", bool)
POSITION_OPTIONS = (EXCLUDE_SPECIAL, EXCLUDE_FIRST)


def position_choice(ctx: Context) -> PositionChoice:
    """The positions the options choose."""
    return PositionChoice(exclude_special=bool(ctx.option(EXCLUDE_SPECIAL)),
                          exclude_first=bool(ctx.option(EXCLUDE_FIRST)))
