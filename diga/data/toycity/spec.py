"""What to generate: `ToyCitySpec`, the `toycity:` section of the config."""

from __future__ import annotations

from dataclasses import dataclass

from diga.data.toycity.style import TARGET_STYLES
from diga.errors import ConfigError


@dataclass(frozen=True)
class ToyCitySpec:
    """What to generate. Validated on construction (ValueError naming the field and the fix)."""

    seed: int = 0            # data seed
    height: int = 64
    width: int = 128
    n_source: int = 300      # source train images
    n_target_train: int = 200
    n_target_val: int = 100
    shift: float = 1.0       # 0 = target looks like source; 1 = version 1's full shift; version 2 goes to 2
    version: int = 1         # layout sizes and target style (diga.data.toycity.layout.LAYOUTS, style.TARGET_STYLES)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def integer(name: str, minimum: int, why: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"ToyCitySpec.{name} must be an integer, got {value!r}; {why}")
            if value < minimum:
                raise ConfigError(f"ToyCitySpec.{name}={value} is too small; set {name} >= {minimum} ({why})")

        integer("seed", 0, "the data seed must be a non-negative integer")
        integer("height", 32, "smaller canvases cannot hold the scene's thin objects")
        integer("width", 64, "smaller canvases cannot hold the scene's thin objects")
        integer("n_source", 1, "each split needs at least one image")
        integer("n_target_train", 1, "each split needs at least one image")
        integer("n_target_val", 1, "each split needs at least one image")
        if self.version not in TARGET_STYLES or isinstance(self.version, bool):
            raise ConfigError(f"ToyCitySpec.version={self.version!r} is not one of {sorted(TARGET_STYLES)}; 1 is the "
                             "original generator, 2 the one with learnable thin classes and a milder, linear shift")
        top = TARGET_STYLES[self.version].max_shift
        shift = self.shift
        if isinstance(shift, bool) or not isinstance(shift, (int, float)):
            raise ConfigError(f"ToyCitySpec.shift must be a number in [0, {top:g}], got {shift!r}")
        if not (0.0 <= float(shift) <= top):
            raise ConfigError(f"ToyCitySpec.shift={shift} is outside [0, {top:g}] for version {self.version}; set "
                             f"shift between 0 (no domain shift) and {top:g}")

    def count(self, domain: str, split: str) -> int:
        return {("source", "train"): self.n_source, ("target", "train"): self.n_target_train,
                ("target", "val"): self.n_target_val}[(domain, split)]
