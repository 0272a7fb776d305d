"""Calls owed a final record: deadlines, the providers' query APIs, the reconciler loop.

`rules` says which events are final and when a call is overdue; `aliyun_vms` and
`aliyun_outbound_bot` ask the two Aliyun query APIs for a call's final record; `runner` is the
loop the daemon runs; `cli` the `calls overdue` and `reconcile` commands. The SQL lives in
`consumer.sinks.reconcile`. See docs/reconcile.md.
"""
