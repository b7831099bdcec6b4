"""The ports app's models, a module per concern, each name imported from here (ports.models):
teams and who sees what, the catalog, deployments, the change log, members and their roles,
the checklist, what was handed out, change requests, and API tokens. A module imports only those before it
in this order."""

from .catalog import (
    PORT_VALIDATORS,
    CatalogVersion,
    CatalogVersionQuerySet,
    Product,
    Requirement,
)
from .changes import (
    Logged,
    ObjectChange,
    not_empty,
)
from .checklist import (
    CHANGED_IN,
    CURRENT_PROBE,
    LAST_CHECKED,
    ROW_VERSION,
    RULE_COLUMN_NAMES,
    STOP_AT,
    STOP_HOW,
    ChecklistCounts,
    ChecklistItem,
    ChecklistItemQuerySet,
    RuleColumns,
    StaleRevision,
    StatusChange,
    StatusChanges,
    UnknownItems,
)
from .deployments import (
    SITED_PARTS,
    Appliance,
    Deployment,
    DeploymentQuerySet,
    Host,
    PeerNetwork,
    default_features,
)
from .exported import (
    ChangeRequestJob,
    ChecklistExport,
)
from .members import (
    DirectoryAccount,
    LastAdmin,
    Membership,
)
from .requests import (
    ChangeRequest,
    ChangeRequestQuerySet,
    RequestRefused,
    RequestTransition,
    Transition,
    held_back_words,
)
from .teams import (
    DeploymentPartQuerySet,
    Team,
    TeamQuerySet,
    TeamScopedQuerySet,
)
from .tokens import (
    LAST_USED_EVERY,
    ApiToken,
    ApiTokenQuerySet,
)

__all__ = [
    "CHANGED_IN",
    "CURRENT_PROBE",
    "LAST_CHECKED",
    "LAST_USED_EVERY",
    "PORT_VALIDATORS",
    "ROW_VERSION",
    "RULE_COLUMN_NAMES",
    "SITED_PARTS",
    "STOP_AT",
    "STOP_HOW",
    "ApiToken",
    "ApiTokenQuerySet",
    "Appliance",
    "CatalogVersion",
    "CatalogVersionQuerySet",
    "ChangeRequest",
    "ChangeRequestJob",
    "ChangeRequestQuerySet",
    "ChecklistCounts",
    "ChecklistExport",
    "ChecklistItem",
    "ChecklistItemQuerySet",
    "Deployment",
    "DeploymentPartQuerySet",
    "DeploymentQuerySet",
    "DirectoryAccount",
    "Host",
    "LastAdmin",
    "Logged",
    "Membership",
    "ObjectChange",
    "PeerNetwork",
    "Product",
    "RequestRefused",
    "RequestTransition",
    "Requirement",
    "RuleColumns",
    "StaleRevision",
    "StatusChange",
    "StatusChanges",
    "Team",
    "TeamQuerySet",
    "TeamScopedQuerySet",
    "Transition",
    "UnknownItems",
    "default_features",
    "held_back_words",
    "not_empty",
]
