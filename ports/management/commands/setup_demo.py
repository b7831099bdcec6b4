import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import ValidationError

from ports.acting import Actor, acting
from ports.choices import ChangeSource, TeamRole
from ports.demo import DEMO_DEPLOYMENT
from ports.deployments import save_deployment
from ports.models import ApiToken, Deployment, Membership, Team

USERNAME, PASSWORD = "demo", "portal-demo"
ADMIN, ADMIN_PASSWORD = "demo-admin", "portal-demo-admin"  # the demo's Django admin (all teams)
APPROVER, APPROVER_PASSWORD = "demo-approver", "portal-demo-approver"  # approves the demo user's requests
DEMO_TOKEN = "Demo (setup_demo makes a new one at each run)"


class Command(BaseCommand):
    help = "Create the demo team, its users (an admin, an approver) and its loopback deployment (kept if present)."

    def add_arguments(self, parser: object) -> None:
        parser.add_argument(
            "--address",
            default=os.environ.get("PORTAL_ADDRESS", "127.0.0.1:8000"),
            help="host:port the portal is served on, for the printed links (default $PORTAL_ADDRESS)",
        )

    def handle(self, *args: object, address: str, **options: object) -> None:
        with acting(Actor(ChangeSource.COMMAND)):
            self.set_up(address)

    def set_up(self, address: str) -> None:
        user, created = get_user_model().objects.get_or_create(username=USERNAME)
        if created:
            user.set_password(PASSWORD)
            user.save()
        team, _ = Team.objects.get_or_create(name="Demo")
        if not team.memberships.filter(user=user).exists():
            Membership.give(team, user, TeamRole.ADMIN)  # the team's admin: every role
        # A key is kept only as its hash, so the demo's cannot be read back: each run revokes the
        # last one it made and prints a new one (the user's other tokens stay).
        ApiToken.objects.filter(user=user, name=DEMO_TOKEN).delete()
        _, key = ApiToken.issue(user, DEMO_TOKEN)
        if not Deployment.objects.filter(team=team, name=DEMO_DEPLOYMENT["name"]).exists():
            try:
                save_deployment({**DEMO_DEPLOYMENT, "team": team.name})
            except ValidationError as invalid:
                raise CommandError(f"The demo deployment does not validate: {invalid.detail}") from invalid
        deployment = Deployment.objects.get(team=team, name=DEMO_DEPLOYMENT["name"])
        admin, created = get_user_model().objects.get_or_create(
            username=ADMIN, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            admin.set_password(ADMIN_PASSWORD)
            admin.save()
            Membership.give(team, admin, TeamRole.ADMIN)
        approver, created = get_user_model().objects.get_or_create(username=APPROVER)
        if created:
            approver.set_password(APPROVER_PASSWORD)
            approver.save()
            Membership.give(team, approver, TeamRole.APPROVER)
        self.stdout.write(
            f"Demo: open http://{address}/ and log in as {USERNAME} / {PASSWORD}\n"
            f"      the admin, http://{address}/admin/, as {ADMIN} / {ADMIN_PASSWORD}\n"
            f"      the approver of the demo's change requests as {APPROVER} / {APPROVER_PASSWORD}\n"
            f"      API token {key} (header 'Authorization: Token {key}')\n"
            "      (a new token at each run, the last one revoked: the portal keeps only their hashes)\n"
            f"      deployment {deployment.pk} ({deployment.checklist.count()} checklist items): "
            f"/api/deployments/{deployment.pk}/checklist/"
        )
