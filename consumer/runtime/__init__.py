"""The daemon's runtime: `consumer run`'s supervisor, worker processes, metrics and sd_notify.

See systemd/README.md for how it behaves under systemd (signals, exit statuses, reload).
"""
