"""Learning rules, chosen by name. A new rule is one module here and one line in RULES."""

from .base import Rule
from .bp import BP
from .dfa import DFA
from .fdfa import FDFA
from .fga import FGA
from .fgw import FGW

RULES: dict[str, type[Rule]] = {cls.name: cls for cls in (BP, DFA, FGW, FGA, FDFA)}

__all__ = ["RULES", "Rule"]
