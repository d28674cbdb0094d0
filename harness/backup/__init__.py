"""Backup and restore of a cluster: its shared data (consistent, under a filesystem freeze) and its configuration.

`procedure` holds the operator's procedures (`fallover backup`/`restore`), `data` the node-side
copy, `manifest` the backup directory and its checksums, `cib` the configuration comparison, and
`case` the acceptance case that suites/backup runs under load. The verdicts are in
harness/checkers/backup.py, pure functions of what the case recorded.
"""
