"""What the recorder tells the layers that listen (alerts.raising, connected in ProbesConfig.ready),
so that the models need not know who acts on a change. Sent inside the recorder's transaction."""

from django.dispatch import Signal

# A batch changed some items' states: `run` (ProbeRun) and `flips` (the new ProbeFlip rows).
states_changed = Signal()
# A run closed with no item probed: `run` (ProbeRun).
run_failed = Signal()
