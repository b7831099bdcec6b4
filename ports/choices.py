from __future__ import annotations

from django.db import models


class CatalogTable(models.TextChoices):
    """The three tables of the vendor's page, in page order."""

    APPLIANCE = "appliance", "Ports on the appliance"
    DLP_OUTBOUND = "dlp_outbound", "Appliance outbound to Forcepoint DLP"
    OFF_APPLIANCE = "off_appliance", "Off-appliance components"


class Interface(models.TextChoices):
    C = "C", "C (management)"
    P1 = "P1", "P1 (data)"
    P2 = "P2", "P2 (data)"


class Protocol(models.TextChoices):
    TCP = "tcp", "TCP"
    UDP = "udp", "UDP"


class Role(models.TextChoices):
    """Who takes part in a flow: the appliance, a host role or a peer network."""

    APPLIANCE = "appliance", "Email Security appliance"
    PEER_APPLIANCE = "peer_appliance", "Peer appliance"
    END_USERS = "end_users", "End users (browsers)"
    MAIL_SENDERS = "mail_senders", "Sending mail servers"
    SECURITY_MANAGER = "security_manager", "Forcepoint Security Manager"
    LOG_SERVER = "log_server", "Email Log Server"
    SQL_SERVER = "sql_server", "SQL Server (Email Log Database)"
    DLP_SERVER = "dlp_server", "Forcepoint DLP server"
    HYBRID_SERVICE = "hybrid_service", "Email hybrid service"
    FILTERING_SERVICE = "filtering_service", "Filtering Service (web protection)"
    LINKING_SERVICE = "linking_service", "Linking Service (web protection)"
    LDAP = "ldap", "LDAP server"
    DNS = "dns", "DNS server"
    SNMP_TRAP = "snmp_trap", "SNMP trap receiver"


# Roles played by hosts of a deployment, and those played by peer networks.
HOST_ROLES = [
    Role.SECURITY_MANAGER,
    Role.LOG_SERVER,
    Role.SQL_SERVER,
    Role.DLP_SERVER,
    Role.HYBRID_SERVICE,
    Role.FILTERING_SERVICE,
    Role.LINKING_SERVICE,
    Role.LDAP,
    Role.DNS,
    Role.SNMP_TRAP,
]
NETWORK_ROLES = [Role.END_USERS, Role.MAIL_SENDERS]


class Feature(models.TextChoices):
    """Optional features: a requirement tied to features applies if any of them is in use."""

    HYBRID = "hybrid", "Email hybrid service"
    DLP = "dlp", "Forcepoint DLP"
    WEB_PROTECTION = "web_protection", "Web protection (Filtering and Linking Services)"
    SNMP = "snmp", "SNMP traps"
    PEM = "pem", "Personal Email Manager"
    SMD = "smd", "Secure Message Delivery"


class Service(models.TextChoices):
    """What answers on a port, so that a probe can speak its protocol."""

    TCP = "tcp", "Plain TCP"
    TLS = "tls", "TLS"
    SMTP = "smtp", "SMTP"
    DNS = "dns", "DNS"
    MSSQL = "mssql", "SQL Server"
    MSSQL_BROWSER = "mssql_browser", "SQL Server Browser"
    LDAP = "ldap", "LDAP"
    SNMP_TRAP = "snmp_trap", "SNMP trap"


class ProbeSchedule(models.TextChoices):
    """How often a deployment's rules are probed again: continuous verification."""

    OFF = "off", "Off"
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"
    CRON = "cron", "Cron expression"


class ItemStatus(models.TextChoices):
    """Where a rule stands in the firewall change process, moved along by a person."""

    TODO = "todo", "To do"
    REQUESTED = "requested", "Requested"
    OPENED = "opened", "Opened"
    VERIFIED = "verified", "Verified"
    WAIVED = "waived", "Waived"


class Outcome(models.TextChoices):
    """What a write did, as every write of the API says it (the `outcome` field and `Outcome` header):
    a provisioning tool's "changed" is anything but unchanged."""

    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    UNCHANGED = "unchanged", "Unchanged"


