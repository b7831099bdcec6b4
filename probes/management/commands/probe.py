import time

from django.core.management.base import BaseCommand, CommandError

from ports.choices import ItemStatus
from ports.models import Deployment
from probes.models import ProbeRun


class Command(BaseCommand):
    help = "Probe a deployment's checklist (all items, or by id or status), as the API's probe-runs do."

    def add_arguments(self, parser) -> None:
        parser.add_argument("deployment", help="Deployment id, or name")
        parser.add_argument("--items", type=lambda v: [int(i) for i in v.split(",")], help="Item ids, comma-separated")
        parser.add_argument("--status", choices=ItemStatus.values, action="append", help="Items with this status")
        parser.add_argument("--wait", action="store_true", help="Wait for the run and print its results")

    def handle(self, *args, deployment: str, items, status, wait: bool, **options) -> None:
        found = Deployment.objects.filter(pk=deployment) if deployment.isdigit() else Deployment.objects.none()
        found = found or Deployment.objects.filter(name=deployment)
        if len(found) != 1:
            raise CommandError(f"No single deployment {deployment!r} (give its id).")
        selected = found[0].checklist.all()
        if items:
            selected = selected.filter(pk__in=items)
            missing = set(items) - set(selected.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"Not items of {found[0]}: {sorted(missing)}")
        if status:
            selected = selected.filter(status__in=status)
        selected = list(selected)
        if not selected:
            raise CommandError("No checklist item matches.")
        run = ProbeRun.start(found[0], None, selected, limited=False)
        self.stdout.write(f"Probe run {run.pk}: {len(selected)} items")
        while wait and not run.is_finished:
            time.sleep(0.5)
            run.refresh_from_db()
            run.expire_if_overdue()
        if wait:
            for result in run.results():
                rule = result.rule
                self.stdout.write(
                    f"{rule['source']:>18} -> {rule['destination']:<18} {rule['ports']:>11}/{rule['protocol']:<3} "
                    f"{result.state:<12} {result.summary}"
                )
            pending = run.total - run.done
            self.stdout.write(f"Run {run.pk}: {run.get_status_display()} ({pending} pending)")
