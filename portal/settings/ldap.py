"""Sign-in against LDAP or Active Directory (django-auth-ldap), on when LDAP_SERVER_URI is set.

The portal binds as LDAP_BIND_DN (empty: anonymously) to find the user under LDAP_USER_SEARCH_BASE
with LDAP_USER_FILTER, then binds as the user found with the password typed in. The user is the
portal's user of that name, created at the first sign-in with no password of the portal's own;
names and email follow the directory at every sign-in. The groups found under
LDAP_GROUP_SEARCH_BASE are groups of DIRECTORY_GROUP_TEAMS, which make the user's teams and roles
(portal.directory.ldap); without it, directory sign-ins leave memberships alone.

python-ldap and django-auth-ldap (requirements-ldap.txt) are imported only when LDAP_SERVER_URI is
set: `make run` does not install them. The AUTH_LDAP_* names exist either way, as Django reads them.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_str

# ldap://host:389 with LDAP_START_TLS, or ldaps://host:636. Several, space-separated, are tried in turn.
AUTH_LDAP_SERVER_URI = env_str("LDAP_SERVER_URI")
AUTH_LDAP_START_TLS = env_bool("LDAP_START_TLS")
# The CA (PEM) that the directory's certificate must chain to; empty: the system's. The certificate
# is always checked, and must name the host of LDAP_SERVER_URI.
LDAP_CA_FILE = env_str("LDAP_CA_FILE")
# Seconds to connect and for each answer: a directory that is down fails a sign-in quickly, with a
# message, rather than holding a web worker.
LDAP_TIMEOUT = env_float("LDAP_TIMEOUT", 5)
# The account that searches for users and their groups (Active Directory: its DN or user@domain).
AUTH_LDAP_BIND_DN = env_str("LDAP_BIND_DN")
AUTH_LDAP_BIND_PASSWORD = env_str("LDAP_BIND_PASSWORD")
LDAP_USER_SEARCH_BASE = env_str("LDAP_USER_SEARCH_BASE")
# %(user)s is the username typed in, escaped. Active Directory: (sAMAccountName=%(user)s).
LDAP_USER_FILTER = env_str("LDAP_USER_FILTER", "(uid=%(user)s)")
LDAP_GROUP_SEARCH_BASE = env_str("LDAP_GROUP_SEARCH_BASE")
LDAP_GROUP_TYPE = env_str("LDAP_GROUP_TYPE", "groupOfNames")
# Which entries under LDAP_GROUP_SEARCH_BASE are groups; empty: those of LDAP_GROUP_TYPE's class.
LDAP_GROUP_FILTER = env_str("LDAP_GROUP_FILTER")

# LDAP_GROUP_TYPE: django-auth-ldap's group type (by name: it is imported only when configured)
# and the object class of its groups. The nested ones also follow groups that are members of groups.
GROUP_TYPES = {
    "groupOfNames": ("GroupOfNamesType", "(objectClass=groupOfNames)"),
    "nestedGroupOfNames": ("NestedGroupOfNamesType", "(objectClass=groupOfNames)"),
    "groupOfUniqueNames": ("GroupOfUniqueNamesType", "(objectClass=groupOfUniqueNames)"),
    "nestedGroupOfUniqueNames": ("NestedGroupOfUniqueNamesType", "(objectClass=groupOfUniqueNames)"),
    "posixGroup": ("PosixGroupType", "(objectClass=posixGroup)"),
    "activeDirectory": ("ActiveDirectoryGroupType", "(objectClass=group)"),
    "nestedActiveDirectory": ("NestedActiveDirectoryGroupType", "(objectClass=group)"),
}

# Names and email from the directory (the same attributes in OpenLDAP and Active Directory), at
# every sign-in. Nothing is cached: groups are read anew at each sign-in, so a user taken out of a
# group loses its teams at their next one.
AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
AUTH_LDAP_ALWAYS_UPDATE_USER = True
AUTH_LDAP_CACHE_TIMEOUT = 0
# Built below when configured: python-ldap's and django-auth-ldap's objects.
AUTH_LDAP_USER_SEARCH = None
AUTH_LDAP_GROUP_SEARCH = None
AUTH_LDAP_GROUP_TYPE = None
AUTH_LDAP_CONNECTION_OPTIONS: dict[int, object] = {}

LDAP_BACKENDS = ["portal.directory.ldap.DirectoryLDAPBackend"] if AUTH_LDAP_SERVER_URI else []

if AUTH_LDAP_SERVER_URI:
    try:
        import ldap
        from django_auth_ldap import config
    except ImportError as error:
        raise ImproperlyConfigured(
            f"LDAP_SERVER_URI is set, so LDAP sign-in needs requirements-ldap.txt installed ({error}); "
            "python-ldap builds against OpenLDAP's headers (Debian: libldap2-dev libsasl2-dev)."
        ) from None

    if not all(uri.startswith(("ldap://", "ldaps://")) for uri in AUTH_LDAP_SERVER_URI.split()):
        raise ImproperlyConfigured(f"LDAP_SERVER_URI {AUTH_LDAP_SERVER_URI!r}: each must be ldap://… or ldaps://….")
    if not LDAP_USER_SEARCH_BASE:
        raise ImproperlyConfigured("LDAP_SERVER_URI is set, so LDAP sign-in needs LDAP_USER_SEARCH_BASE.")
    if "%(user)s" not in LDAP_USER_FILTER:
        raise ImproperlyConfigured(f"LDAP_USER_FILTER {LDAP_USER_FILTER!r} must contain %(user)s.")
    if LDAP_CA_FILE and not Path(LDAP_CA_FILE).is_file():
        raise ImproperlyConfigured(f"LDAP_CA_FILE {LDAP_CA_FILE!r} is not a file.")
    if LDAP_GROUP_TYPE not in GROUP_TYPES:
        raise ImproperlyConfigured(f"LDAP_GROUP_TYPE {LDAP_GROUP_TYPE!r} is none of {', '.join(GROUP_TYPES)}.")

    AUTH_LDAP_USER_SEARCH = config.LDAPSearch(LDAP_USER_SEARCH_BASE, ldap.SCOPE_SUBTREE, LDAP_USER_FILTER)
    group_type, group_class = GROUP_TYPES[LDAP_GROUP_TYPE]
    AUTH_LDAP_GROUP_TYPE = getattr(config, group_type)()
    if LDAP_GROUP_SEARCH_BASE:
        AUTH_LDAP_GROUP_SEARCH = config.LDAPSearch(
            LDAP_GROUP_SEARCH_BASE, ldap.SCOPE_SUBTREE, LDAP_GROUP_FILTER or group_class
        )
    # Per connection: django-auth-ldap sets global options once per process. NEWCTX comes last: it
    # makes the connection's TLS context of the options set before it.
    AUTH_LDAP_CONNECTION_OPTIONS = {
        ldap.OPT_NETWORK_TIMEOUT: LDAP_TIMEOUT,
        ldap.OPT_TIMEOUT: LDAP_TIMEOUT,
        # Active Directory refers searches at a domain's root to other partitions; following them
        # would need another bind. Users and groups are found in the partition searched.
        ldap.OPT_REFERRALS: 0,
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
        **({ldap.OPT_X_TLS_CACERTFILE: LDAP_CA_FILE} if LDAP_CA_FILE else {}),
        ldap.OPT_X_TLS_NEWCTX: 0,
    }
