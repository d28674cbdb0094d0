"""The nemesis side of fallover: a catalogue of faults, each injectable, journaled and always healed."""

from harness.faults.base import Fault, Target
from harness.faults.nemesis import Injected, Nemesis
from harness.faults.registry import FAULTS

__all__ = ["FAULTS", "Fault", "Injected", "Nemesis", "Target"]
