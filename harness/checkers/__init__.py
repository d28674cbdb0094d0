"""Checkers: pure functions of a saved timeline + load log (+ topology) to verdicts; never touch a cluster."""

from __future__ import annotations

from harness.checkers.base import (UNKNOWN, Checker, Context, Valid, Verdict, check_safe, fmt_s, merge_valid,
                                   run_all)
from harness.checkers.detection import check_detection
from harness.checkers.failed_requests import check_failed_requests
from harness.checkers.fallover import check_fallover
from harness.checkers.fencing import check_fencing
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.notification import check_notification
from harness.checkers.outage import check_outage
from harness.checkers.policy import check_policy
from harness.checkers.recovery import check_fail_counts
from harness.checkers.redundancy import check_redundancy_restored
from harness.checkers.split_brain import check_split_brain
from harness.checkers.whole import check_starts, check_untouched

CHECKERS: dict[str, Checker] = {
    # in the order things happen: the cluster notices, tells, takes over, clients feel it,
    # data survives (or not), ownership stays single, then the cluster heals and settles
    "detection": check_detection,
    "notification": check_notification,
    "fallover": check_fallover,
    "fencing": check_fencing,
    "outage": check_outage,
    "failed_requests": check_failed_requests,
    "lost_writes": check_lost_writes,
    "split_brain": check_split_brain,
    "redundancy_restored": check_redundancy_restored,
    "policy": check_policy,
    "starts": check_starts,          # whole-cluster operations only
    "untouched": check_untouched,    # reattach only
    "fail_counts": check_fail_counts,  # recovery in place only
}

__all__ = ["CHECKERS", "UNKNOWN", "Checker", "Context", "Valid", "Verdict", "check_safe", "fmt_s", "merge_valid",
           "run_all"]
