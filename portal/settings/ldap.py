"""Sign-in against LDAP or Active Directory (django-auth-ldap), on when LDAP_SERVER_URI is set."""

from .env import env_str

AUTH_LDAP_SERVER_URI = env_str("LDAP_SERVER_URI")
LDAP_BACKENDS = ["portal.directory.ldap.DirectoryLDAPBackend"] if AUTH_LDAP_SERVER_URI else []
