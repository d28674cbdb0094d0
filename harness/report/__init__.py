"""Reports built from saved runs: the sign-off page, the recovery runbook, the nightly trends."""
