"""``reactor doctor``: the whole setup checked in order, each failure with its fix (see run.py)."""

from reactor.doctor.checklist import Check, print_checks, safe_url
from reactor.doctor.run import diagnose, doctor_command, unusable_settings

__all__ = ["Check", "diagnose", "doctor_command", "print_checks", "safe_url", "unusable_settings"]
