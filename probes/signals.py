"""What the recorder tells the layers that listen (alerts.raising, connected in ProbesConfig.ready),
so that the models need not know who acts on a change. Sent inside the recorder's transaction."""

from django.dispatch import Signal

# A batch changed some items' states: `run` (ProbeRun), `flips` (the new ProbeFlip rows),
# `alerting` (those of them to alert of, claimed with their items' states: LatestProbe.record) and
# `items` (the batch's items as the recorder read them, by id: models.ItemNow).
states_changed = Signal()
# A run closed with no item probed: `run` (ProbeRun).
run_failed = Signal()
# A run closed, whatever it found: `run` (ProbeRun).
run_closed = Signal()
