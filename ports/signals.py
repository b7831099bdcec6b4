"""What ports tells the layers above it (connected in their AppConfig.ready), so that its models
need not know who acts on a change. Sent inside the change's transaction."""

from django.dispatch import Signal

# A change request took a step: `request` (ChangeRequest, in its new state) and `step`
# (RequestTransition). The probes layer starts a probe run of an implemented request's rules,
# and the alerts tell the team.
request_moved = Signal()