class Stop(models.TextChoices):
    """Where a failing rule's traffic stops, as its probe's evidence names the device: each value is
    the evidence's key that holds the device's address (the probe engine writes them, probes.engine.icmp
    and .trace). In this order: a device that rejected the traffic with an ICMP error is known for
    sure; the last hop that answered a trace toward the port is where silence starts."""

    REJECTED_BY = "rejected_by", "rejected by"
    STOPPED_AFTER = "stopped_after", "stops after"

    def verb(self, rules: int = 1, now: bool = False) -> str:
        """What `rules` rules do at the device, before its address: "stop after", "is now rejected by"."""
        if self is Stop.REJECTED_BY:
            return f"{'is' if rules == 1 else 'are'}{' now' if now else ''} rejected by"
        return f"{'now ' if now else ''}{'stops' if rules == 1 else 'stop'} after"

    @staticmethod
    def rules(count: int) -> str:
        """The noun for `count` rules, as the sentences of stops say them: "rule", "rules"."""
        return "rule" if count == 1 else "rules"

    @classmethod
    def of(cls, evidence: object) -> tuple[str, Stop] | None:
        """(address, how) of the device that evidence names, the first key in this order; None for none.
        The same reading as ChecklistItemQuerySet.with_stop(), for evidence already in hand."""
        if not isinstance(evidence, dict):
            return None
        return next(((str(evidence[how]), how) for how in cls if evidence.get(how)), None)


class ChangeAction(models.TextChoices):
    """What a change did to its object (ObjectChange)."""

    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"


class ChangeSource(models.TextChoices):
    """Through what a change came (ObjectChange): who made it is its user, or nobody for the
    portal's own work (a probe trusting a certificate on first use)."""

    API_TOKEN = "api_token", "API (token)"
    API_SESSION = "api_session", "API (browser session)"
    PAGE = "page", "Page"
    ADMIN = "admin", "Admin site"
    COMMAND = "command", "Command"
    DIRECTORY = "directory", "Directory sign-in"  # memberships that follow the directory's groups
    PORTAL = "portal", "The portal itself"


class ChangedObject(models.TextChoices):
    """The kinds of objects the change log follows."""

    DEPLOYMENT = "deployment", "Deployment"
    RULE = "rule", "Rule"
    TLS_PIN = "tls_pin", "TLS pin"
    ALERT_CHANNEL = "alert_channel", "Alert channel"
    MEMBERSHIP = "membership", "Team member"
    CHANGE_REQUEST = "change_request", "Change request"


class DirectorySource(models.TextChoices):
    """What made a user, and so is the only way they sign in besides a password (DirectoryAccount)."""

    LDAP = "ldap", "LDAP directory"
    OIDC = "oidc", "OpenID Connect provider"


class TeamRole(models.TextChoices):
    """What a member may do with the team's objects: each role may do all that the roles before
    it may, and more."""

    VIEWER = "viewer", "Viewer"  # reads everything of the team, changes nothing
    EDITOR = "editor", "Editor"  # edits deployments and statuses, starts probes, drafts change requests
    APPROVER = "approver", "Approver"  # also approves or rejects others' change requests
    ADMIN = "admin", "Team admin"  # also gives the team's members their roles

    @classmethod
    def at_least(cls, role: str) -> list[str]:
        """The roles that may do what `role` may."""
        return cls.values[cls.values.index(role) :]

    @classmethod
    def held(cls, role: str | None) -> str:
        """What a user of `role` is, in words: "you are an editor"; None: not a member."""
        if role is None:
            return "you are not a member"
        label = cls(role).label.lower()
        return f"you are {'an' if label[0] in 'aeiou' else 'a'} {label}"


class RequestState(models.TextChoices):
    """Where a change request is in its life (ChangeRequest.TRANSITIONS moves it)."""

    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    IMPLEMENTED = "implemented", "Implemented"
    VERIFIED = "verified", "Verified"
    CLOSED = "closed", "Closed"


class RequestAction(models.TextChoices):
    """What moves a change request from one state to the next: the buttons, the API's actions."""

    SUBMIT = "submit", "Submit"
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    IMPLEMENT = "implement", "Mark implemented"
    VERIFY = "verify", "Verify"
    CLOSE = "close", "Close"
