"""Every learning rule, and every option of a rule beyond its paper form, as "rule" or
"rule+option=value": the contract and shape suites run on each."""

from edgefdfa import RULES

VARIANTS = sorted(RULES) + ["fdfa+tangents=3"]


def spec(variant: str) -> tuple[str, dict]:
    """(rule name, options) of a variant."""
    rule, _, option = variant.partition("+")
    if not option:
        return rule, {}
    key, value = option.split("=")
    return rule, {key: int(value)}
